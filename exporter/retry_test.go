package exporter

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

// Short waits for tests, told apart from each other: the backoff after
// the first and the second failed try, and the cap of a Retry-After.
const (
	testWait1         = 1 * time.Millisecond
	testWait2         = 2 * time.Millisecond
	testMaxRetryAfter = 20 * time.Millisecond
)

// waits records the waits a retry policy chose.
type waits struct {
	mu   sync.Mutex
	list []retryWait
}

func (w *waits) add(rw retryWait) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, rw)
}

func (w *waits) durations() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, rw := range w.list {
		out = append(out, rw.wait)
	}
	return out
}

// testPolicy is defaultRetry with short waits, recording them in w.
func testPolicy(w *waits) *retryPolicy {
	return &retryPolicy{
		tries:         defaultRetry.tries,
		waits:         []time.Duration{testWait1, testWait2},
		maxRetryAfter: testMaxRetryAfter,
		waited:        w.add,
	}
}

// requestLog records what a registry was asked: "path status" per
// request, in order.
type requestLog struct {
	mu   sync.Mutex
	list []string
}

func (l *requestLog) add(path string, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, fmt.Sprintf("%s %d", path, status))
}

// of is what was asked of paths ending in suffix.
func (l *requestLog) of(suffix string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.list {
		if p, _, _ := strings.Cut(r, " "); strings.HasSuffix(p, suffix) {
			out = append(out, r)
		}
	}
	return out
}

// TestRetryStatuses: requests that fail before a body arrives with 408,
// 429 or 5xx are tried again, three tries in all, a Retry-After raising
// the wait up to the cap; other statuses and wrong bytes are not retried.
// The registry answers the scripted statuses for a path (the tag's
// manifest, the config or the layer), then serves it.
func TestRetryStatuses(t *testing.T) {
	const tag, config, layer = "/manifests/v1", "config", "layer"
	type answer struct {
		status     int
		retryAfter string
	}
	for _, tc := range []struct {
		name    string
		script  map[string][]answer // path (tag, config, layer) -> answers before the real one
		forever map[string]answer   // path -> the answer to every request
		corrupt string              // a blob whose bytes are served wrong
		want    map[string][]int    // path -> the statuses the registry sent, in order
		waits   []time.Duration
		err     string // "" for success
	}{
		{
			name:   "503, 429 with Retry-After, 408, then success",
			script: map[string][]answer{tag: {{503, ""}, {429, "1"}}, config: {{408, ""}}},
			want:   map[string][]int{tag: {503, 429, 200}, config: {408, 200}, layer: {200}},
			// 429's Retry-After of 1 s is over the cap: the cap, not the backoff.
			waits: []time.Duration{testWait1, testMaxRetryAfter, testWait1},
		},
		{
			name:    "5xx forever",
			forever: map[string]answer{tag: {502, ""}},
			want:    map[string][]int{tag: {502, 502, 502}},
			waits:   []time.Duration{testWait1, testWait2},
			err:     "the registry answered HTTP 502 (tried 3 times)",
		},
		{
			name:    "5xx forever on a blob",
			forever: map[string]answer{layer: {500, ""}},
			want:    map[string][]int{tag: {200}, layer: {500, 500, 500}},
			waits:   []time.Duration{testWait1, testWait2},
			err:     "the registry answered HTTP 500 (tried 3 times)",
		},
		{
			name:    "404 is not retried",
			forever: map[string]answer{tag: {404, ""}},
			want:    map[string][]int{tag: {404}},
			err:     "not found (HTTP 404)",
		},
		{
			name:    "403 is not retried",
			forever: map[string]answer{config: {403, ""}},
			want:    map[string][]int{config: {403}},
			err:     "authentication failed (HTTP 403)",
		},
		{
			name:    "wrong bytes are not retried",
			corrupt: layer,
			want:    map[string][]int{layer: {200}},
			err:     "content does not match its digest",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testregistry.Start(t)
			l := testregistry.Layer(t, 4096, types.DockerLayer)
			img := testregistry.DockerImage(t, l)
			p := reg.PushImage(t, "ns/app:v1", img)
			ld, _ := l.Digest()
			cd, _ := img.ConfigName()
			paths := map[string]string{tag: tag, config: "/blobs/" + cd.String(), layer: "/blobs/" + ld.String()}
			var log requestLog
			var mu sync.Mutex
			script := map[string][]answer{}
			for k, v := range tc.script {
				script[paths[k]] = v
			}
			reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
				for k, suffix := range paths {
					if !strings.HasSuffix(r.URL.Path, suffix) {
						continue
					}
					mu.Lock()
					a, scripted := answer{}, len(script[suffix]) > 0
					if scripted {
						a, script[suffix] = script[suffix][0], script[suffix][1:]
					} else if f, ok := tc.forever[k]; ok {
						a, scripted = f, true
					}
					mu.Unlock()
					switch {
					case scripted:
						if a.retryAfter != "" {
							w.Header().Set("Retry-After", a.retryAfter)
						}
						w.WriteHeader(a.status)
						log.add(suffix, a.status)
						return true
					case tc.corrupt == k:
						n, _ := l.Size()
						w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
						w.Write(make([]byte, n))
						log.add(suffix, 200)
						return true
					}
					log.add(suffix, 200)
				}
				return false
			}
			var w waits
			_, err := Export(context.Background(), newRoot(t), "docker://"+p.Ref, "", Options{Jobs: 1, Registry: RegistryOptions{Insecure: true, retry: testPolicy(&w)}})
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("export: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n")):
				t.Fatalf("export: %v\nwant one line saying %q", err, tc.err)
			}
			for k, statuses := range tc.want {
				var want []string
				for _, s := range statuses {
					want = append(want, fmt.Sprintf("%s %d", paths[k], s))
				}
				if got := log.of(paths[k]); strings.Join(got, ", ") != strings.Join(want, ", ") {
					t.Errorf("%s: the registry answered %v, want %v", k, got, want)
				}
			}
			if got := w.durations(); fmt.Sprint(got) != fmt.Sprint(tc.waits) {
				t.Errorf("waits %v, want %v", got, tc.waits)
			}
		})
	}
}

