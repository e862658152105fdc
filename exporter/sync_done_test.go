package exporter

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
)

// TestSyncDoneAsEachFinishes: SyncOptions.Done hears of each tag once,
// as it finishes, not at the end: a tag that has not moved before any
// export starts (the registry holds the GET of the first moved image's
// manifest until it has been heard of), and each exported tag as its tag
// moves, before the next one's does.
func TestSyncDoneAsEachFinishes(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 2048, types.DockerLayer)
	for _, tag := range []string{"a", "b", "c"} {
		reg.PushImage(t, "app:"+tag, testregistry.DockerImage(t, base, testregistry.Layer(t, 256, types.DockerLayer)))
	}
	root := newRoot(t)
	ctx := context.Background()
	entry := SyncEntry{Entry: "app", Source: reg.Host + "/app", Dest: "app", Tags: []string{"a"}}
	if _, err := Sync(ctx, root, []SyncEntry{entry}, syncOptions()); err != nil {
		t.Fatal(err)
	}

	// app:a is in the tree; b and c are not.
	aHeard := make(chan struct{})
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/manifests/sha256:") {
			return false
		}
		select {
		case <-aHeard:
			return false
		case <-time.After(time.Minute):
			// A guard, not a measure: Done never heard of app:a.
			http.Error(w, "app:a was not reported before the export", http.StatusInternalServerError)
			return true
		}
	}
	var mu sync.Mutex
	var heard []SyncResult
	var problems []string
	o := syncOptions()
	o.Export.Jobs = 1
	o.Done = func(r SyncResult) {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, r)
		switch r.Dest {
		case "app:a":
			if r.Status != SyncUnchanged {
				problems = append(problems, "app:a: "+string(r.Status))
			}
			close(aHeard)
		case "app:b":
			// Heard as b's tag moved: c's has not yet.
			if _, ok, _ := root.TagDigest("app", "b"); !ok {
				problems = append(problems, "app:b heard before its tag moved")
			}
			if _, ok, _ := root.TagDigest("app", "c"); ok {
				problems = append(problems, "app:b heard after app:c's tag moved")
			}
		}
	}
	entry.Tags = []string{"a", "b", "c"}
	rep, err := Sync(ctx, root, []SyncEntry{entry}, o)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if len(heard) != len(rep.Results) {
		t.Errorf("Done heard %d results, the report has %d", len(heard), len(rep.Results))
	}
	count := map[string]int{}
	for _, r := range heard {
		count[r.Dest]++
	}
	for _, r := range rep.Results {
		if count[r.Dest] != 1 {
			t.Errorf("%s heard %d times, want once", r.Dest, count[r.Dest])
		}
	}
	if len(heard) == 3 && (heard[0].Dest != "app:a" || heard[1].Dest != "app:b" || heard[2].Dest != "app:c") {
		t.Errorf("heard %s, %s, %s; want app:a, app:b, app:c", heard[0].Dest, heard[1].Dest, heard[2].Dest)
	}
	for _, r := range heard {
		if r.Dest != "app:a" && r.Status != SyncSynced {
			t.Errorf("%s heard as %s, want synced", r.Dest, r.Status)
		}
	}
}

// TestSyncDoneFailures: a tag whose HEAD fails, and the tags a failure
// keeps from being exported (no KeepGoing), are each heard of once too.
func TestSyncDoneFailures(t *testing.T) {
	reg := testregistry.Start(t)
	reg.PushImage(t, "app:a", testregistry.DockerImage(t, testregistry.Layer(t, 256, types.DockerLayer)))
	root := newRoot(t)
	o := syncOptions()
	count := map[string]int{}
	var mu sync.Mutex
	o.Done = func(r SyncResult) {
		mu.Lock()
		defer mu.Unlock()
		count[r.Dest+" "+string(r.Status)]++
	}
	entries := []SyncEntry{{Entry: "app", Source: reg.Host + "/app", Dest: "app", Tags: []string{"a", "missing"}}}
	rep, err := Sync(context.Background(), root, entries, o)
	if err == nil {
		t.Fatal("a missing tag: no error")
	}
	want := map[string]int{"app:a ": 1, "app:missing failed": 1}
	if len(count) != len(want) || count["app:a "] != 1 || count["app:missing failed"] != 1 {
		t.Errorf("heard %v, want %v", count, want)
	}
	if len(rep.Results) != 2 {
		t.Errorf("results %+v, want two", rep.Results)
	}
}
