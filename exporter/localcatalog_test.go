package exporter

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testlock"
	"github.com/opencontainers/go-digest"
)

// TestListEngineImages: the engine's list gives each REPO:TAG its image
// ID; names that are no tag are left out; a list that is not one fails in
// one line.
func TestListEngineImages(t *testing.T) {
	id1, id2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	body := map[string]string{
		"good":  `[{"Id":"` + id1 + `","RepoTags":["app:1","reg.io:5000/team/app:v2"]},{"Id":"` + id2 + `","RepoTags":["<none>:<none>"]},{"Id":"` + id2 + `","RepoTags":null,"RepoDigests":["app@sha256:` + strings.Repeat("3", 64) + `"]}]`,
		"badid": `[{"Id":"sha256:abc","RepoTags":["app:1"]}]`,
		"json":  `{"not":"a list"}`,
		"big":   "[" + strings.Repeat(" ", maxCatalog) + "]",
	}
	var which string
	sock := serveDocker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/images/json" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(body[which]))
	}))
	o := Options{Local: LocalOptions{DockerHost: "unix://" + sock}}
	which = "good"
	ids, err := listEngineImages(context.Background(), "docker-daemon", o)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]digest.Digest{"app:1": digest.Digest(id1), "reg.io:5000/team/app:v2": digest.Digest(id1)}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("listed %v, want %v", ids, want)
	}
	for w, msg := range map[string]string{
		"badid": `docker-daemon: the engine lists "sha256:abc", which is not an image ID`,
		"json":  "docker-daemon: the engine's image list does not parse",
		"big":   "docker-daemon: the engine's image list is over 64 MiB",
	} {
		which = w
		_, err := listEngineImages(context.Background(), "docker-daemon", o)
		if err == nil || !strings.HasPrefix(err.Error(), msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line beginning %q", w, err, msg)
		}
	}
}

