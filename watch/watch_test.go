package watch

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/tree"
)

// TestDebounce: a batch falls due once quiet for the debounce period, or
// at the maximum delay after its first event however busy the stream; the
// clock is the test's, so nothing here depends on timing.
func TestDebounce(t *testing.T) {
	const q, maxDelay = 200 * time.Millisecond, 2 * time.Second
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name   string
		events []time.Duration // after t0
		at     time.Duration   // when take is asked
		due    bool
		wait   time.Duration // when not due
	}{
		{"nothing pending", nil, 0, false, -1},
		{"one event, not quiet yet", []time.Duration{0}, 100 * time.Millisecond, false, 100 * time.Millisecond},
		{"one event, quiet", []time.Duration{0}, q, true, 0},
		{"a burst extends the quiet period", []time.Duration{0, 150 * time.Millisecond, 300 * time.Millisecond}, 400 * time.Millisecond, false, 100 * time.Millisecond},
		{"a continuous stream is due at the maximum delay", []time.Duration{0, 1900 * time.Millisecond}, 1950 * time.Millisecond, false, 50 * time.Millisecond},
		{"due at the maximum delay", []time.Duration{0, 500 * time.Millisecond, 1000 * time.Millisecond, 1500 * time.Millisecond, 1999 * time.Millisecond}, maxDelay, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &watcher{o: Options{Debounce: q, MaxDelay: maxDelay}.withDefaults(), kick: make(chan struct{}, 1)}
			for _, e := range tc.events {
				w.pending.addRepo("ns/app")
				if w.first.IsZero() {
					w.first = t0.Add(e)
				}
				w.last = t0.Add(e)
			}
			b, wait := w.take(t0.Add(tc.at))
			if tc.due != (wait == 0) || (!tc.due && wait != tc.wait) {
				t.Errorf("take: wait %v, want due %v / wait %v", wait, tc.due, tc.wait)
			}
			if tc.due && (!b.repos["ns/app"] || !w.pending.empty()) {
				t.Errorf("take: batch %+v, pending %+v; want the batch handed over", b, w.pending)
			}
		})
	}
}

// TestFallBackSaysSoOnce: each reason for falling back to rescans is said
// once, at WARN, naming the sysctl and the command that raises it.
func TestFallBackSaysSoOnce(t *testing.T) {
	var buf bytes.Buffer
	w := &watcher{o: Options{Rescan: 30 * time.Second, Log: slog.New(slog.NewTextHandler(&buf, nil))}.withDefaults(), said: map[string]bool{}}
	w.log = w.o.Log
	for range 3 {
		w.fallBack("watches", "/srv/root/v2/ns")
		w.fallBack("queue", "")
	}
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("%d records, want one per reason:\n%s", n, out)
	}
	for _, want := range []string{
		"level=WARN", "fs.inotify.max_user_watches", "sysctl -w fs.inotify.max_user_watches=",
		"fs.inotify.max_queued_events", "sysctl -w fs.inotify.max_queued_events=", "every 30s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("fallback records do not say %q:\n%s", want, out)
		}
	}
	if !w.fallenBack() {
		t.Error("not fallen back after saying so")
	}
}

// TestRunStopsWithContext: Run does its first pass over a tree, follows a
// change, and returns the context's cause when it ends.
func TestRunStopsWithContext(t *testing.T) {
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, root, Options{Debounce: 10 * time.Millisecond, Log: slog.New(slog.NewJSONHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	}()
	// A _catalog removed by hand comes back.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(log.String(), `"msg":"checked"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no first pass within a minute:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(filepath.Join(root.V2Dir(), "_catalog")); err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(root.CatalogPath()); err == nil && string(b) == `{"repositories":[]}` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("_catalog not rewritten within a minute:\n%s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop := context.Canceled
	cancel(stop)
	select {
	case err := <-done:
		if err != stop {
			t.Errorf("Run returned %v, want the context's cause", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still running a minute after its context ended")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
