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
