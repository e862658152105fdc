package server

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"
)

// BenchmarkAccessLog sends GETs of a manifest by digest from parallel
// clients (GOMAXPROCS × 4 goroutines, each with its own keep-alive
// connection) to the embedded server with no access log, with the
// combined format to a file, and with JSON lines to a file: what the
// log's formatting and its lock cost a request.
func BenchmarkAccessLog(b *testing.B) {
	f := build(b)
	path := "/v2/" + f.repo + "/manifests/" + f.a.d.String()
	for _, c := range []struct {
		name string
		json bool
		on   bool
	}{{"off", false, false}, {"combined", false, true}, {"json", true, true}} {
		b.Run(c.name, func(b *testing.B) {
			var o Options
			if c.on {
				al, err := OpenAccessLog(filepath.Join(b.TempDir(), "access.log"), c.json)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { al.Close() })
				o.AccessLog = al
			}
			s := startWith(b, f, o)
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
				defer tr.CloseIdleConnections()
				hc := &http.Client{Transport: tr}
				for pb.Next() {
					resp, err := hc.Get(s.base + path)
					if err != nil {
						b.Error(err)
						return
					}
					drain(resp)
					if resp.StatusCode != http.StatusOK {
						b.Errorf("GET %s: %s", path, resp.Status)
						return
					}
				}
			})
		})
	}
}

// drain reads a response's body to its end and closes it, so that its
// connection is reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
