package tree

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestTagDigest: the top manifest a tag names; no tag is not an error;
// a type map that is not a regular file, or is not inside the root, is.
func TestTagDigest(t *testing.T) {
	r := newTree(t)
	if _, ok, err := r.TagDigest("app", "v1"); ok || err != nil {
		t.Fatalf("no tree: ok %v, err %v; want neither", ok, err)
	}
	ti := newTestImage("app", "v1", []byte("layer"))
	if _, err := r.Publish(context.Background(), []Image{ti.Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	d, ok, err := r.TagDigest("app", "v1")
	if err != nil || !ok || d != ti.Variants[0].Digest {
		t.Errorf("app:v1: %s %v %v, want %s", d, ok, err, ti.Variants[0].Digest)
	}
	if _, ok, err := r.TagDigest("app", "v2"); ok || err != nil {
		t.Errorf("app:v2, no such tag: ok %v, err %v", ok, err)
	}
	if _, _, err := r.TagDigest("App", "v1"); err == nil {
		t.Errorf("an invalid repository name: no error")
	}
	if _, _, err := r.TagDigest("app", "../v1"); err == nil {
		t.Errorf("an invalid tag: no error")
	}

	fifo := r.typeMapPath("app", "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.TagDigest("app", "fifo"); ok || err == nil {
		t.Errorf("a FIFO for a type map: ok %v, err %v; want an error, not a hang", ok, err)
	}
	outside := filepath.Join(t.TempDir(), "outside.var")
	if err := os.WriteFile(outside, []byte("URI: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, r.typeMapPath("app", "link")); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.TagDigest("app", "link"); ok || err == nil {
		t.Errorf("a type map linking out of the root: ok %v, err %v; want an error", ok, err)
	}
}
