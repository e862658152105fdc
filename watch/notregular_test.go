package watch

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/tree"
)

// TestRunNotRegular: a FIFO at a manifest's index.json and at a type map
// is damage the watcher says, one WARN record naming each path, while it
// goes on re-deriving the rest of the tree; it never blocks on one, ends
// with its context, and leaves both FIFOs where they are (verify --repair
// removes them). The type map's tag leaves tags/list, as servers answer
// it as missing.
func TestRunNotRegular(t *testing.T) {
	root, err := tree.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	ims := map[string]hostiletree.Image{}
	for _, repo := range []string{"good", "manifest", "typemap"} {
		ims[repo] = hostiletree.Export(t, root, repo, "v1")
		hostiletree.Export(t, root, repo, "v2")
	}
	fx := tree.Fixture(root)
	manifest, typeMap := fx.ManifestPath("manifest", ims["manifest"].Manifest), fx.TypeMapPath("typemap", "v1")
	hostiletree.PlantFIFO(t, manifest)
	hostiletree.PlantFIFO(t, typeMap)
	// A change the watcher sets right meanwhile: good's tags/list removed.
	if err := os.Remove(fx.TagsListPath("good")); err != nil {
		t.Fatal(err)
	}

	var log syncBuffer
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, root, Options{Debounce: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&log, nil))})
	}()
	for _, want := range []string{
		"level=WARN msg=\"a tag's type map is no regular file: not served, left as it is (verify --repair removes it)\" repo=typemap path=" + typeMap,
		"level=WARN msg=\"re-deriving a repository; trying again later\" repo=manifest err=\"referrers of manifest: open " + manifest + ": not a regular file (fifo)\"",
	} {
		waitLog(t, &log, want)
	}
	eventually(t, &log, "good's tags/list rewritten", func() bool {
		fi, err := os.Lstat(fx.TagsListPath("good"))
		return err == nil && fi.Mode().IsRegular()
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
	if n := strings.Count(log.String(), "path="+typeMap); n != 1 {
		t.Errorf("the type map said %d times, want once:\n%s", n, log.String())
	}
	for _, p := range []string{manifest, typeMap} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
			t.Errorf("%s: the FIFO is not left as it is (%v)", p, err)
		}
	}
	if tags, _, err := fx.ReadTagsList("typemap"); err != nil || strings.Join(tags, ",") != "v2" {
		t.Errorf("typemap's tags/list: %v %v, want v2 alone", tags, err)
	}
}
