package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testca"
	"github.com/image-serve/image-serve/internal/testwait"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// running is a server of a fixture started by serveAll (startWith), stopped at the
// test's end.
type running struct {
	base, metrics string
	logs          *syncBuffer
}

func startWith(t testing.TB, f *fixture, o Options) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mln net.Listener
	if o.Metrics != nil {
		if mln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	r := &running{logs: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveAll(ctx, ln, mln, f.root, slog.New(slog.NewTextHandler(r.logs, nil)), o) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scheme := "http://"
	if o.TLS != nil {
		scheme = "https://"
	}
	r.base = scheme + ln.Addr().String()
	if mln != nil {
		r.metrics = scheme + mln.Addr().String() + "/metrics"
	}
	return r
}

// waitUntil polls cond until it holds (testwait.Until).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, what, func() (bool, string) { return cond(), "still not" })
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// combinedLine is the access log's line: the Combined Log Format and the
// duration in seconds, as README says.
var combinedLine = regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "([A-Z]+) (\S+) (HTTP/[0-9.]+)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" (\d+\.\d{3})$`)

// TestAccessLog: every request is one line of the Combined Log Format
// with its duration, written within the flush delay without Close;
// quotes in the user agent are escaped, an absent referer is "-"; with
// JSON, one object per line with the same fields. The file is reopened by
// name after a rename (logrotate), and the old file keeps what was
// written before.
func TestAccessLog(t *testing.T) {
	f := build(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	al, err := OpenAccessLog(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	s := startWith(t, f, Options{AccessLog: al})

	req, _ := http.NewRequest(http.MethodGet, s.base+"/v2/"+f.repo+"/blobs/"+f.layer.d.String(), nil)
	req.Header.Set("User-Agent", `pull "quoted"`)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	do(t, s.base, http.MethodHead, "/v2/nope/manifests/x", nil)

	waitUntil(t, "two lines in the access log", func() bool { return len(readLines(t, path)) == 2 })
	lines := readLines(t, path)
	m := combinedLine.FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("line %q is not the combined format with a duration", lines[0])
	}
	want := []string{"GET", "/v2/" + f.repo + "/blobs/" + f.layer.d.String(), "HTTP/1.1", "200", "1200", "-", `pull \x22quoted\x22`}
	for i, w := range want {
		if m[i+1] != w {
			t.Errorf("field %d of %q: %q, want %q", i+1, lines[0], m[i+1], w)
		}
	}
	if m := combinedLine.FindStringSubmatch(lines[1]); m == nil || m[1] != "HEAD" || m[4] != "404" || m[5] != "0" {
		t.Errorf("HEAD of a missing manifest logged %q, want HEAD … 404 0", lines[1])
	}

	// logrotate: rename, then reopen (SIGHUP, in the command).
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	do(t, s.base, http.MethodGet, "/v2/", nil)
	waitUntil(t, "a line in the new access log", func() bool { return len(readLines(t, path)) == 1 })
	if got := readLines(t, rotated); len(got) != 2 {
		t.Errorf("the rotated file has %d lines, want the 2 written before", len(got))
	}
	if m := combinedLine.FindStringSubmatch(readLines(t, path)[0]); m == nil || m[2] != "/v2/" {
		t.Errorf("new file: %q, want the GET /v2/", readLines(t, path))
	}
}

func TestAccessLogJSON(t *testing.T) {
	f := build(t)
	path := filepath.Join(t.TempDir(), "access.json")
	al, err := OpenAccessLog(path, true)
	if err != nil {
		t.Fatal(err)
	}
	s := startWith(t, f, Options{AccessLog: al})
	do(t, s.base, http.MethodGet, "/v2/"+f.repo+"/tags/list", hdr("User-Agent", "skopeo/1"))
	if err := al.Close(); err != nil { // Close writes out at once
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1: %q", len(lines), lines)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("%q: %v", lines[0], err)
	}
	for k, v := range map[string]any{
		"remote_addr": "127.0.0.1", "method": "GET", "uri": "/v2/" + f.repo + "/tags/list",
		"protocol": "HTTP/1.1", "status": 200.0, "referer": "", "user_agent": "skopeo/1",
	} {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, rec[k], v, lines[0])
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, rec["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	if d, ok := rec["duration"].(float64); !ok || d < 0 {
		t.Errorf("duration %v, want seconds", rec["duration"])
	}
	if b, ok := rec["bytes"].(float64); !ok || b <= 0 {
		t.Errorf("bytes %v, want the body's size", rec["bytes"])
	}
}

// scrape fetches url and parses it with the Prometheus client's own text
// parser.
func scrape(t *testing.T, c *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mf
}

// value is the value of the family's metric with exactly labels (a
// counter's, a gauge's, or a histogram's count), 0 if none.
func value(mf map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	fam := mf[name]
	if fam == nil {
		return 0
	}
next:
	for _, m := range fam.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

// TestMetrics: the metrics address answers the Prometheus text format;
// requests move the counters by route class and status, the size and
// duration histograms, and the bytes per repository; a 404 names no
// repository, a method of no RFC is "other"; the tree's repository and tag counts are the fixture's.
func TestMetrics(t *testing.T) {
	f := build(t)
	m := NewMetrics(f.root, nil, func() (int64, error) { return 12345, nil })
	s := startWith(t, f, Options{Metrics: m})

	before := scrape(t, client, s.metrics)
	blobPath := "/v2/" + f.repo + "/blobs/" + f.layer.d.String()
	for range 3 {
		do(t, s.base, http.MethodGet, blobPath, nil)
	}
	do(t, s.base, http.MethodGet, "/v2/nothere/manifests/latest", nil)
	do(t, s.base, http.MethodDelete, "/v2/", nil)
	do(t, s.base, "BREW", "/v2/", nil)
	after := scrape(t, client, s.metrics)

	for _, c := range []struct {
		name   string
		labels map[string]string
		delta  float64
	}{
		{"registry_http_requests_total", map[string]string{"code": "200", "method": "GET", "handler": "blob"}, 3},
		{"registry_http_requests_total", map[string]string{"code": "404", "method": "GET", "handler": "manifest-by-tag"}, 1},
		{"registry_http_requests_total", map[string]string{"code": "405", "method": "DELETE", "handler": unrouted}, 1},
		{"registry_http_requests_total", map[string]string{"code": "405", "method": "other", "handler": unrouted}, 1},
		{"registry_http_request_duration_seconds", map[string]string{"handler": "blob", "method": "GET"}, 3},
		{"registry_http_response_size_bytes", map[string]string{"handler": "blob"}, 3},
		{"image_serve_repository_sent_bytes_total", map[string]string{"repository": f.repo}, float64(3 * len(f.layer.data))},
		{"image_serve_repository_sent_bytes_total", map[string]string{"repository": "nothere"}, 0},
	} {
		if got := value(after, c.name, c.labels) - value(before, c.name, c.labels); got != c.delta {
			t.Errorf("%s%v moved by %v, want %v", c.name, c.labels, got, c.delta)
		}
	}
	if got := value(after, "registry_http_in_flight_requests", nil); got != 0 {
		t.Errorf("in flight between requests: %v", got)
	}
	if got := value(after, "image_serve_tree_repositories", nil); got != float64(len(f.repos)) {
		t.Errorf("image_serve_tree_repositories %v, want %d", got, len(f.repos))
	}
	if got, want := value(after, "image_serve_tree_tags", nil), float64(len(f.tags)+len(f.manyTags)); got != want {
		t.Errorf("image_serve_tree_tags %v, want %v", got, want)
	}
	if got := value(scrape(t, client, s.metrics), "image_serve_tree_bytes", nil); got != 12345 {
		// The first measure started with NewMetrics, before any scrape;
		// it may still run at the first.
		waitUntil(t, "image_serve_tree_bytes measured", func() bool {
			return value(scrape(t, client, s.metrics), "image_serve_tree_bytes", nil) == 12345
		})
	}
	if after["go_goroutines"] == nil || after["process_open_fds"] == nil {
		t.Error("no Go runtime or process metrics")
	}
}

// TestInFlightMetric: a request being answered counts in
// registry_http_in_flight_requests until it ends.
func TestInFlightMetric(t *testing.T) {
	f := build(t)
	m := NewMetrics(f.root, nil, nil)
	s := startWith(t, f, Options{Metrics: m})
	b := bigBlob(t, f, 64<<20)
	resp, err := client.Get(s.base + "/v2/" + f.repo + "/blobs/" + b.d.String())
	if err != nil {
		t.Fatal(err)
	}
	// Unread, the body fills the socket buffers and the handler blocks.
	if got := value(scrape(t, client, s.metrics), "registry_http_in_flight_requests", nil); got != 1 {
		t.Errorf("in flight during a download: %v, want 1", got)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitUntil(t, "no request in flight", func() bool {
		return value(scrape(t, client, s.metrics), "registry_http_in_flight_requests", nil) == 0
	})
}

// tlsPair writes a server certificate of serial and its key into dir.
func tlsPair(t *testing.T, ca *testca.CA, dir string, serial int64) (cert, key string) {
	t.Helper()
	c, k := ca.Server(t, serial)
	cert, key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testca.Replace(t, cert, c)
	testca.Replace(t, key, k)
	return cert, key
}

// servedSerial makes one TLS connection to addr and returns the serial of
// the certificate it presented.
func servedSerial(t *testing.T, ca *testca.CA, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestTLSReload: the server speaks TLS with HTTP/2 (a Go client
// negotiates h2); replacing the files is seen at the next handshake,
// without a restart; a broken new pair (a key of another certificate)
// keeps the old one serving, logged once however many handshakes follow;
// repaired, the next handshake serves it. The metrics address speaks TLS
// too.
func TestTLSReload(t *testing.T) {
	f := build(t)
	ca := testca.New(t, "image-serve test CA")
	dir := t.TempDir()
	cert, key := tlsPair(t, ca, dir, 100)
	var logs syncBuffer
	certs, err := LoadCerts(cert, key, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(certs, "")
	if err != nil {
		t.Fatal(err)
	}
	s := startWith(t, f, Options{TLS: cfg, Metrics: NewMetrics(f.root, nil, nil)})
	addr := strings.TrimPrefix(s.base, "https://")

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	resp, err := hc.Get(s.base + "/v2/" + f.repo + "/manifests/single")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
		t.Errorf("GET over TLS: %s %s, want 200 over HTTP/2.0", resp.Proto, resp.Status)
	}
	if mf := scrape(t, hc, s.metrics); mf["registry_http_requests_total"] == nil {
		t.Error("no request counter on the metrics address over TLS")
	}
	// Go answers plain HTTP on a TLS port with a bare 400: no registry
	// answer is given in plain text.
	if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Docker-Distribution-API-Version") != "" {
			t.Errorf("plain HTTP on the TLS address: %s %v", resp.Status, resp.Header)
		}
	}

	if got := servedSerial(t, ca, addr); got != 100 {
		t.Fatalf("serial %d, want 100", got)
	}
	tlsPair(t, ca, dir, 101) // renewed
	if got := servedSerial(t, ca, addr); got != 101 {
		t.Errorf("after renewal: serial %d, want 101 at the next handshake", got)
	}

	// Broken: the key of another certificate.
	_, otherKey := ca.Server(t, 999)
	testca.Replace(t, key, otherKey)
	for range 3 {
		if got := servedSerial(t, ca, addr); got != 101 {
			t.Errorf("with a broken pair on disk: serial %d, want the old 101", got)
		}
	}
	if n := strings.Count(logs.String(), "TLS certificate not reloaded"); n != 1 {
		t.Errorf("%d log lines about the broken pair, want 1:\n%s", n, logs.String())
	}
	tlsPair(t, ca, dir, 102)
	if got := servedSerial(t, ca, addr); got != 102 {
		t.Errorf("repaired: serial %d, want 102", got)
	}
	// Reload (SIGHUP) with nothing changed keeps the pair.
	if changed, err := certs.Reload(); changed || err != nil {
		t.Errorf("Reload of unchanged files: %v, %v", changed, err)
	}
}

// TestMutualTLS: with a client CA, a client without a certificate is
// refused at the handshake, one with a certificate that CA signed is
// served, one signed by another CA is refused.
func TestMutualTLS(t *testing.T) {
	f := build(t)
	ca := testca.New(t, "server CA")
	clients := testca.New(t, "client CA")
	dir := t.TempDir()
	cert, key := tlsPair(t, ca, dir, 7)
	caFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(caFile, clients.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	certs, err := LoadCerts(cert, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(certs, caFile)
	if err != nil {
		t.Fatal(err)
	}
	s := startWith(t, f, Options{TLS: cfg})
	get := func(certs ...tls.Certificate) error {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get(s.base + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("with a client certificate: %s", resp.Status)
		}
		return nil
	}
	if err := get(); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := get(testca.TLSCert(t, pairOf(clients.Client(t, 1)))); err != nil {
		t.Errorf("a client with a certificate of the client CA: %v", err)
	}
	if err := get(testca.TLSCert(t, pairOf(testca.New(t, "other").Client(t, 2)))); err == nil {
		t.Error("a client with a certificate of another CA was served")
	}
}

// TestSlowSteadyDownloadCompletes: a client reading a large blob slowly
// but steadily gets all of it, though the whole transfer lasts many times
// writeIdleTimeout: the server bounds each write, never the response, and
// a write the kernel holds back while the client is still taking bytes is
// not a stall (progress.go). Over plain HTTP (sendfile) and TLS.
func TestSlowSteadyDownloadCompletes(t *testing.T) {
	defer func(d time.Duration) { writeIdleTimeout = d }(writeIdleTimeout)
	writeIdleTimeout = time.Second
	f := build(t)
	b := bigBlob(t, f, 8<<20) // beyond what the kernel buffers on both ends
	ca := testca.New(t, "test CA")
	cert, key := tlsPair(t, ca, t.TempDir(), 1)
	certs, err := LoadCerts(cert, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(certs, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		tls  *tls.Config
	}{{"http", nil}, {"https", cfg}} {
		t.Run(c.name, func(t *testing.T) {
			s := startWith(t, f, Options{TLS: c.tls})
			addr := s.base[strings.Index(s.base, "//")+2:]
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			// A receive buffer of a few segments (loopback's MSS is
			// 64 KiB; smaller, TCP's silly-window avoidance stalls the
			// sender for its persist timer): the server's writes wait on
			// this reader's pace rather than on the buffer filling.
			_ = raw.(*net.TCPConn).SetReadBuffer(256 << 10)
			conn := raw
			if c.tls != nil {
				conn = tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
			}
			slowDownload(t, conn, "/v2/"+f.repo+"/blobs/"+b.d.String(), int64(len(b.data)))
		})
	}
}

func slowDownload(t *testing.T, c net.Conn, path string, size int64) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got int64
	buf := make([]byte, 16<<10)
	for {
		n, err := resp.Body.Read(buf)
		got += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, size, err)
		}
		time.Sleep(16 * time.Millisecond) // the client's pace: ~1 MB/s at most
	}
	if got != size {
		t.Fatalf("%d bytes, want %d", got, size)
	}
	// The test's premise, not a measure of the server: the transfer
	// outlasted the write timeout.
	if took := time.Since(begin); took < 2*writeIdleTimeout {
		t.Errorf("the transfer took %v, under twice the write timeout %v: the test proves nothing", took, writeIdleTimeout)
	}
}

// TestStalledClientCutWatched: the watchdog moves the deadline only for
// bytes acknowledged: a client that stops reading is still cut after
// writeIdleTimeout (its request leaves the in-flight gauge), and gets
// less than the blob.
func TestStalledClientCutWatched(t *testing.T) {
	defer func(d time.Duration) { writeIdleTimeout = d }(writeIdleTimeout)
	writeIdleTimeout = 300 * time.Millisecond
	f := build(t)
	b := bigBlob(t, f, 64<<20) // far more than the socket buffers hold
	m := NewMetrics(f.root, nil, nil)
	s := startWith(t, f, Options{Metrics: m})
	c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /v2/"+f.repo+"/blobs/"+b.d.String()+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	inFlight := func() float64 { return value(scrape(t, client, s.metrics), "registry_http_in_flight_requests", nil) }
	waitUntil(t, "the download in flight", func() bool { return inFlight() == 1 })
	waitUntil(t, "the stalled download cut", func() bool { return inFlight() == 0 })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _ := io.Copy(io.Discard, c)
	if n >= int64(len(b.data)) {
		t.Errorf("got %d bytes: the stalled client was never cut", n)
	}
}

func pairOf(cert, key []byte) testca.Pair { return testca.Pair{Cert: cert, Key: key} }

// TestConnectionLimitLogsOnce: many connections refused in a row are one
// log line, not one each.
func TestConnectionLimitLogsOnce(t *testing.T) {
	f := build(t)
	s := startWith(t, f, Options{MaxConnections: 1})
	addr := strings.TrimPrefix(s.base, "http://")
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := bufio.NewReader(held)
	if resp := getOn(t, held, r, "/v2/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the connection within the limit: %s", resp.Status)
	}
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if resp := getOn(t, c, bufio.NewReader(c), "/v2/"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("past the limit: %s", resp.Status)
		}
		c.Close()
	}
	if n := strings.Count(s.logs.String(), "connection limit reached"); n != 1 {
		t.Errorf("%d log lines for 20 refused connections, want 1:\n%s", n, s.logs.String())
	}
}

// TestConnectionLimitTLS: past the limit, a TLS connection is closed
// without an answer — no plain-text 503 on a TLS port — and the held one
// goes on being served.
func TestConnectionLimitTLS(t *testing.T) {
	f := build(t)
	ca := testca.New(t, "CA")
	cert, key := tlsPair(t, ca, t.TempDir(), 1)
	certs, err := LoadCerts(cert, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(certs, "")
	if err != nil {
		t.Fatal(err)
	}
	s := startWith(t, f, Options{TLS: cfg, MaxConnections: 1})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() {
		t.Helper()
		resp, err := hc.Get(s.base + "/v2/")
		if err != nil {
			t.Fatal(err)
		}
		drain(resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the held connection: %s", resp.Status)
		}
	}
	get()
	raw, err := net.Dial("tcp", strings.TrimPrefix(s.base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := tls.Client(raw, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
	if err := c.Handshake(); err == nil {
		t.Error("a TLS connection past the limit completed its handshake")
	}
	get()
	if !strings.Contains(s.logs.String(), "connection limit reached") {
		t.Errorf("no log line for the limit:\n%s", s.logs.String())
	}
}
