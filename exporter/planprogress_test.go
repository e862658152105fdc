package exporter

import (
	"context"
	"sync"
	"testing"

	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// planRecorder is a PlanProgress that keeps what it is told.
type planRecorder struct {
	mu      sync.Mutex
	planned [][]PlannedImage
	done    map[digest.Digest]int
}

func (r *planRecorder) Planned(images []PlannedImage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.planned = append(r.planned, images)
}
func (r *planRecorder) BlobStart(digest.Digest, int64) {}
func (r *planRecorder) BlobBytes(digest.Digest, int64) {}
func (r *planRecorder) BlobDone(d digest.Digest, _ tree.BlobOutcome, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.done[d]++
	}
}

// A sync tells a PlanProgress once which images it publishes, each with
// every blob it needs, before they move; a run with nothing to publish
// tells it nothing.
func TestSyncPlanProgress(t *testing.T) {
	reg := testregistry.Start(t)
	entries := manyRepos(t, reg, 2, 2)
	root := newRoot(t)
	rec := &planRecorder{done: map[digest.Digest]int{}}
	o := syncOptions()
	o.Export.Progress = rec
	if _, err := Sync(context.Background(), root, entries, o); err != nil {
		t.Fatal(err)
	}
	if len(rec.planned) != 1 || len(rec.planned[0]) != 4 {
		t.Fatalf("planned %v, want one batch of 4 images", rec.planned)
	}
	for _, im := range rec.planned[0] {
		if len(im.Blobs) != 3 { // config, shared base, own layer
			t.Errorf("%s: %d blobs, want 3", im.Dest, len(im.Blobs))
		}
		for _, b := range im.Blobs {
			if rec.done[b.Digest] == 0 {
				t.Errorf("%s: blob %s planned, never done", im.Dest, b.Digest)
			}
		}
	}
	if _, err := Sync(context.Background(), root, entries, o); err != nil {
		t.Fatal(err)
	}
	if len(rec.planned) != 1 {
		t.Errorf("a no-op rerun planned %d batches", len(rec.planned)-1)
	}
}