// TestRetryRefusedConnection: a registry whose port refuses connections
// at first and listens a little later is exported from. The port is
// reserved and closed; the registry starts listening on it when the
// policy chooses its first wait after a refused connection, before that
// wait begins, so the next try meets it whatever the machine's speed.
func TestRetryRefusedConnection(t *testing.T) {
	reg := testregistry.Start(t)
	p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	var once sync.Once
	var refused atomic.Bool
	policy := testPolicy(&waits{})
	policy.waited = func(rw retryWait) {
		if !strings.Contains(rw.cause, "connection refused") {
			return
		}
		refused.Store(true)
		once.Do(func() {
			l, err := net.Listen("tcp", host)
			if err != nil {
				t.Errorf("listen again on %s: %v", host, err)
				return
			}
			reg.ServeOn(t, l)
		})
	}
	src := "docker://" + host + strings.TrimPrefix(p.Ref, reg.Host)
	if _, err := Export(context.Background(), newRoot(t), src, "", Options{Registry: RegistryOptions{Insecure: true, retry: policy}}); err != nil {
		t.Fatalf("export: %v", err)
	}
	if !refused.Load() {
		t.Error("no connection was refused: the test proved nothing")
	}
}

// TestRetryClosedPortGivesUp: a port that never listens fails after
// three tries, with one line naming the cause and the tries.
func TestRetryClosedPortGivesUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	var w waits
	// Strict: only https is tried, so the tries are counted once.
	_, err = Export(context.Background(), newRoot(t), "docker://"+host+"/ns/app:v1", "", Options{Registry: RegistryOptions{retry: testPolicy(&w)}})
	want := host + "/ns/app:v1: cannot reach the registry: dial tcp " + host + ": connect: connection refused (tried 3 times)"
	if err == nil || err.Error() != want {
		t.Fatalf("export: %v\nwant: %s", err, want)
	}
	if got := w.durations(); fmt.Sprint(got) != fmt.Sprint([]time.Duration{testWait1, testWait2}) {
		t.Errorf("waits %v, want %v", got, []time.Duration{testWait1, testWait2})
	}
}

