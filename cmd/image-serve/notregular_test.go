package main

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
)

// fifoDeadline is how long a command on a tree with FIFOs may take: each
// finishes in well under a second, and one that opens a FIFO blocking
// never does.
const fifoDeadline = 60 * time.Second

// runBounded runs image-serve with args, killed after fifoDeadline,
// failing the test when it had to be.
func runBounded(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fifoDeadline)
	defer cancel()
	r := runCmd(t, exec.CommandContext(ctx, binary, args...))
	if ctx.Err() != nil {
		t.Fatalf("image-serve %s: still running after %v (blocked on a FIFO?), killed", strings.Join(args, " "), fifoDeadline)
	}
	return r
}

// fifoCLITree is a tree of three repositories, each with tags v1 and v2
// (two images): "good", untouched; "manifest", whose v1 manifest's
// index.json is a FIFO; "typemap", whose v1 type map is a FIFO. Next to
// the root is a directory "outside" that no command may touch.
type fifoCLITree struct {
	root           *tree.Root
	outside        string
	manifest       string // the FIFO at manifest's v1 index.json
	typeMap        string // the FIFO at typemap's v1 type map
	typeMapNamed   string // the index.json of the manifest typemap:v1 named
	manifestDigest string
}

func buildFIFOCLITree(t *testing.T) *fifoCLITree {
	t.Helper()
	root, outside := hostiletree.NewRoot(t)
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "marker"), []byte(hostiletree.Secret), 0o644); err != nil {
		t.Fatal(err)
	}
	ims := map[string]hostiletree.Image{}
	for _, repo := range []string{"good", "manifest", "typemap"} {
		ims[repo] = hostiletree.Export(t, root, repo, "v1")
		hostiletree.Export(t, root, repo, "v2")
	}
	fx := tree.Fixture(root)
	f := &fifoCLITree{
		root:           root,
		outside:        outside,
		manifest:       fx.ManifestPath("manifest", ims["manifest"].Manifest),
		typeMap:        fx.TypeMapPath("typemap", "v1"),
		typeMapNamed:   fx.ManifestPath("typemap", ims["typemap"].Manifest),
		manifestDigest: ims["manifest"].Manifest.String(),
	}
	hostiletree.PlantFIFO(t, f.manifest)
	hostiletree.PlantFIFO(t, f.typeMap)
	return f
}

// TestNotRegularCommands: on a tree where a FIFO stands at a manifest's
// index.json and at a type map, every command that reads them — verify,
// gc (dry run and not), list --long, inspect, delete, migrate --dry-run,
// verify --repair — finishes at once, names each FIFO's path as a problem
// and exits 1; gc and delete sweep nothing of the damaged repositories
// (the manifest the FIFO's tag named is still there); verify --repair
// removes both FIFOs, and nothing else where they were; nothing outside
// the tree is read or changed. Before, each command blocked in open(2)
// forever, most of them deaf to SIGTERM, some holding the tree lock.
func TestNotRegularCommands(t *testing.T) {
	f := buildFIFOCLITree(t)
	dir := f.root.Dir()
	before := testtree.Snapshot(t, f.outside)
	events := hostiletree.Watch(t, f.outside)
	fifo := func(p string) string { return p + ": not a regular file (fifo)" }

	steps := []struct {
		args []string
		code int
		want []string // on stdout or stderr
	}{
		{[]string{"verify"}, 1, []string{fifo(f.manifest), fifo(f.typeMap)}},
		{[]string{"verify", "typemap"}, 1, []string{fifo(f.typeMap)}},
		{[]string{"gc", "--dry-run", "--grace", "0"}, 1, []string{fifo(f.manifest), fifo(f.typeMap)}},
		{[]string{"gc", "--grace", "0"}, 1, []string{fifo(f.manifest), fifo(f.typeMap)}},
		// The views mark what a pull cannot read, and leave naming the
		// file to verify (list and inspect on a damaged tree, issue 16).
		{[]string{"list", "--long", "manifest"}, 1, []string{"BROKEN: unreadable manifest"}},
		{[]string{"list", "--long", "typemap"}, 1, []string{fifo(f.typeMap)}},
		{[]string{"list", "--long"}, 1, []string{"BROKEN: unreadable manifest", fifo(f.typeMap)}},
		{[]string{"inspect", "manifest:v1"}, 1, []string{"BROKEN: unreadable manifest"}},
		{[]string{"inspect", "manifest@" + f.manifestDigest}, 1, []string{"BROKEN: unreadable manifest"}},
		{[]string{"inspect", "typemap:v1"}, 1, []string{"BROKEN: unreadable type map"}},
		{[]string{"migrate", "--dry-run"}, 1, []string{fifo(f.manifest), fifo(f.typeMap)}},
		{[]string{"delete", "manifest:v2"}, 1, []string{fifo(f.manifest)}},
		{[]string{"delete", "typemap:v2"}, 1, []string{fifo(f.typeMap)}},
	}
	for _, s := range steps {
		args := append([]string{"--root", dir}, s.args...)
		r := runBounded(t, args...)
		out := r.stdout + r.stderr
		t.Logf("image-serve %s: exit %d\n%s", strings.Join(s.args, " "), r.code, out)
		if r.code != s.code {
			t.Errorf("image-serve %s: exit %d, want %d\n%s", strings.Join(s.args, " "), r.code, s.code, out)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("image-serve %s does not say %q:\n%s", strings.Join(s.args, " "), w, out)
			}
		}
	}
	// Nothing of the damaged repositories was swept: the manifests, and
	// the manifest only the FIFO's tag names.
	for _, p := range []string{f.manifest, f.typeMap} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
			t.Errorf("%s: no FIFO any more before verify --repair (%v)", p, err)
		}
	}
	if fi, err := os.Lstat(f.typeMapNamed); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("%s, named by the tag whose type map is a FIFO, was swept (%v)", f.typeMapNamed, err)
	}

	r := runBounded(t, "--root", dir, "verify", "--repair")
	t.Logf("image-serve verify --repair: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	for _, p := range []string{f.manifest, f.typeMap} {
		if !strings.Contains(r.stdout, "removed "+fifo(p)+"\n") {
			t.Errorf("verify --repair does not say it removed %s:\n%s%s", p, r.stdout, r.stderr)
		}
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: still there after verify --repair (%v)", p, err)
		}
	}
	// typemap:v1 is gone with its type map; manifest:v1 names a manifest
	// whose bytes are gone: a problem left, the tag to export again.
	if r.code != 1 || !strings.Contains(r.stdout, "manifest:v1 needs a re-export") {
		t.Errorf("verify --repair: exit %d, want 1 and manifest:v1 to export again\n%s%s", r.code, r.stdout, r.stderr)
	}
	if left, err := tree.Fixture(f.root).NotRegularFiles(""); err != nil || len(left) > 0 {
		t.Errorf("left in the tree: %v %v", left, err)
	}
	if ev := events(); len(ev) > 0 {
		t.Errorf("accessed outside the root:\n%s", strings.Join(ev, "\n"))
	}
	if after := testtree.Snapshot(t, f.outside); after != before {
		t.Errorf("outside the root changed:\n%s", testtree.Diff(before, after))
	}
}
