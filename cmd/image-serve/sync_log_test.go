package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
)

// TestSyncLogEachImage: sync --log-format json logs one record per tag
// as the tag finishes, not at the end: the source holds the export of
// the tags that moved until the test has read, from the running sync's
// stderr, the record of a tag that has not moved — so a run that dies
// has already said which tags are done. Every tag has exactly one
// record, whatever its status, and the summary record comes last.
func TestSyncLogEachImage(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 2048, types.DockerLayer)
	for _, repoTag := range []string{"app:a", "app:b", "app:c", "tools:v1"} {
		reg.PushImage(t, repoTag, testregistry.DockerImage(t, base, testregistry.Layer(t, 256, types.DockerLayer)))
	}
	root := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root, "sync", "--src-tls-verify=false", "docker://"+reg.Host+"/app:a", "docker://"+reg.Host+"/tools:v1")
	file := writeFile(t, "sync.yaml", fmt.Sprintf(`
%s:
  tls-verify: false
  images:
    app: [a, b, c]
    tools:
      tags: [v1]
      immutable: ['^v1$']
`, reg.Host))

	// The exports of b and c GET their manifests by digest: held until
	// app:a's record has been read.
	aRead := make(chan struct{})
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/sha256:") {
			return false
		}
		select {
		case <-aRead:
			return false
		case <-time.After(time.Minute):
			// A guard, not a measure: the record never came.
			http.Error(w, "app:a's record was not logged before the export", http.StatusInternalServerError)
			return true
		}
	}

	cmd := exec.Command(binary, "--root", root, "--log-format", "json", "sync", "-f", file)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var records []map[string]any
	var lines []string
	var once sync.Once
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("a stderr line that is no JSON record: %q", sc.Text())
			continue
		}
		records = append(records, rec)
		if rec["dest"] == "app:a" && rec["msg"] == "unchanged" {
			once.Do(func() { close(aRead) })
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sync: %v\n%s", err, strings.Join(lines, "\n"))
	}
	log := strings.Join(lines, "\n")

	want := map[string]string{"app:a": "unchanged", "app:b": "synced", "app:c": "synced", "tools:v1": "immutable"}
	got := map[string][]string{}
	for _, rec := range records {
		if dest, ok := rec["dest"].(string); ok {
			got[dest] = append(got[dest], fmt.Sprint(rec["msg"]))
		}
	}
	for dest, msg := range want {
		if len(got[dest]) != 1 || got[dest][0] != msg {
			t.Errorf("%s: records %v, want one %q:\n%s", dest, got[dest], msg, log)
		}
	}
	if len(got) != len(want) {
		t.Errorf("records for %v, want %v:\n%s", got, want, log)
	}
	if n := len(records); n == 0 || records[n-1]["msg"] != "sync done" {
		t.Errorf("the last record is not the summary:\n%s", log)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout: %q, want nothing", stdout.String())
	}
}
