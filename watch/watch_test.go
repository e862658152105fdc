package watch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testwait"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
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
	waitLog(t, &log, `"msg":"checked"`)
	fx := tree.Fixture(root)
	if err := os.Remove(filepath.Join(fx.V2Dir(), "_catalog")); err != nil {
		t.Fatal(err)
	}
	eventually(t, &log, "_catalog rewritten", func() bool {
		b, err := os.ReadFile(fx.CatalogPath())
		return err == nil && string(b) == `{"repositories":[]}`
	})
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

// TestRunWaitsOnEmptyRoot: started on an empty directory before the first
// export, Run says it waits (at INFO: the normal course), writes nothing
// there, and follows the tree once one is written. Guards: the CLI
// refused the empty directory, and the shipped unit restarted in a loop
// until the first export.
func TestRunWaitsOnEmptyRoot(t *testing.T) {
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, root, Options{Debounce: 10 * time.Millisecond, Log: slog.New(slog.NewJSONHandler(&log, nil))})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitLog(t, &log, `"level":"INFO","msg":"no tree at the root yet; waiting for the first export"`)
	if entries, err := os.ReadDir(root.Dir()); err != nil || len(entries) > 0 {
		t.Fatalf("watch wrote into the empty root: %v %v", entries, err)
	}

	// The first export.
	layer := []byte("layer")
	ld := digest.FromBytes(layer)
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[{"digest":%q,"size":%d}]}`, ld, len(layer))
	md := digest.FromBytes(raw)
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	fx := tree.Fixture(root)
	if _, _, err := fx.PutBlob("ns/app", ld, int64(len(layer)), false, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer)), nil }); err != nil {
		t.Fatal(err)
	}
	if err := fx.PutManifest("ns/app", md, "application/vnd.oci.image.manifest.v1+json", raw); err != nil {
		t.Fatal(err)
	}
	if err := fx.PutTag("ns/app", "v1", []tree.TagVariant{{Digest: md, MediaType: "application/vnd.oci.image.manifest.v1+json"}}); err != nil {
		t.Fatal(err)
	}
	waitLog(t, &log, `"msg":"a tree is at the root"`)

	// Something else changes the tree: the watcher follows.
	if err := os.Remove(fx.TagsListPath("ns/app")); err != nil {
		t.Fatal(err)
	}
	eventually(t, &log, "tags/list re-derived", func() bool {
		tags, _, err := fx.ReadTagsList("ns/app")
		return err == nil && slices.Equal(tags, []string{"v1"})
	})
	if strings.Contains(log.String(), `"level":"WARN"`) {
		t.Errorf("warnings for a root awaiting its first export:\n%s", log.String())
	}
}

// eventually waits up to a minute for cond, checking it every few
// milliseconds, and fails the test saying what did not happen, with the
// watcher's log. The deadline is generous: on a busy machine the
// watcher's passes run late, never wrong.
func eventually(t *testing.T, log *syncBuffer, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, what, func() (bool, string) { return cond(), "the watcher's log:\n" + log.String() })
}

// waitLog waits up to a minute for a log record holding s.
func waitLog(t *testing.T, log *syncBuffer, s string) {
	t.Helper()
	eventually(t, log, "a log record "+s, func() bool { return strings.Contains(log.String(), s) })
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
