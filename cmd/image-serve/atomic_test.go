package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// atomicBatch is an `export --atomic` of two tags, a:live (from src/a:v1
// to src/a:v2) and b:live (new, src/b:v2), run once to its end for the
// trace of its steps; start is the tree before it, for a restore.
type atomicBatch struct {
	reg              *testregistry.Registry
	root             *tree.Root
	old, newA, newB  testregistry.Pushed
	args             []string
	start, traceFile string
	trace            []string
}

func newAtomicBatch(t *testing.T) *atomicBatch {
	b := &atomicBatch{reg: testregistry.Start(t), root: testserver.TempRoot(t)}
	reg, root := b.reg, b.root
	b.old = reg.PushImage(t, "src/a:v1", testregistry.OCIImage(t, "amd64", layer(t)))
	b.newA = reg.PushImage(t, "src/a:v2", testregistry.OCIImage(t, "amd64", layer(t)))
	b.newB = reg.PushImage(t, "src/b:v2", testregistry.DockerImage(t, layer(t)))
	mustRun(t, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref("src/a:v1"), "a:live")
	list := filepath.Join(t.TempDir(), "images.txt")
	lines := "docker://" + reg.Ref("src/a:v2") + " a:live\ndocker://" + reg.Ref("src/b:v2") + " b:live\n"
	if err := os.WriteFile(list, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start = t.TempDir()
	copyTree(t, root.Dir(), b.start)
	b.args = []string{"--root", root.Dir(), "-q", "export", "--atomic", "--jobs", "1", "--src-tls-verify=false", "--from-file", list}
	b.traceFile = filepath.Join(t.TempDir(), "trace")
	if r := runCrash(t, b.args, b.traceFile, 0); r.code != 0 {
		t.Fatalf("clean run: exit %d\n%s", r.code, r.stderr)
	}
	b.trace = readSteps(t, root, b.traceFile)
	return b
}

// crashAt restores the tree and kills the batch at step k (1-based),
// returning the step's description for messages.
func (b *atomicBatch) crashAt(t *testing.T, k int) string {
	t.Helper()
	restoreTree(t, b.start, b.root.Dir())
	os.Remove(b.traceFile)
	at := fmt.Sprintf("crash at step %d of %d (%s)", k, len(b.trace), b.trace[k-1])
	if r := runCrash(t, b.args, b.traceFile, k); r.code != -int(syscall.SIGKILL) {
		t.Fatalf("%s: exit %d instead of dying there\n%s", at, r.code, r.stderr)
	}
	return at
}

// TestAtomicExportCrashThenGC kills `export --atomic` of two tags at every
// step, and then runs gc — not the export again — as an operator whose
// export died would: gc must find both tags where they were, or both
// where the export meant them to be, never one moved and one not. Before
// the journal of the move is written, neither has moved; once it is, gc
// finishes the move. Guards the all-or-nothing promise of --atomic, which
// a rerun of the export alone would hide (it moves both tags itself).
func TestAtomicExportCrashThenGC(t *testing.T) {
	b := newAtomicBatch(t)
	root, trace := b.root, b.trace
	journalled := firstStep(trace, `^rename \.image-serve/journal/#\.json$`) + 1 // 1-based
	if journalled == 0 || firstStep(trace, `^rename v2/a/manifests/live\.type-map$`) < journalled {
		t.Fatalf("the journal is not written before the first tag moves:\n%s", strings.Join(trace, "\n"))
	}
	before := map[string]digest.Digest{"a:live": digest.Digest(b.old.Digest), "b:live": ""}
	after := map[string]digest.Digest{"a:live": digest.Digest(b.newA.Digest), "b:live": digest.Digest(b.newB.Digest)}
	for k := 1; k <= len(trace); k++ {
		at := b.crashAt(t, k)
		// The dry run finishes nothing, but must report what gc, which
		// finishes the move first, then does.
		c := &crashCase{root: root}
		dry, real := c.gcReport(t, at, "--dry-run"), c.gcReport(t, at)
		if dry.DryRun = false; fmt.Sprint(dry) != fmt.Sprint(real) {
			t.Fatalf("%s: gc --dry-run said %+v, gc did %+v", at, dry, real)
		}
		want, state := before, "where they were"
		if k > journalled {
			want, state = after, "moved"
		}
		for ref, d := range want {
			if got := tagTarget(t, root.Dir(), ref); got != d {
				t.Errorf("%s, then gc: %s names %q, want %q: both tags %s", at, ref, got, d, state)
			}
		}
		if r := run(t, "--root", root.Dir(), "verify"); r.code != 0 {
			t.Fatalf("%s: verify after gc: exit %d\n%s%s", at, r.code, r.stdout, r.stderr)
		}
	}
}

// tagTarget is the digest REPO:TAG's type map offers first, "" when the
// tag does not exist.
func tagTarget(t *testing.T, rootDir, ref string) digest.Digest {
	t.Helper()
	root, err := tree.Open(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(ref, ":")
	vs, err := tree.Fixture(root).TagVariants(repo, tag)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatalf("%s: %v", ref, err)
	}
	return vs[0].Digest
}

// TestLaterWritersAfterCrashedBatch kills an --atomic batch at every step
// while its journal is in the tree, then lets a later writer change one
// of its tags before anything finishes the journal: "a tag written after
// a crashed batch" exports another image to a:live, "delete after a
// crashed batch" deletes b:live. The later writer's tag must stand
// through gc. Guards: the journal was finished forward unconditionally
// by the next maintainer — gc rolled a:live back to the batch's image,
// and delete's own prune put b:live back after reporting it deleted.
func TestLaterWritersAfterCrashedBatch(t *testing.T) {
	b := newAtomicBatch(t)
	root, trace, reg := b.root, b.trace, b.reg
	later := reg.PushImage(t, "src/a:v3", testregistry.OCIImage(t, "amd64", layer(t)))
	written := firstStep(trace, `^rename \.image-serve/journal/#\.json$`) + 1
	removed := firstStep(trace, `^unlink \.image-serve/journal/#\.json$`) + 1
	if written == 0 || removed <= written {
		t.Fatalf("no journal written and removed in the trace:\n%s", strings.Join(trace, "\n"))
	}
	scenarios := []struct {
		name  string
		later []string
		want  map[string]digest.Digest
	}{
		{"a tag written after a crashed batch",
			[]string{"export", "--src-tls-verify=false", "docker://" + reg.Ref("src/a:v3"), "a:live"},
			map[string]digest.Digest{"a:live": digest.Digest(later.Digest)}},
		{"delete after a crashed batch",
			[]string{"delete", "b:live"},
			map[string]digest.Digest{"a:live": digest.Digest(b.newA.Digest), "b:live": ""}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			// From the step after the journal's rename to its removal: a
			// crash there leaves the journal in the tree.
			for k := written + 1; k <= removed; k++ {
				at := b.crashAt(t, k)
				if r := run(t, append([]string{"--root", root.Dir(), "-q"}, sc.later...)...); r.code != 0 {
					t.Fatalf("%s, then %s: exit %d\n%s", at, sc.later[0], r.code, r.stderr)
				}
				mustRun(t, "--root", root.Dir(), "-q", "gc")
				for ref, d := range sc.want {
					if got := tagTarget(t, root.Dir(), ref); got != d {
						t.Errorf("%s, then %s and gc: %s names %q, want %q", at, sc.later[0], ref, got, d)
					}
				}
				if r := run(t, "--root", root.Dir(), "verify"); r.code != 0 {
					t.Fatalf("%s: verify after gc: exit %d\n%s%s", at, r.code, r.stdout, r.stderr)
				}
			}
		})
	}
}