// TestRetryWaitCancelled: cancelling the export during a wait ends it at
// once — the wait is not served, no further try is made — with the
// context's error. The waits are README's (1 s, 3 s): the test would
// have to wait them out if the cancellation did not end them.
func TestRetryWaitCancelled(t *testing.T) {
	reg := testregistry.Start(t)
	p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
	var manifests atomic.Int64
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		manifests.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	policy := *defaultRetry
	policy.waited = func(retryWait) { cancel() }
	_, err := Export(ctx, newRoot(t), "docker://"+p.Ref, "", Options{Registry: RegistryOptions{Insecure: true, retry: &policy}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("export: %v, want the context's cancellation", err)
	}
	if n := manifests.Load(); n != 1 {
		t.Errorf("%d manifest requests, want 1: the cancelled wait was served", n)
	}
}

// TestResumeBlob: a blob body cut (at 60 %) is resumed from the byte it
// stopped at with a ranged request, the bytes stay right, and a source
// that supports ranges sends the blob's bytes once in all; one that
// ignores ranges, or refuses them (416), sends the whole blob again and
// the bytes already held are skipped; a source that cuts every time is
// given up on after three tries.
func TestResumeBlob(t *testing.T) {
	type serveFunc func(w http.ResponseWriter, r *http.Request, b []byte, try int)
	cut := func(w http.ResponseWriter, b []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)*6/10])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	whole := func(w http.ResponseWriter, b []byte) {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b)
	}
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		serve   serveFunc
		ranges  func(size int) []string // the Range header of each request
		sent    func(size int) int      // the bytes the registry sent in all
		err     string                  // "" for success
	}{
		{
			name: "ranges honoured",
			serve: func(w http.ResponseWriter, r *http.Request, b []byte, try int) {
				if try == 1 {
					cut(w, b)
				}
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			},
			ranges: func(size int) []string { return []string{"", fmt.Sprintf("bytes=%d-%d", size*6/10, size-1)} },
			sent:   func(size int) int { return size },
		},
		{
			name:    "stalled, then ranges honoured",
			timeout: 2 * time.Second,
			serve: func(w http.ResponseWriter, r *http.Request, b []byte, try int) {
				if try == 1 {
					w.Header().Set("Content-Length", strconv.Itoa(len(b)))
					w.WriteHeader(http.StatusOK)
					w.Write(b[:len(b)*6/10])
					w.(http.Flusher).Flush()
					<-r.Context().Done()
					return
				}
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			},
			ranges: func(size int) []string { return []string{"", fmt.Sprintf("bytes=%d-%d", size*6/10, size-1)} },
			sent:   func(size int) int { return size },
		},
		{
			name: "ranges ignored",
			serve: func(w http.ResponseWriter, r *http.Request, b []byte, try int) {
				if try == 1 {
					cut(w, b)
				}
				whole(w, b)
			},
			ranges: func(size int) []string { return []string{"", fmt.Sprintf("bytes=%d-%d", size*6/10, size-1)} },
			sent:   func(size int) int { return size*6/10 + size },
		},
		{
			name: "ranges refused",
			serve: func(w http.ResponseWriter, r *http.Request, b []byte, try int) {
				switch {
				case try == 1:
					cut(w, b)
				case r.Header.Get("Range") != "":
					w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
					return
				}
				whole(w, b)
			},
			ranges: func(size int) []string {
				return []string{"", fmt.Sprintf("bytes=%d-%d", size*6/10, size-1), ""}
			},
			sent: func(size int) int { return size*6/10 + size },
		},
		{
			name: "cut every time",
			serve: func(w http.ResponseWriter, r *http.Request, b []byte, try int) {
				cut(w, b)
			},
			ranges: func(size int) []string {
				r := fmt.Sprintf("bytes=%d-%d", size*6/10, size-1)
				return []string{"", r, r}
			},
			sent: func(size int) int { return 3 * (size * 6 / 10) },
			err:  "stream truncated after",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testregistry.Start(t)
			l := testregistry.Layer(t, 256<<10, types.DockerLayer)
			p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, l))
			ld, _ := l.Digest()
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var ranges []string
			var sent atomic.Int64
			reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
					return false
				}
				mu.Lock()
				ranges = append(ranges, r.Header.Get("Range"))
				try := len(ranges)
				mu.Unlock()
				tc.serve(&bodyCounter{ResponseWriter: w, n: &sent}, r, b, try)
				return true
			}
			var w waits
			root := newRoot(t)
			_, err = Export(context.Background(), root, "docker://"+p.Ref, "", Options{Registry: RegistryOptions{Insecure: true, Timeout: tc.timeout, retry: testPolicy(&w)}})
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("export: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "(tried 3 times)")):
				t.Fatalf("export: %v\nwant an error saying %q after three tries", err, tc.err)
			}
			mu.Lock()
			got := ranges
			mu.Unlock()
			if want := tc.ranges(len(b)); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
				t.Errorf("Range of each request %q, want %q", got, want)
			}
			if got, want := sent.Load(), int64(tc.sent(len(b))); got != want {
				t.Errorf("the registry sent %d bytes of the %d-byte blob, want %d", got, len(b), want)
			}
			if tc.err == "" {
				checkBlobs(t, root, "ns/app")
			}
		})
	}
}

