package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/urfave/cli/v2"
)

// --src-max-requests and --src-rate, defined once for export and sync,
// land in the registry options both build (exportOptions).
func TestSrcLimitFlagsReachOptions(t *testing.T) {
	for _, cmd := range []*cli.Command{exportCommand(), syncCommand()} {
		set := flag.NewFlagSet(cmd.Name, flag.ContinueOnError)
		for _, f := range cmd.Flags {
			if err := f.Apply(set); err != nil {
				t.Fatal(err)
			}
		}
		if err := set.Parse([]string{"--src-max-requests", "3", "--src-rate", "2.5"}); err != nil {
			t.Fatalf("%s: %v", cmd.Name, err)
		}
		l := exportOptions(cli.NewContext(newApp(), set, nil), nil).Registry.Limits
		if l.MaxRequests != 3 || l.RequestsPerSecond != 2.5 {
			t.Errorf("%s --src-max-requests 3 --src-rate 2.5: limits %+v", cmd.Name, l)
		}
	}
}

// lowered is the rate the first "lowering the request rate" record of a
// JSON log names for registry, 0 when there is none.
func lowered(t *testing.T, stderr, registry string) float64 {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		var rec struct {
			Msg      string  `json:"msg"`
			Registry string  `json:"registry"`
			Rate     float64 `json:"requests_per_second"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "lowering the request rate after a 429" {
			continue
		}
		if rec.Registry != registry {
			t.Errorf("lowering record names registry %q, want %q: %s", rec.Registry, registry, line)
		}
		return rec.Rate
	}
	return 0
}

// End to end through the binary: a source that answers one GET 429 gets
// the rate --src-rate set halved — the proof that the flag reaches the
// registry's limiter — on export and on sync; a sync file's
// requests-per-second: wins over the flag for its registry. The run
// completes (the retry waits out Retry-After) and logs the lowering.
func TestSrcRateLoweredBy429(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 1024, types.DockerLayer)
	reg.PushImage(t, "app:1.0", testregistry.DockerImage(t, base, testregistry.Layer(t, 512, types.DockerLayer)))
	var gets atomic.Int64
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && gets.Add(1) == 3 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}
	file := writeFile(t, "sync.yaml", fmt.Sprintf(`
%s:
  tls-verify: false
  requests-per-second: 10
  images:
    app: ["1.0"]
`, reg.Host))
	src := "docker://" + reg.Host + "/app:1.0"
	for _, tc := range []struct {
		args []string
		want float64
	}{
		{[]string{"export", "--src-tls-verify=false", "--src-rate", "6.5", src, "app:1.0"}, 3.25},
		{[]string{"sync", "--src-tls-verify=false", "--src-rate", "6.5", src}, 3.25},
		{[]string{"sync", "--src-rate", "6.5", "-f", file}, 5},
	} {
		gets.Store(0)
		root := filepath.Join(t.TempDir(), "root")
		r := mustRun(t, append([]string{"--root", root, "--log-format", "json"}, tc.args...)...)
		if got := lowered(t, r.stderr, reg.Host); got != tc.want {
			t.Errorf("%v: after a 429, rate %v/s, want %v/s\n%s", tc.args, got, tc.want, r.stderr)
		}
		mustRun(t, "--root", root, "verify")
	}
}
