package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
)

// TestExportRequiresTLS: export verifies TLS by default, for a registry
// on 127.0.0.1 too. A plain-HTTP registry is refused with exit 1 and one
// line naming --src-tls-verify=false, before any HTTP request reaches it,
// and nothing is created under the root; --src-tls-verify=false exports
// from it.
func TestExportRequiresTLS(t *testing.T) {
	reg := testregistry.Start(t)
	p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
	var requests atomic.Int64
	reg.Intercept = func(http.ResponseWriter, *http.Request) bool {
		requests.Add(1)
		return false
	}
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  string // the one line of stderr, "" for none
	}{
		{
			name: "default",
			code: 1,
			want: "image-serve: " + p.Ref + ": the registry answered plain HTTP where HTTPS is required (--src-tls-verify=false allows it)\n",
		},
		{name: "--src-tls-verify=false", flags: []string{"--src-tls-verify=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests.Store(0)
			root := filepath.Join(t.TempDir(), "root")
			args := append(append([]string{"--root", root, "-q", "export"}, tc.flags...), "docker://"+p.Ref)
			r := run(t, args...)
			if r.code != tc.code || r.stderr != tc.want {
				t.Fatalf("image-serve %s: exit %d, stderr %q; want exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr, tc.code, tc.want)
			}
			if tc.code == 0 {
				return
			}
			if n := requests.Load(); n != 0 {
				t.Errorf("%d HTTP requests reached the plain-HTTP registry, want none", n)
			}
			if entries, err := os.ReadDir(root); !os.IsNotExist(err) {
				t.Errorf("the refused export left %v under the root (%v), want no root at all", entries, err)
			}
		})
	}
}
