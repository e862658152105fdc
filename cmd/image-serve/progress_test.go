package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// syncBuffer is a bytes.Buffer the drawing goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTTYProgress draws one line per blob, like skopeo, ending with each
// blob's outcome.
func TestTTYProgress(t *testing.T) {
	var out syncBuffer
	p := newTTYProgress(&out)
	fetched, reused := digest.FromString("fetched"), digest.FromString("reused")
	p.BlobStart(fetched, 2048)
	p.BlobBytes(fetched, 1024)
	p.BlobBytes(fetched, 1024)
	p.BlobDone(fetched, tree.BlobFetched, nil)
	p.BlobStart(reused, 10)
	p.BlobDone(reused, tree.BlobLinked, nil)
	p.Close()

	s := out.String()
	last := s[strings.LastIndex(s, "Copying blob "+short(fetched)):]
	lines := strings.Split(strings.TrimRight(last, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("final frame has %d lines, want 2:\n%q", len(lines), last)
	}
	if !strings.Contains(lines[0], "2.0 KiB / 2.0 KiB") || !strings.HasSuffix(lines[0], "done") {
		t.Errorf("fetched blob line %q", lines[0])
	}
	if !strings.Contains(lines[1], short(reused)) || !strings.HasSuffix(lines[1], "skipped: already exists") {
		t.Errorf("reused blob line %q", lines[1])
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestRunProgress: sync's one line for the run counts an image once all
// its blobs are in the tree, a shared blob once, and leaves the blobs the
// tree had out of the bytes to fetch.
func TestRunProgress(t *testing.T) {
	shared, own1, own2, had := digest.FromString("shared"), digest.FromString("own1"), digest.FromString("own2"), digest.FromString("had")
	var out syncBuffer
	p := newRunProgress(&out)
	p.Planned([]exporter.PlannedImage{
		{Dest: "a:1", Blobs: []exporter.PlannedBlob{{Digest: shared, Size: 1024}, {Digest: own1, Size: 1024}}},
		{Dest: "a:2", Blobs: []exporter.PlannedBlob{{Digest: shared, Size: 1024}, {Digest: own2, Size: 2048}, {Digest: had, Size: 4096}}},
	})
	p.BlobStart(shared, 1024)
	p.BlobBytes(shared, 1024)
	p.BlobDone(shared, tree.BlobFetched, nil)
	p.BlobDone(had, tree.BlobLinked, nil)
	p.BlobBytes(own1, 1024)
	p.BlobDone(own1, tree.BlobFetched, nil)
	p.BlobDone(shared, tree.BlobLinked, nil) // the second image's link: fetched once
	p.mu.Lock()
	mid := renderRun(p.state, 2*time.Second)
	p.mu.Unlock()
	if want := "Syncing 1/2 images, 2.0 KiB / 4.0 KiB, 1.0 KiB/s"; mid != want {
		t.Errorf("midway: %q, want %q", mid, want)
	}
	p.BlobBytes(own2, 2048)
	p.BlobDone(own2, tree.BlobFetched, nil)
	p.Close()
	s := out.String()
	if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("want one line, ended once: %q", s)
	}
	if !strings.Contains(s[strings.LastIndex(s, "\r"):], "Syncing 2/2 images, 4.0 KiB / 4.0 KiB, ") {
		t.Errorf("final line %q", s)
	}
}

func TestRenderRun(t *testing.T) {
	s := runState{
		images: []map[digest.Digest]bool{{digest.FromString("x"): false}},
		sizes:  map[digest.Digest]int64{digest.FromString("x"): 3 << 20},
		reused: map[digest.Digest]bool{},
		failed: 1,
	}
	if got, want := renderRun(s, 0), "Syncing 0/1 images, 0 B / 3.0 MiB, -, blobs failed: 1"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

// A run that publishes nothing draws nothing.
func TestRunProgressNothing(t *testing.T) {
	var out syncBuffer
	p := newRunProgress(&out)
	p.Close()
	if s := out.String(); s != "" {
		t.Errorf("drew %q", s)
	}
}
