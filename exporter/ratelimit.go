package exporter

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RegistryLimits bound the load a run puts on one source registry, on top
// of --jobs (which bounds transfers, whichever registry they come from).
// They apply to every request sent because of the registry: pings, token
// requests, listings, HEADs, GETs, redirects followed and each try of a
// retry. The zero value sets no limit.
type RegistryLimits struct {
	// MaxRequests is how many requests may be in flight to the registry
	// at once, a body being read counting until it is read to its end or
	// closed; < 1: no cap.
	MaxRequests int
	// RequestsPerSecond is the rate at which requests may start, with a
	// burst of one second's worth (at least one request); <= 0: no rate.
	RequestsPerSecond float64
}

func (l RegistryLimits) none() bool { return l.MaxRequests < 1 && l.RequestsPerSecond <= 0 }

// Validate refuses a negative, infinite or NaN limit: a file or flag that
// says one means something else than "no limit", and is better named.
func (l RegistryLimits) Validate() error {
	if l.MaxRequests < 0 {
		return fmt.Errorf("max-requests %d: want a number of requests, 0 for no cap", l.MaxRequests)
	}
	if l.RequestsPerSecond < 0 || math.IsInf(l.RequestsPerSecond, 0) || math.IsNaN(l.RequestsPerSecond) {
		return fmt.Errorf("requests-per-second %v: want a rate, 0 for none", l.RequestsPerSecond)
	}
	return nil
}

// clock is the time a registryLimiter waits by; tests replace it to count
// the waits a rate imposes without waiting them.
type clock interface {
	now() time.Time
	sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) now() time.Time                                   { return time.Now() }
func (realClock) sleep(ctx context.Context, d time.Duration) error { return sleep(ctx, d) }

// registryLimiter is the cap and the rate of one registry, shared by every
// repository of it a run opens: the cap is a semaphore, the rate
// golang.org/x/time/rate's token bucket.
type registryLimiter struct {
	slots chan struct{} // nil: no cap
	rate  *rate.Limiter // nil: no rate
	clock clock
}

func newRegistryLimiter(l RegistryLimits, c clock) *registryLimiter {
	rl := &registryLimiter{clock: c}
	if l.MaxRequests > 0 {
		rl.slots = make(chan struct{}, l.MaxRequests)
	}
	if l.RequestsPerSecond > 0 {
		burst := max(1, int(l.RequestsPerSecond))
		rl.rate = rate.NewLimiter(rate.Limit(l.RequestsPerSecond), burst)
	}
	return rl
}

// acquire waits for a slot, then for the rate's token; release gives the
// slot back. A slot is taken first so that a request waiting for a slot
// does not hold a token it cannot use yet.
func (rl *registryLimiter) acquire(ctx context.Context) (release func(), err error) {
	release = func() {}
	if rl.slots != nil {
		select {
		case rl.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var once sync.Once
		release = func() { once.Do(func() { <-rl.slots }) }
	}
	if rl.rate != nil {
		r := rl.rate.ReserveN(rl.clock.now(), 1)
		if d := r.DelayFrom(rl.clock.now()); d > 0 {
			if err := rl.clock.sleep(ctx, d); err != nil {
				r.CancelAt(rl.clock.now())
				release()
				return nil, err
			}
		}
	}
	return release, nil
}

// limitedTransport sends each request once its registry's limiter lets it.
type limitedTransport struct {
	inner http.RoundTripper
	lim   *registryLimiter
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	release, err := t.lim.acquire(req.Context())
	if err != nil {
		return nil, err
	}
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	// A response without a body frees its slot now: nobody has to close
	// what a HEAD returns for the slot to come back.
	if resp.Body == nil || resp.Body == http.NoBody || req.Method == http.MethodHead {
		release()
		return resp, nil
	}
	resp.Body = &releasingBody{rc: resp.Body, release: release}
	return resp, nil
}

// releasingBody gives its request's slot back at the end of the body, at
// the first error reading it, or when it is closed, whichever comes first.
type releasingBody struct {
	rc      io.ReadCloser
	release func()
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.release()
	}
	return n, err
}

func (b *releasingBody) Close() error {
	b.release()
	return b.rc.Close()
}

// pingCache answers a run's pings (GET /v2/, which go-containerregistry
// sends once per repository it opens) from the first answer each URL gave:
// the authentication challenge is the registry's, not the repository's,
// and the token exchange that follows asks for each repository's scope
// anyway. Only a 200 or a 401 is remembered — the answers a ping reads —
// and only for a request without credentials; an error is not, so a
// failed ping is tried again by the next repository. Concurrent pings of
// one URL wait for the first.
type pingCache struct {
	mu      sync.Mutex
	answers map[string]*pingAnswer
}

type pingAnswer struct {
	mu     sync.Mutex
	done   bool
	status int
	header http.Header
}

// pingTransport answers pings from cache, sending the first of each URL
// through inner.
type pingTransport struct {
	inner http.RoundTripper
	cache *pingCache
}

func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && req.URL.Path == "/v2/" && req.URL.RawQuery == "" && req.Header.Get("Authorization") == ""
}

func (t *pingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isPing(req) {
		return t.inner.RoundTrip(req)
	}
	key := req.URL.Scheme + "://" + req.URL.Host + "/v2/"
	t.cache.mu.Lock()
	if t.cache.answers == nil {
		t.cache.answers = map[string]*pingAnswer{}
	}
	a := t.cache.answers[key]
	if a == nil {
		a = &pingAnswer{}
		t.cache.answers[key] = a
	}
	t.cache.mu.Unlock()

	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return &http.Response{
			Status:     fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)),
			StatusCode: a.status,
			Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  a.header.Clone(),
			Body:    http.NoBody,
			Request: req,
		}, nil
	}
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
		a.done, a.status, a.header = true, resp.StatusCode, resp.Header.Clone()
	}
	return resp, nil
}
