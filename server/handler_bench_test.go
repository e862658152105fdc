package server

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	time.Sleep(racyWindow + 100*time.Millisecond)
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
