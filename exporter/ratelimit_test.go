package exporter

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
)

// fakeClock counts the waits a rate asks for without waiting: a sleep
// moves its time forward.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return ctx.Err()
}

// inflightTransport records the most requests it ever had in flight: from
// the moment one is sent until its body is read to its end or closed.
type inflightTransport struct {
	inner    http.RoundTripper
	now, top atomic.Int64
}

func (t *inflightTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := t.now.Add(1)
	for {
		top := t.top.Load()
		if n <= top || t.top.CompareAndSwap(top, n) {
			break
		}
	}
	resp, err := t.inner.RoundTrip(req)
	if err != nil {
		t.now.Add(-1)
		return nil, err
	}
	var once sync.Once
	done := func() { once.Do(func() { t.now.Add(-1) }) }
	if resp.Body == nil || resp.Body == http.NoBody || req.Method == http.MethodHead {
		done()
		return resp, nil
	}
	resp.Body = &releasingBody{rc: resp.Body, release: done}
	return resp, nil
}

// manyRepos pushes repos repositories of tags tags each, sharing a base
// layer, and returns sync entries naming every tag; the first entry lists
// its tags instead ([] in a sync file).
func manyRepos(t *testing.T, reg *testregistry.Registry, repos, tags int) []SyncEntry {
	base := testregistry.Layer(t, 2048, types.DockerLayer)
	var entries []SyncEntry
	for r := range repos {
		e := SyncEntry{Entry: fmt.Sprint("r", r), Source: fmt.Sprintf("%s/r%d", reg.Host, r), Dest: fmt.Sprintf("mirror/r%d", r)}
		for i := range tags {
			tag := fmt.Sprint("v", i)
			reg.PushImage(t, fmt.Sprintf("r%d:%s", r, tag), testregistry.DockerImage(t, base, testregistry.Layer(t, 256, types.DockerLayer)))
			if r > 0 {
				e.Tags = append(e.Tags, tag)
			}
		}
		entries = append(entries, e)
	}
	return entries
}

// A no-op rerun never pings the registry, whatever the number of
// repositories: it sends one HEAD per tag and the listing of the entry
// that lists, each repository's first request serving as its ping.
func TestSyncNoPing(t *testing.T) {
	const repos, tags = 4, 3
	reg := testregistry.Start(t)
	entries := manyRepos(t, reg, repos, tags)
	root := newRoot(t)
	ctx := context.Background()
	if _, err := Sync(ctx, root, entries, syncOptions()); err != nil {
		t.Fatal(err)
	}
	reg.ResetRequests()
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != SyncUnchanged {
			t.Errorf("rerun: %s %s, want unchanged", r.Dest, r.Status)
		}
	}
	want := map[string]int{"HEAD manifests": repos * tags, "GET tags": 1}
	if got := reg.Requests(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rerun requests %v, want %v", got, want)
	}
}

// The cap holds for every request of a run, --jobs above it: never more
// in flight to the registry than it allows.
func TestSyncMaxRequests(t *testing.T) {
	const limit = 2
	reg := testregistry.Start(t)
	entries := manyRepos(t, reg, 3, 4)
	base := &inflightTransport{inner: reg.Transport()}
	o := syncOptions()
	o.Export.Jobs = 8
	o.Export.Registry.base = base
	o.Export.Registry.Limits = RegistryLimits{MaxRequests: limit}
	rep, err := Sync(context.Background(), newRoot(t), entries, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 12 {
		t.Fatalf("%d results, want 12", len(rep.Results))
	}
	if top := base.top.Load(); top > limit {
		t.Errorf("%d requests in flight at once, cap %d", top, limit)
	}
	if base.now.Load() != 0 {
		t.Errorf("%d requests still in flight after the run", base.now.Load())
	}
}

// A 429 with Retry-After, under a cap of one: the retry waits without
// holding the slot, and the run completes.
func TestSyncMaxRequestsRetryAfter(t *testing.T) {
	reg := testregistry.Start(t)
	entries := manyRepos(t, reg, 2, 2)
	var refused atomic.Int64
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && refused.Add(1)%5 == 0 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}
	o := syncOptions()
	o.Export.Jobs = 4
	o.Export.Registry.Limits = RegistryLimits{MaxRequests: 1}
	o.Export.Registry.retry = &retryPolicy{tries: 5, waits: []time.Duration{time.Millisecond}, maxRetryAfter: time.Millisecond}
	if _, err := Sync(context.Background(), newRoot(t), entries, o); err != nil {
		t.Fatal(err)
	}
}

