package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"

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