// bodyCounter counts the body bytes a handler writes.
type bodyCounter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *bodyCounter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *bodyCounter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

// TestResumeProgressRestartsTheCount: a blob try that brought at least
// resumeProgress new bytes before its cut does not count against the
// three tries: a blob cut four times, each time after 1 MiB more, still
// arrives.
func TestResumeProgressRestartsTheCount(t *testing.T) {
	reg := testregistry.Start(t)
	l := testregistry.Layer(t, 5<<20, types.DockerLayer)
	p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, l))
	ld, _ := l.Digest()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	var tries atomic.Int64
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		n := int(tries.Add(1))
		if n > 4 {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
			return true
		}
		from := 0
		if n > 1 {
			fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &from)
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(b)-1, len(b)))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)-from))
		if n == 1 {
			w.Header().Del("Content-Range")
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusPartialContent)
		}
		w.Write(b[from : from+resumeProgress])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	root := newRoot(t)
	if _, err := Export(context.Background(), root, "docker://"+p.Ref, "", Options{Registry: RegistryOptions{Insecure: true, retry: testPolicy(&waits{})}}); err != nil {
		t.Fatalf("export: %v", err)
	}
	if n := tries.Load(); n != 5 {
		t.Errorf("%d blob requests, want 5 (four cut after 1 MiB each, then the rest)", n)
	}
	checkBlobs(t, root, "ns/app")
}

// TestRetryWait: README's policy — 1 s, then 3 s; a Retry-After raises
// the wait, up to 30 s, and never lowers it.
func TestRetryWait(t *testing.T) {
	for _, tc := range []struct {
		failed     int
		retryAfter time.Duration
		want       time.Duration
	}{
		{1, 0, time.Second},
		{2, 0, 3 * time.Second},
		{5, 0, 3 * time.Second},
		{1, 500 * time.Millisecond, time.Second},
		{1, 10 * time.Second, 10 * time.Second},
		{2, 100 * time.Second, 30 * time.Second},
	} {
		if got := defaultRetry.wait(tc.failed, tc.retryAfter); got != tc.want {
			t.Errorf("wait after failed try %d with Retry-After %v: %v, want %v", tc.failed, tc.retryAfter, got, tc.want)
		}
	}
}