// With a rate, the run's requests start no faster than it allows: counted
// on a clock that only moves when the limiter waits.
func TestSyncRequestsPerSecond(t *testing.T) {
	const rps = 2.0
	reg := testregistry.Start(t)
	entries := manyRepos(t, reg, 2, 3)
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	start := clock.now()
	o := syncOptions()
	o.Export.Jobs = 4
	o.Export.Registry.pool = &transportPool{clock: clock}
	o.Export.Registry.Limits = RegistryLimits{RequestsPerSecond: rps}
	rep, err := Sync(context.Background(), newRoot(t), entries, o)
	if err != nil {
		t.Fatal(err)
	}
	burst := int64(rps)
	min := time.Duration(float64(rep.Requests-burst) / rps * float64(time.Second))
	if waited := clock.now().Sub(start); rep.Requests <= burst || waited < min {
		t.Errorf("%d requests at %v/s (burst %d) waited %v, want at least %v", rep.Requests, rps, burst, waited, min)
	}
}

// The limiter alone: a full cap refuses a request whose context is done,
// a released slot serves the next, and N requests at rate R wait at least
// (N-burst)/R.
func TestRegistryLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	rl := newRegistryLimiter(RegistryLimits{MaxRequests: 2, RequestsPerSecond: 4}, clock)
	ctx := context.Background()
	r1, err := rl.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := rl.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := rl.acquire(done); err == nil {
		t.Fatal("a third request got a slot under a cap of 2")
	}
	r1()
	r1() // twice: gives back one slot, not two
	r3, err := rl.acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rl.acquire(done); err == nil {
		t.Fatal("releasing one slot twice freed two")
	}
	r2()
	r3()
	start := clock.now()
	const n = 20
	for range n {
		r, err := rl.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	// 3 requests were made before start; the bucket (burst 4) had one
	// token left for the 20.
	if waited, want := clock.now().Sub(start), time.Duration(n-1)*time.Second/4; waited < want {
		t.Errorf("%d requests at 4/s waited %v, want at least %v", n, waited, want)
	}
}

func TestRegistryLimitsValidate(t *testing.T) {
	for _, l := range []RegistryLimits{{MaxRequests: -1}, {RequestsPerSecond: -1}} {
		if l.Validate() == nil {
			t.Errorf("%+v: no error", l)
		}
	}
	if err := (RegistryLimits{MaxRequests: 4, RequestsPerSecond: 0.5}).Validate(); err != nil {
		t.Error(err)
	}
}

