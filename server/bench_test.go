package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/internal/bench"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/server"
	"github.com/opencontainers/go-digest"
)

// manifestAccept is the Accept header skopeo sends for manifests
// (serving-notes §1.8).
const manifestAccept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"

// benchServers exports img as bench:v1 into a tree Apache can read and
// serves it with the embedded server and with Apache (our template), both
// on loopback. The embedded server logs nothing, as in production at the
// default level.
func benchServers(b *testing.B, img bench.Image) (l *bench.Layout, embedded, apache string) {
	b.Helper()
	l, err := bench.WriteLayout(filepath.Join(b.TempDir(), "layout"), img)
	if err != nil {
		b.Fatal(err)
	}
	root := testserver.TempRoot(b)
	if _, err := exporter.Export(context.Background(), root, l.Source(), "bench:v1", exporter.Options{}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(server.New(root, nil))
	b.Cleanup(srv.Close)
	return l, srv.URL, testserver.Apache(b, root)
}

// benchClient is an HTTP client keeping conns connections alive to one
// server.
func benchClient(b *testing.B, conns int) *http.Client {
	t := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	b.Cleanup(t.CloseIdleConnections)
	return &http.Client{Transport: t}
}

// get fetches url and returns the body's length and, when h is not nil,
// hashes the body into h. Anything but 200 is an error.
func get(c *http.Client, url, accept string, h io.Writer) (int64, *http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	w := io.Discard
	if h != nil {
		w = h
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, resp, fmt.Errorf("GET %s: %v after %d bytes", url, err, n)
	}
	if resp.StatusCode != http.StatusOK {
		return n, resp, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return n, resp, nil
}

// checkGet fetches url once, untimed, and checks it is exactly want: the
// servers are compared only once both serve the same bytes. It also warms
// the page cache and the connection.
func checkGet(b *testing.B, c *http.Client, url, accept string, want bench.Blob) {
	b.Helper()
	h := sha256.New()
	n, resp, err := get(c, url, accept, h)
	if err != nil {
		b.Fatal(err)
	}
	got := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	if n != want.Size || got != want.Digest {
		b.Fatalf("GET %s: %d bytes, %s; want %d bytes, %s", url, n, got, want.Size, want.Digest)
	}
	if dh := resp.Header.Get("Docker-Content-Digest"); dh != string(want.Digest) {
		b.Fatalf("GET %s: Docker-Content-Digest %q, want %s", url, dh, want.Digest)
	}
}

// BenchmarkServeBlob pulls one 64 MiB blob (page cache warm) over a
// keep-alive connection from the embedded server and from Apache,
// alternately, one pull of each per iteration. The client discards the
// body without hashing it, so the server's side is what is timed. The
// embedded server shares the benchmark's process and its two cores with
// the client; Apache runs in its own processes.
func BenchmarkServeBlob(b *testing.B) {
	l, embedded, apache := benchServers(b, bench.Image{Layers: 1, LayerSize: 64 << 20, Seed: 2})
	blob := l.Layers[0]
	path := "/v2/bench/blobs/" + string(blob.Digest)
	ec, ac := benchClient(b, 1), benchClient(b, 1)
	checkGet(b, ec, embedded+path, "", blob)
	checkGet(b, ac, apache+path, "", blob)
	pull := func(c *http.Client, url string) func() error {
		return func() error {
			n, _, err := get(c, url, "", nil)
			if err == nil && n != blob.Size {
				err = fmt.Errorf("GET %s: %d bytes, want %d", url, n, blob.Size)
			}
			return err
		}
	}
	p := bench.Pair{Ours: "embedded", Ref: "apache"}
	for b.Loop() {
		if err := p.Round(pull(ec, embedded+path), pull(ac, apache+path)); err != nil {
			b.Fatal(err)
		}
	}
	p.Report(b)
	ours, ref := p.Medians()
	b.ReportMetric(mbps(blob.Size, ours), "embedded-MB/s")
	b.ReportMetric(mbps(blob.Size, ref), "apache-MB/s")
}

// Small-object load: requests per server per iteration, over conns
// keep-alive connections in parallel.
const (
	smallRequests = 1000
	smallConns    = 4
)

// BenchmarkServeManifest sends many GETs of one manifest, by tag (type-map
// negotiation in Apache) and by digest, to the embedded server and to
// Apache, alternately: smallRequests to each per iteration, over
// smallConns connections at once.
func BenchmarkServeManifest(b *testing.B) {
	l, embedded, apache := benchServers(b, bench.Image{Layers: 1, LayerSize: 1 << 10, Seed: 3})
	// A tree as served: its files older than the cache's racy window.
	time.Sleep(2*time.Second + 100*time.Millisecond) // the server's racyWindow
	for _, c := range []struct{ name, ref string }{
		{"by-tag", "v1"},
		{"by-digest", string(l.Manifest.Digest)},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := "/v2/bench/manifests/" + c.ref
			ec, ac := benchClient(b, smallConns), benchClient(b, smallConns)
			checkGet(b, ec, embedded+path, manifestAccept, l.Manifest)
			checkGet(b, ac, apache+path, manifestAccept, l.Manifest)
			p := bench.Pair{Ours: "embedded", Ref: "apache"}
			for b.Loop() {
				err := p.Round(
					func() error { return getMany(ec, embedded+path) },
					func() error { return getMany(ac, apache+path) },
				)
				if err != nil {
					b.Fatal(err)
				}
			}
			p.Report(b)
			ours, ref := p.Medians()
			b.ReportMetric(smallRequests/ours.Seconds(), "embedded-req/s")
			b.ReportMetric(smallRequests/ref.Seconds(), "apache-req/s")
		})
	}
}

// getMany sends smallRequests GETs of url from smallConns goroutines and
// returns the first error.
func getMany(c *http.Client, url string) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan struct{}, smallRequests)
	)
	for range smallRequests {
		next <- struct{}{}
	}
	close(next)
	for range smallConns {
		wg.Go(func() {
			for range next {
				if _, _, err := get(c, url, manifestAccept, nil); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

// mbps is a throughput in MB/s (10^6 bytes, as go test's MB/s).
func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}