// TestRetryAfter: Retry-After in seconds or as an HTTP date.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"1", time.Second},
		{" 120 ", 120 * time.Second},
		{"-5", 0},
		{"99999999999999", maxRetryAfterSeconds * time.Second},
		{"soon", 0},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.v, now); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.v, got, tc.want)
		}
	}
}

// TestRetryCause: what is worth another try, and what never is.
func TestRetryCause(t *testing.T) {
	status := func(code int) *http.Response {
		return &http.Response{StatusCode: code, Header: http.Header{}}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		resp  *http.Response
		err   error
		retry bool
	}{
		{name: "408", resp: status(408), retry: true},
		{name: "429", resp: status(429), retry: true},
		{name: "500", resp: status(500), retry: true},
		{name: "502", resp: status(502), retry: true},
		{name: "503", resp: status(503), retry: true},
		{name: "504", resp: status(504), retry: true},
		{name: "200", resp: status(200)},
		{name: "206", resp: status(206)},
		{name: "400", resp: status(400)},
		{name: "401", resp: status(401)},
		{name: "403", resp: status(403)},
		{name: "404", resp: status(404)},
		{name: "416", resp: status(416)},
		{name: "501", resp: status(501)},
		{name: "connection refused", err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, retry: true},
		{name: "connection reset", err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, retry: true},
		{name: "closed before a response", err: io.EOF, retry: true},
		{name: "timeout", err: &net.DNSError{Err: "i/o timeout", IsTimeout: true}, retry: true},
		{name: "no such host", err: &net.DNSError{Err: "no such host", IsNotFound: true}},
		{name: "503 after cancellation", ctx: cancelled, resp: status(503)},
		{name: "refused after cancellation", ctx: cancelled, err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
		{name: "cancelled", err: context.Canceled},
		{name: "plain HTTP refused", err: &plainHTTPError{"http://x/v2/"}},
		{name: "plain HTTP answered", err: http.ErrSchemeMismatch},
		{name: "unknown certificate authority", err: x509.UnknownAuthorityError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			cause, _ := retryCause(ctx, tc.resp, tc.err, time.Now())
			if (cause != "") != tc.retry {
				t.Errorf("cause %q, want retry=%v", cause, tc.retry)
			}
		})
	}
}

// TestBlobCloseDuringResume: closing a blob while its reader waits to
// resume (as the tree does when its write fails while reading ahead) ends
// the wait at once: Read returns an error, and no further request is
// made. The wait is README's 1 s: the test would serve it otherwise.
func TestBlobCloseDuringResume(t *testing.T) {
	reg := testregistry.Start(t)
	l := testregistry.Layer(t, 64<<10, types.DockerLayer)
	p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, l))
	ld, _ := l.Digest()
	size, _ := l.Size()
	var gets atomic.Int64
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+ld.String()) {
			return false
		}
		gets.Add(1)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, size/2))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	src, err := ParseSource("docker://" + p.Ref)
	if err != nil {
		t.Fatal(err)
	}
	var blob io.ReadCloser
	policy := *defaultRetry
	policy.waited = func(retryWait) { blob.Close() }
	r, err := openRegistry(context.Background(), src, RegistryOptions{Insecure: true, retry: &policy})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if blob, err = r.Blob(context.Background(), Descriptor{Digest: digest.Digest(ld.String()), Size: size}); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, blob); err == nil || n != size/2 {
		t.Errorf("read %d bytes, error %v; want the %d bytes sent, then an error", n, err, size/2)
	}
	if n := gets.Load(); n != 1 {
		t.Errorf("%d blob requests, want 1: the closed blob was resumed", n)
	}
}
