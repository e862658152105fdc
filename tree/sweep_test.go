package tree

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSweepEmptyDirs: the empty directories a removal killed part-way
// leaves (a repository emptied, its parents) go; repositories, a
// repository's own empty directories and non-empty directories stay.
func TestSweepEmptyDirs(t *testing.T) {
	r := newTree(t)
	mkdirs := func(dirs ...string) {
		for _, d := range dirs {
			if err := os.MkdirAll(filepath.Join(r.v2Dir(), d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	mkdirs("gone/app", "ns/emptied", "keep/app/blobs", "keep/app/manifests", "other/file")
	if err := os.WriteFile(filepath.Join(r.v2Dir(), "other", "file", "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := r.sweepEmptyDirs()
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"gone/app", "gone", "ns/emptied", "ns"} {
		if _, err := os.Stat(filepath.Join(r.v2Dir(), gone)); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", gone, err)
		}
	}
	for _, kept := range []string{"keep/app/blobs", "keep/app/manifests", "other/file/x"} {
		if _, err := os.Stat(filepath.Join(r.v2Dir(), kept)); err != nil {
			t.Errorf("%s: %v", kept, err)
		}
	}
	if n != 4 {
		t.Errorf("removed %d directories, want 4", n)
	}
	if again, err := r.sweepEmptyDirs(); err != nil || again != 0 {
		t.Errorf("second sweep removed %d (%v), want 0", again, err)
	}
}

// TestSweepIncoming: downloads a killed writer left in the incoming
// directory go with the other temporary files; nothing else there does.
func TestSweepIncoming(t *testing.T) {
	r := newTree(t)
	if err := os.MkdirAll(r.incomingDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(r.incomingDir(), ".sha256:abc1234")
	other := filepath.Join(r.incomingDir(), "README")
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.sweepTemps()
	if err != nil || n != 1 {
		t.Fatalf("sweepTemps removed %d (%v), want 1", n, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale download still there (%v)", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file that is no temporary went: %v", err)
	}
}