// logBuffer collects what a logger writes, for tests that read it after
// the run (slog's handlers serialise their writes).
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lowerings are the rates the log's lowering warnings name, in order,
// each checked to name registry.
func lowerings(t *testing.T, log, registry string) []float64 {
	t.Helper()
	var rates []float64
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="lowering the request rate after a 429"`) {
			continue
		}
		if !strings.Contains(line, " registry="+registry+" ") {
			t.Errorf("lowering line does not name registry %s: %s", registry, line)
		}
		_, v, ok := strings.Cut(line, " requests_per_second=")
		r, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil {
			t.Fatalf("lowering line without its rate: %s", line)
		}
		rates = append(rates, r)
	}
	return rates
}

func limitOf(rl *registryLimiter) float64 {
	if lim := rl.rate.Load(); lim != nil {
		return float64(lim.Limit())
	}
	return 0
}

// A set rate: each 429 halves it, down to the floor, with one warning
// per lowering naming the registry and the new rate; a 429 answering a
// request sent before the last lowering does not lower it again; after a
// lowering the requests start at the lowered rate, the bucket emptied.
func TestRegistryLimiterHalvesOn429(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	var logs logBuffer
	rl := newRegistryLimiter(RegistryLimits{RequestsPerSecond: 8}, clock)
	rl.registry, rl.log = "reg.example", slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	gen := rl.lowerings()
	rl.tooMany(gen)
	if got := limitOf(rl); got != 4 {
		t.Fatalf("after a 429 at 8/s: %v/s, want 4", got)
	}
	rl.tooMany(gen) // sent before the lowering: already counted
	if got := limitOf(rl); got != 4 {
		t.Fatalf("a second 429 of a request sent at 8/s lowered the rate to %v/s", got)
	}
	// The bucket (burst 8) was full; after the lowering it is empty:
	// N requests wait N/4 s.
	start := clock.now()
	const n = 12
	for range n {
		r, err := rl.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	if waited, want := clock.now().Sub(start), time.Duration(n)*time.Second/4; waited < want {
		t.Errorf("%d requests after lowering to 4/s waited %v, want at least %v", n, waited, want)
	}
	for _, want := range []float64{2, 1, 1, 1} {
		rl.tooMany(rl.lowerings())
		if got := limitOf(rl); got != want {
			t.Fatalf("after another 429: %v/s, want %v", got, want)
		}
	}
	if got, want := fmt.Sprint(lowerings(t, logs.String(), "reg.example")), "[4 2 1]"; got != want {
		t.Errorf("logged lowerings %s, want %s (one per lowering, none at the floor)", got, want)
	}
}

// A rate set below the floor is never lowered (nor raised) by a 429.
func TestRegistryLimiterSlowRateKept(t *testing.T) {
	rl := newRegistryLimiter(RegistryLimits{RequestsPerSecond: 0.5}, &fakeClock{t: time.Unix(1e9, 0)})
	rl.tooMany(rl.lowerings())
	if got := limitOf(rl); got != 0.5 {
		t.Errorf("a 429 at 0.5/s set %v/s", got)
	}
}

// No rate set: a 429 starts one at half the rate the requests started at
// over the last rateWindow, then halves it as a set one.
func TestRegistryLimiterMeasuresOn429(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	var logs logBuffer
	rl := newRegistryLimiter(RegistryLimits{MaxRequests: 4}, clock)
	rl.registry, rl.log = "reg.example", slog.New(slog.NewTextHandler(&logs, nil))
	ctx := context.Background()
	// 6 requests in the first second, then 4 per second for 5 s: the
	// first second falls out of the window.
	for range 6 {
		r, err := rl.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	for range 20 {
		_ = clock.sleep(ctx, time.Second/4)
		r, err := rl.acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	if got := limitOf(rl); got != 0 {
		t.Fatalf("a rate of %v/s before any 429", got)
	}
	rl.tooMany(rl.lowerings())
	if got := limitOf(rl); got != 2 {
		t.Fatalf("after a 429 at 4/s measured: %v/s, want 2", got)
	}
	rl.tooMany(rl.lowerings())
	if got := limitOf(rl); got != 1 {
		t.Fatalf("after a second 429: %v/s, want 1", got)
	}
	if got, want := fmt.Sprint(lowerings(t, logs.String(), "reg.example")), "[2 1]"; got != want {
		t.Errorf("logged lowerings %s, want %s", got, want)
	}

	// A run younger than the window counts a second at least, and a
	// measured rate below twice the floor starts the floor.
	young := newRegistryLimiter(RegistryLimits{}, clock)
	for range 10 {
		r, _ := young.acquire(ctx)
		r()
	}
	young.tooMany(young.lowerings())
	if got := limitOf(young); got != 5 {
		t.Errorf("10 requests at once, then a 429: %v/s, want 5 (10 in one second, halved)", got)
	}
	idle := newRegistryLimiter(RegistryLimits{}, clock)
	r, _ := idle.acquire(ctx)
	r()
	idle.tooMany(idle.lowerings())
	if got := limitOf(idle); got != minRate {
		t.Errorf("one request, then a 429: %v/s, want the floor %v", got, minRate)
	}
}

// clockedTransport records, for each request it sends, the fake time it
// was sent at and whether it was answered 429.
type clockedTransport struct {
	inner http.RoundTripper
	clock clock
	mu    sync.Mutex
	sent  []clockedRequest
}

type clockedRequest struct {
	at      time.Time
	refused bool
}

func (t *clockedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	at := t.clock.now()
	resp, err := t.inner.RoundTrip(req)
	t.mu.Lock()
	t.sent = append(t.sent, clockedRequest{at: at, refused: err == nil && resp.StatusCode == http.StatusTooManyRequests})
	t.mu.Unlock()
	return resp, err
}

// End to end: a registry that answers 429 (Retry-After: 0) to two GETs of
// a sync run with no rate set. The run completes; the first 429 starts a
// rate at half the one measured, the second halves it (down to the
// floor); each lowering is one warning naming the registry and its rate,
// which the limiter the run's repositories share holds; and from the
// first 429 on, the requests start no faster than the lowered rate —
// counted on a clock that moves only when the limiter waits. A cap of one
// request makes the run's order of requests one line, so that which came
// after a 429 is plain.
func TestSync429LowersRate(t *testing.T) {
	reg := testregistry.Start(t)
	entries := manyRepos(t, reg, 3, 3)
	var gets atomic.Int64
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet {
			return false
		}
		if n := gets.Add(1); n == 8 || n == 20 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		}
		return false
	}
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	base := &clockedTransport{inner: reg.Transport(), clock: clock}
	var logs logBuffer
	o := syncOptions()
	o.Export.Jobs = 4
	o.Export.Log = slog.New(slog.NewTextHandler(&logs, nil))
	o.Export.Registry.pool = &transportPool{clock: clock}
	o.Export.Registry.base = base
	o.Export.Registry.Limits = RegistryLimits{MaxRequests: 1}
	o.Export.Registry.retry = &retryPolicy{tries: 3, waits: []time.Duration{time.Millisecond}, maxRetryAfter: time.Millisecond}
	syncAll(t, newRoot(t), entries, o)
	refusals := 0
	first := -1
	for i, s := range base.sent {
		if s.refused {
			refusals++
			if first < 0 {
				first = i
			}
		}
	}
	if refusals != 2 {
		t.Fatalf("%d requests answered 429, want 2: the test's registry changed", refusals)
	}
	rates := lowerings(t, logs.String(), reg.Host)
	if len(rates) == 0 {
		t.Fatalf("no lowering logged:\n%s", logs.String())
	}
	if rates[0] < minRate || (len(rates) == 2) != (rates[0] > minRate) || (len(rates) == 2 && rates[1] != max(rates[0]/2, minRate)) {
		t.Errorf("lowerings %v: want a first rate of at least %v, halved by the second 429 unless at the floor", rates, minRate)
	}
	t.Logf("rates %v, %d requests, first 429 at %d", rates, len(base.sent), first)
	lowest := rates[len(rates)-1]
	if got := limitOf(o.Export.Registry.pool.limiters[reg.Host]); got != lowest {
		t.Errorf("the run's limiter for %s is at %v/s, the log says %v/s", reg.Host, got, lowest)
	}
	// After the first 429, with the bucket emptied, N requests take at
	// least N/rate on the limiter's clock, rate being the first lowered
	// one (the second only slows them more).
	after := base.sent[first+1:]
	waited := base.sent[len(base.sent)-1].at.Sub(base.sent[first].at)
	if want := time.Duration(float64(len(after)) / rates[0] * float64(time.Second)); len(after) == 0 || waited < want {
		t.Errorf("%d requests after the 429 at %v/s came in %v, want at least %v", len(after), rates[0], waited, want)
	}
	// Counted per second of that clock, too.
	perSecond := map[int64]int{}
	for _, s := range after {
		perSecond[int64(s.at.Sub(base.sent[first].at)/time.Second)]++
	}
	for sec, n := range perSecond {
		if float64(n) > rates[0]+1 {
			t.Errorf("%d requests in second %d after the 429, rate %v/s", n, sec, rates[0])
		}
	}
}
