package exporter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
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

// A 429 (Too Many Requests) from a registry lowers its rate for the rest
// of the run: the retry waits out the one request's Retry-After, but the
// other repositories and jobs of the run keep sending, and a registry that
// throttles by client would go on refusing them. The rate is halved —
// started, where none was set, at half the rate measured over the last
// rateWindow — down to minRate.
const (
	// minRate is the lowest request rate, per second, a 429 lowers a
	// registry's rate to: halving without end would stall a run that
	// meets a few 429s, while at one a second a rerun of a hundred tags
	// (a HEAD each) still takes under two minutes; a registry that
	// refuses even that is left to the retries' own limit. A rate set
	// lower than that is never lowered.
	minRate = 1.0
	// rateWindow is how far back the rate a run sends at is measured when
	// a 429 comes and no rate was set: long enough to span a burst and its
	// pauses, short enough to be the rate the registry just refused.
	rateWindow = 5 * time.Second
)

// registryLimiter is the cap and the rate of one registry, shared by every
// repository of it a run opens: the cap is a semaphore, the rate
// golang.org/x/time/rate's token bucket, which a 429 lowers (tooMany).
type registryLimiter struct {
	slots chan struct{}                // nil: no cap
	rate  atomic.Pointer[rate.Limiter] // nil: no rate (until a 429)
	clock clock
	// registry and log name the registry in the warning a lowering logs;
	// a nil log discards it.
	registry string
	log      *slog.Logger

	mu sync.Mutex
	// floor is the lowest rate a 429 lowers the rate to.
	floor float64
	// lowered counts the lowerings, so that the 429s answering requests
	// sent before one do not lower the rate again (tooMany).
	lowered int
	// first is when the first request started, and recent when those of
	// the last rateWindow did, recorded while there is no rate: what a
	// first 429 measures the rate by.
	first  time.Time
	recent []time.Time
}

func newRegistryLimiter(l RegistryLimits, c clock) *registryLimiter {
	rl := &registryLimiter{clock: c, floor: minRate}
	if l.MaxRequests > 0 {
		rl.slots = make(chan struct{}, l.MaxRequests)
	}
	if l.RequestsPerSecond > 0 {
		burst := max(1, int(l.RequestsPerSecond))
		rl.rate.Store(rate.NewLimiter(rate.Limit(l.RequestsPerSecond), burst))
		rl.floor = min(minRate, l.RequestsPerSecond)
	}
	return rl
}

// acquire waits for a slot, then for the rate's token; release gives the
// slot back. A slot is taken first so that a request waiting for a slot
// does not hold a token it cannot use yet. Without a rate, it records
// when the request starts, for a 429 to measure the rate by.
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
	lim := rl.rate.Load()
	if lim == nil {
		rl.started()
		return release, nil
	}
	r := lim.ReserveN(rl.clock.now(), 1)
	if d := r.DelayFrom(rl.clock.now()); d > 0 {
		if err := rl.clock.sleep(ctx, d); err != nil {
			r.CancelAt(rl.clock.now())
			release()
			return nil, err
		}
	}
	return release, nil
}

// started records that a request starts now, forgetting those older than
// rateWindow.
func (rl *registryLimiter) started() {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	now := rl.clock.now() // under the lock: recent stays in order
	if rl.first.IsZero() {
		rl.first = now
	}
	rl.forget(now)
	rl.recent = append(rl.recent, now)
}

// forget drops the starts older than rateWindow before now; rl.mu is held.
func (rl *registryLimiter) forget(now time.Time) {
	i := 0
	for i < len(rl.recent) && now.Sub(rl.recent[i]) >= rateWindow {
		i++
	}
	rl.recent = rl.recent[i:]
}

// sentRate is the rate, per second, requests started at over the last
// rateWindow — or since the first, when the run is younger than that,
// counting at least a second so that a first burst does not read as a
// rate of thousands. rl.mu is held.
func (rl *registryLimiter) sentRate(now time.Time) float64 {
	rl.forget(now)
	span := min(max(now.Sub(rl.first), time.Second), rateWindow)
	return float64(len(rl.recent)) / span.Seconds()
}

// lowerings is how many times 429s lowered the rate so far: a request
// reads it as it starts, and hands it to tooMany if answered 429.
func (rl *registryLimiter) lowerings() int {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	return rl.lowered
}

// tooMany lowers the rate after a 429 answered a request that started
// after the rate was lowered gen times: to half the rate, or with no rate
// to half the rate measured (sentRate), never below floor, and logs one
// warning naming the registry and the new rate. A 429 answering a request
// that started before the last lowering changes nothing: that request was
// sent at the rate already halved for it, and the 429s of a burst in
// flight together would otherwise take the rate to the floor at once.
// The bucket is emptied, so that the lowered rate holds from now on
// rather than after a burst; requests already waiting for a token keep
// their turn.
func (rl *registryLimiter) tooMany(gen int) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if gen != rl.lowered {
		return
	}
	now := rl.clock.now()
	lim := rl.rate.Load()
	var next float64
	if lim == nil {
		// Two decimals: an estimate, and one a person reads in the log.
		next = max(math.Round(rl.sentRate(now)/2*100)/100, rl.floor)
	} else {
		cur := float64(lim.Limit())
		next = max(cur/2, rl.floor)
		if next >= cur {
			return // at the floor already
		}
	}
	burst := max(1, int(next))
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(next), burst)
		lim.ReserveN(now, burst)
		rl.rate.Store(lim)
		rl.recent = nil
	} else {
		lim.SetLimitAt(now, rate.Limit(next))
		lim.SetBurstAt(now, burst)
		if n := int(math.Ceil(lim.TokensAt(now))); n > 0 {
			lim.ReserveN(now, n)
		}
	}
	rl.lowered++
	if rl.log != nil {
		rl.log.Warn("lowering the request rate after a 429", "registry", rl.registry, "requests_per_second", next)
	}
}

// limitedTransport sends each request once its registry's limiter lets it,
// and tells the limiter of every 429: each try of a retry passes here.
type limitedTransport struct {
	inner http.RoundTripper
	lim   *registryLimiter
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	release, err := t.lim.acquire(req.Context())
	if err != nil {
		return nil, err
	}
	gen := t.lim.lowerings()
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		release()
		return nil, err
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.lim.tooMany(gen)
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