// TestLocalCatalog: a containers store's list, as podman prints it, gives
// each name its ID, a repository its sorted tags; podman's own error line
// is the error, and a podman that sends nothing is given up on.
func TestLocalCatalog(t *testing.T) {
	id := strings.Repeat("ab", 32)
	store := t.TempDir()
	if err := os.WriteFile(filepath.Join(store, "storage.lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &StoreSpec{Driver: "vfs", GraphRoot: store}
	podman := func(script string) Options {
		path := filepath.Join(t.TempDir(), "podman")
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return Options{Local: LocalOptions{Podman: path}}
	}
	list := `[{"Id":"` + id + `","Names":["localhost/app:v2","localhost/app:v10","localhost/other:1"]},{"Id":"` + id + `","Names":["localhost/app:v2"]}]`
	c := &localCatalog{store: LocalStore{Transport: transportContainersStorage, Store: spec}}
	o := podman(`case "$*" in *"--root $(printf %s '` + store + `')"*"images --format json"*) echo '` + list + `';; *) echo "Error: unexpected $*" >&2; exit 125;; esac`)
	tags, err := c.tags(context.Background(), "localhost/app", o)
	if err != nil || strings.Join(tags, " ") != "v10 v2" {
		t.Fatalf("tags: %v, %v", tags, err)
	}
	if got, ok, err := c.id(context.Background(), "localhost/other", "1", o); err != nil || !ok || got.Encoded() != id {
		t.Errorf("id of localhost/other:1: %s %v %v", got, ok, err)
	}
	if _, ok, _ := c.id(context.Background(), "localhost/app", "v3", o); ok {
		t.Error("localhost/app:v3 found")
	}
	for _, tc := range []struct{ script, want string }{
		{"echo 'Error: database is locked' >&2; exit 125", "containers-storage:[vfs@" + store + "]: podman images: database is locked"},
		{"echo '[{\"Id\":\"nope\",\"Names\":[\"a:1\"]}]'", `podman images: "nope" is not an image ID`},
		{"echo 'not json'", "podman images: its JSON does not parse"},
		{"exec sleep 60", "podman images: no answer in 200ms (--src-timeout)"},
	} {
		c := &localCatalog{store: LocalStore{Transport: transportContainersStorage, Store: spec}}
		o := podman(tc.script)
		if strings.Contains(tc.script, "sleep") {
			// Only the podman that never answers gets a short timeout:
			// the others answer whatever the machine's load.
			o.Registry.Timeout = 200 * time.Millisecond
		}
		_, err := c.tags(context.Background(), "localhost/app", o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line containing %q", tc.script, err, tc.want)
		}
	}
}

// TestLocalCatalogWaitsForTheStoreLock: a store a build holds locked is
// not listed until the lock is free, bounded by --lock-timeout; podman is
// not run meanwhile.
func TestLocalCatalogWaitsForTheStoreLock(t *testing.T) {
	store := t.TempDir()
	pid, _ := testlock.Hold(t, filepath.Join(store, "storage.lock"))
	ran := filepath.Join(t.TempDir(), "ran")
	podman := filepath.Join(t.TempDir(), "podman")
	if err := os.WriteFile(podman, []byte("#!/bin/sh\ntouch '"+ran+"'\necho '[]'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &localCatalog{store: LocalStore{Transport: transportContainersStorage, Store: &StoreSpec{GraphRoot: store}}}
	_, err := c.tags(context.Background(), "localhost/app", Options{Local: LocalOptions{Podman: podman, LockTimeout: time.Millisecond}})
	if want := fmt.Sprintf("the container store's lock is still held by pid %d", pid); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("listing a locked store: %v, want %q", err, want)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("podman ran while the store was locked")
	}
}

func TestParseLocalStore(t *testing.T) {
	for _, c := range []struct{ transport, spec, want string }{
		{"containers-storage", "", "containers-storage:"},
		{"containers-storage", "vfs@/s+/r:a=1", "containers-storage:[vfs@/s+/r:a=1]"},
		{"docker-daemon", "", "docker-daemon:"},
	} {
		l, err := ParseLocalStore(c.transport, c.spec)
		if err != nil || l.String() != c.want {
			t.Errorf("ParseLocalStore(%q, %q) = %v, %v; want %s", c.transport, c.spec, l, err, c.want)
		}
	}
	for _, c := range []struct{ transport, spec, want string }{
		{"containers-storage", "rel", "not an absolute path"},
		{"docker-daemon", "/x", "no store specifier"},
		{"dir", "", "no store on this machine"},
	} {
		if _, err := ParseLocalStore(c.transport, c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseLocalStore(%q, %q): %v, want %q", c.transport, c.spec, err, c.want)
		}
	}
}

// TestStreamShare: jobs of one batch naming the same image of a store on
// this machine read it once — one GET /images/get for three tags — and
// the read's temporary files are gone once the batch is done; a
// reference that fails fails every job naming it.
func TestStreamShare(t *testing.T) {
	l1 := daLayer(t, "shared", false)
	stream := saveStream(t, []daFile{
		{name: "l.tar", body: l1},
		{name: "c.json", body: configFor(t, l1)},
		{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", RepoTags: []string{"app:1"}, Layers: []string{"l.tar"}})},
	})
	var mu sync.Mutex
	gets := map[string]int{}
	sock := serveDocker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("names")
		mu.Lock()
		gets[name]++
		mu.Unlock()
		if name != "app:1" {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"reference does not exist"}`))
			return
		}
		w.Write(stream)
	}))
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	root := newRoot(t)
	jobs := []Job{
		{Source: "docker-daemon:app:1", Dest: "a:1"},
		{Source: "docker-daemon:app:1", Dest: "b:1"},
		{Source: "docker-daemon:app:1", Dest: "c:1"},
		{Source: "docker-daemon:nope:1", Dest: "d:1"},
		{Source: "docker-daemon:nope:1", Dest: "e:1"},
	}
	sums, errs := ExportEach(context.Background(), root, jobs, Options{Jobs: 4, Local: LocalOptions{DockerHost: "unix://" + sock}})
	for i, j := range jobs[:3] {
		if errs[i] != nil || sums[i].Digest != sums[0].Digest {
			t.Errorf("%s → %s: %v", j.Source, j.Dest, errs[i])
		}
	}
	for i := 3; i < 5; i++ {
		if errs[i] == nil || !strings.Contains(errs[i].Error(), "reference does not exist") {
			t.Errorf("%s → %s: %v, want the engine's 404", jobs[i].Source, jobs[i].Dest, errs[i])
		}
	}
	if gets["app:1"] != 1 || gets["nope:1"] != 1 {
		t.Errorf("the engine was asked %v, want each image once", gets)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestParseLocalSyncArg: a store's sync argument names a repository as
// the store does, its registry host apart, and a tag or none.
func TestParseLocalSyncArg(t *testing.T) {
	for _, c := range []struct {
		in, store, host, repo, tag, source string
	}{
		{"containers-storage:localhost/app:v1", "containers-storage:", "localhost", "app", "v1", "localhost/app"},
		{"containers-storage:[vfs@/s+/r]reg.io:5000/team/app", "containers-storage:[vfs@/s+/r]", "reg.io:5000", "team/app", "", "reg.io:5000/team/app"},
		{"docker-daemon:app", "docker-daemon:", "", "app", "", "app"},
		{"docker-daemon:library/app:1.2", "docker-daemon:", "", "library/app", "1.2", "library/app"},
	} {
		a, err := ParseSyncArg(c.in)
		if err != nil || a.Local == nil || a.Local.String() != c.store || a.Host != c.host || a.Repo != c.repo || a.Tag != c.tag || a.Source() != c.source {
			t.Errorf("ParseSyncArg(%q) = %+v (%v), %v", c.in, a, a.Local, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"containers-storage:" + strings.Repeat("ab", 32), "not by image ID or digest"},
		{"docker-daemon:sha256:" + strings.Repeat("ab", 32), "not by image ID or digest"},
		{"containers-storage:app@sha256:" + strings.Repeat("ab", 32), "not by image ID or digest"},
		{"containers-storage:[rel]app", "not an absolute path"},
		{"docker-daemon:App", "invalid repository name"},
		{"oci:/x", "want docker://HOST/REPO[:TAG], containers-storage:"},
	} {
		if _, err := ParseSyncArg(c.in); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseSyncArg(%q): %v, want one line containing %q", c.in, err, c.want)
		}
	}
}
