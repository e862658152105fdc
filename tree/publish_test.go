package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// testImage is an image of one layer for Publish: the layer's bytes are
// content, served by fetch (which counts its calls).
type testImage struct {
	Image
	fetches atomic.Int32
}

func newTestImage(repo, tag string, layers ...[]byte) *testImage {
	ti := &testImage{}
	ti.Repo, ti.Tag = repo, tag
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"layers":[`, distribution.MediaTypeOCIManifest)
	for i, content := range layers {
		d := digest.FromBytes(content)
		if i > 0 {
			raw = append(raw, ',')
		}
		raw = fmt.Appendf(raw, `{"digest":%q,"size":%d}`, d, len(content))
		ti.Blobs = append(ti.Blobs, Blob{Digest: d, Size: int64(len(content)), Fetch: func(context.Context) (io.ReadCloser, error) {
			ti.fetches.Add(1)
			return io.NopCloser(bytes.NewReader(content)), nil
		}})
	}
	raw = append(raw, "]}"...)
	d := digest.FromBytes(raw)
	ti.Manifests = []Manifest{{Digest: d, MediaType: distribution.MediaTypeOCIManifest, Raw: raw}}
	ti.Variants = []TagVariant{{Digest: d, MediaType: distribution.MediaTypeOCIManifest}}
	return ti
}

// corrupt makes the image's first blob arrive with wrong bytes.
func (ti *testImage) corrupt() {
	ti.Blobs[0].Fetch = func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(bytes.Repeat([]byte{'x'}, int(ti.Blobs[0].Size)))), nil
	}
}

func tagged(t *testing.T, r *Root, repo, tag string) (digest.Digest, bool) {
	t.Helper()
	vs, err := r.TagVariants(repo, tag)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return vs[0].Digest, true
}

// TestPublishShared: a blob shared by two images is fetched once; each
// image's tag names its manifest; the report counts what moved.
func TestPublishShared(t *testing.T) {
	r := newTree(t)
	shared := []byte("shared layer")
	a, b := newTestImage("a", "v1", shared, []byte("a's own")), newTestImage("ns/b", "v1", shared)
	rep, err := r.Publish(context.Background(), []Image{a.Image, b.Image}, PublishOptions{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, ti := range []*testImage{a, b} {
		if res := rep.Images[i]; res.Err != nil || res.Tagged.IsZero() {
			t.Fatalf("%s: %+v", ti.Repo, res)
		}
		if d, ok := tagged(t, r, ti.Repo, ti.Tag); !ok || d != ti.Variants[0].Digest {
			t.Errorf("%s:%s names %s, want %s", ti.Repo, ti.Tag, d, ti.Variants[0].Digest)
		}
	}
	if n := a.fetches.Load() + b.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2 (the shared layer once)", n)
	}
	if got := rep.Images[1].Blobs[0]; got.Outcome != BlobLinked && got.Outcome != BlobFetched || got.Size != int64(len(shared)) {
		t.Errorf("b's shared blob: %+v", got)
	}
}

// TestPublishAllOrNothing: when one image's blob arrives corrupt, an
// AllOrNothing publication moves no tag — not even a tag that existed —
// and the others fail with ErrWithOthers; without AllOrNothing the good
// image is tagged.
func TestPublishAllOrNothing(t *testing.T) {
	for _, together := range []bool{true, false} {
		t.Run(fmt.Sprint("together=", together), func(t *testing.T) {
			r := newTree(t)
			old := newTestImage("a", "live", []byte("old"))
			if rep, err := r.Publish(context.Background(), []Image{old.Image}, PublishOptions{}); err != nil || rep.Images[0].Err != nil {
				t.Fatal(err, rep.Images[0].Err)
			}
			good, bad := newTestImage("a", "live", []byte("new")), newTestImage("b", "live", []byte("bad"))
			bad.corrupt()
			rep, err := r.Publish(context.Background(), []Image{good.Image, bad.Image}, PublishOptions{AllOrNothing: together})
			if err != nil {
				t.Fatal(err)
			}
			var mm *MismatchError
			if !errors.As(rep.Images[1].Err, &mm) {
				t.Errorf("the corrupt image's error: %v, want a mismatch", rep.Images[1].Err)
			}
			if _, ok := tagged(t, r, "b", "live"); ok {
				t.Error("the corrupt image was tagged")
			}
			d, _ := tagged(t, r, "a", "live")
			switch {
			case together && (!errors.Is(rep.Images[0].Err, ErrWithOthers) || d != old.Variants[0].Digest):
				t.Errorf("together: a:live names %s (error %v), want the old %s and ErrWithOthers", d, rep.Images[0].Err, old.Variants[0].Digest)
			case !together && (rep.Images[0].Err != nil || d != good.Variants[0].Digest):
				t.Errorf("alone: a:live names %s (error %v), want the new %s", d, rep.Images[0].Err, good.Variants[0].Digest)
			}
			if pending, err := r.pendingTags("a"); err != nil || len(pending) != 0 {
				t.Errorf("a journal is left: %v %v", pending, err)
			}
		})
	}
}

// TestRefreshCatalogFor: a tag update reads only its own repository's
// place in _catalog — a catalog that already lists it is not rewritten,
// even when another repository's entry is out of step (a collection sets
// that right) — and a repository that changed its place gets the catalog
// rewritten from the disk.
func TestRefreshCatalogFor(t *testing.T) {
	r := newTree(t)
	a, b := newTestImage("a", "v1", []byte("a")), newTestImage("ns/b", "v1", []byte("b"))
	if _, err := r.Publish(context.Background(), []Image{a.Image, b.Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := distribution.Catalog{Repositories: []string{"a", "ns/b", "gone"}}.Marshal()
	if err := r.publish(r.catalogPath(), stale); err != nil {
		t.Fatal(err)
	}
	if err := r.refreshCatalogFor("a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.readCatalog(); !slices.Equal(got, []string{"a", "ns/b", "gone"}) {
		t.Errorf("a's place was right, yet _catalog was rewritten: %v", got)
	}
	c := newTestImage("c", "v1", []byte("c"))
	if _, err := r.Publish(context.Background(), []Image{c.Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.readCatalog(); !slices.Equal(got, []string{"a", "c", "ns/b"}) {
		t.Errorf("after c's first tag: _catalog %v, want it rewritten from the disk", got)
	}
	if err := r.deleteTag("c", "v1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.readCatalog(); !slices.Equal(got, []string{"a", "ns/b"}) {
		t.Errorf("after c's last tag went: _catalog %v", got)
	}
}

// TestPublishSweepsWhereItWrites: when alone, a publication removes the
// temporary files crashed writers left in the repositories it publishes
// to and in the incoming directory, and walks no other repository (gc
// sweeps those): an export in a tree of a thousand repositories must not
// cost a walk of all of them.
func TestPublishSweepsWhereItWrites(t *testing.T) {
	r := newTree(t)
	a, b := newTestImage("a", "v1", []byte("a")), newTestImage("b", "v1", []byte("b"))
	if _, err := r.Publish(context.Background(), []Image{a.Image, b.Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := map[string]bool{
		filepath.Join(r.repoDir("a"), tagsDir, ".list123"):                  true,
		filepath.Join(r.incomingDir(), "."+b.Blobs[0].Digest.String()+"99"): true,
		filepath.Join(r.repoDir("b"), tagsDir, ".list456"):                  false,
	}
	for p := range stale {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	again := newTestImage("a", "v2", []byte("a2"))
	rep, err := r.Publish(context.Background(), []Image{again.Image}, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.SweptTemps != 2 {
		t.Errorf("swept %d temporary files, want 2", rep.SweptTemps)
	}
	for p, gone := range stale {
		if _, err := os.Stat(p); (err == nil) == gone {
			t.Errorf("%s: exists %v, want gone %v", p, err == nil, gone)
		}
	}
}

// TestPublishConcurrentRepositories: with several jobs, the images of
// different repositories are published at once, those of one repository
// in order (the last to move a tag wins, as one after another), a failed
// image leaves the rest alone, ImageDone reports every image once, in
// order, from Publish's goroutine, and the workers never wait for one
// another's locks as for another process's.
func TestPublishConcurrentRepositories(t *testing.T) {
	var (
		mu     sync.Mutex // Notify is called from the workers
		waited []string
	)
	r := newTree(t).WithWaits(Waits{Notify: func(msg string) {
		mu.Lock()
		defer mu.Unlock()
		waited = append(waited, msg)
	}})
	var images []*testImage
	for i := range 8 {
		images = append(images, newTestImage(fmt.Sprintf("ns/r%d", i), "v1", fmt.Appendf(nil, "layer %d", i)))
		if i%3 == 0 {
			// Two more images moving the same tag of the repository.
			images = append(images, newTestImage(fmt.Sprintf("ns/r%d", i), "live", fmt.Appendf(nil, "first %d", i)))
			images = append(images, newTestImage(fmt.Sprintf("ns/r%d", i), "live", fmt.Appendf(nil, "second %d", i)))
		}
	}
	images = append(images, newTestImage("ns/bad", "v1", []byte("bad layer")))
	images[len(images)-1].corrupt()
	batch := make([]Image, len(images))
	for i, ti := range images {
		batch[i] = ti.Image
	}
	caller := goroutineID()
	var order []int
	rep, err := r.Publish(context.Background(), batch, PublishOptions{Jobs: 4, ImageDone: func(i int, res Published) {
		if id := goroutineID(); id != caller {
			t.Errorf("ImageDone(%d) called from goroutine %s, not Publish's %s", i, id, caller)
		}
		order = append(order, i)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(batch); len(order) != want || !slices.IsSorted(order) || order[0] != 0 || order[want-1] != want-1 {
		t.Errorf("ImageDone called for %v, want each of 0..%d once, in order", order, want-1)
	}
	var repos []string
	for i, ti := range images {
		res := rep.Images[i]
		if ti.Repo == "ns/bad" {
			if res.Err == nil {
				t.Errorf("%s: published with a corrupt blob", ti.Repo)
			}
			continue
		}
		if res.Err != nil || res.Tagged.IsZero() {
			t.Fatalf("%s:%s: %+v", ti.Repo, ti.Tag, res)
		}
		if !slices.Contains(repos, ti.Repo) {
			repos = append(repos, ti.Repo)
		}
	}
	for i := 0; i < 8; i += 3 {
		last := images[slices.IndexFunc(images, func(ti *testImage) bool { return ti.Repo == fmt.Sprintf("ns/r%d", i) })+2]
		if d, ok := tagged(t, r, last.Repo, "live"); !ok || d != last.Manifests[0].Digest {
			t.Errorf("%s:live names %s, want the last image's %s", last.Repo, d, last.Manifests[0].Digest)
		}
	}
	listed, err := r.readCatalog()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(repos)
	if !slices.Equal(listed, repos) {
		t.Errorf("_catalog lists %v, want %v", listed, repos)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waited) > 0 {
		t.Errorf("the workers waited for locks: %q", waited)
	}
}

// goroutineID is the calling goroutine's number, from its stack's first
// line ("goroutine 7 [running]:").
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}
