package server

import (
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkHandler calls the handler directly, without a connection, for
// the small requests the serve section of make bench loads (a manifest
// by tag, by digest, a small blob), with the access log on (to a file):
// what the handler itself costs a request, in time, allocations and
// system calls, apart from net/http's connection handling and the load
// generator sharing the cores. Run with -benchmem.
func BenchmarkHandler(b *testing.B) {
	f := build(b)
	// A tree as served: its files older than the cache's racy window, so
	// that parsed type maps and headers are kept.
	ageFiles(b, f.root.Dir())
	al, err := OpenAccessLog(filepath.Join(b.TempDir(), "access.log"), false)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { al.Close() })
	h := &handler{root: f.root, log: slog.New(slog.DiscardHandler), cache: &fileCache{}, access: al}
	base := "/v2/" + f.repo
	for _, c := range []struct{ name, path string }{
		{"tag", base + "/manifests/single"},
		{"digest", base + "/manifests/" + f.a.d.String()},
		{"blob", base + "/blobs/" + f.config.d.String()},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest(http.MethodGet, c.path, nil)
			r.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
			r.RemoteAddr = "127.0.0.1:40000"
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: %d", c.path, w.Code)
				}
			}
		})
	}
}

// ageFiles sets every file's times below dir an hour back: a tree as it
// is served, long after its writers, without waiting for it to age.
func ageFiles(tb testing.TB, dir string) {
	tb.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		tb.Fatal(err)
	}
}
