package exporter

import (
	"context"
	"fmt"
	"net/http"
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
