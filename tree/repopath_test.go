package tree

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRepoThroughLinkRefused: a repository path through a symlink inside
// the tree is no repository to write: watch's re-derivation writes
// nothing there, a tag update and an export are refused naming the link,
// and the link's target is untouched. Guards: watch followed an in-tree
// repository symlink and rewrote the target's tags/list with the link's
// name.
func TestRepoThroughLinkRefused(t *testing.T) {
	r := newTree(t)
	real := newTestImage("real", "v1", []byte("real"))
	publishAll(t, r, real)
	if err := os.Symlink("real", filepath.Join(r.v2Dir(), "alias")); err != nil {
		t.Fatal(err)
	}
	list := r.tagsListPath("real")
	before, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}

	d, err := r.deriveRepo("alias")
	if err != nil || d.Changed() {
		t.Errorf("DeriveRepo(alias) = %+v, %v; want nothing derived", d, err)
	}
	if err := r.putTag("alias", "v2", real.Variants); !errors.Is(err, ErrRepoThroughLink) {
		t.Errorf("PutTag(alias): %v, want ErrRepoThroughLink", err)
	}
	via := newTestImage("alias", "v3", []byte("through the link"))
	rep, err := r.Publish(context.Background(), []Image{via.Image}, PublishOptions{})
	if err != nil || !errors.Is(rep.Images[0].Err, ErrRepoThroughLink) {
		t.Errorf("Publish(alias): %v, %+v; want the image refused with ErrRepoThroughLink", err, rep)
	}
	if via.fetches.Load() != 0 {
		t.Errorf("the refused image's blob was fetched %d times", via.fetches.Load())
	}
	if after, _ := os.ReadFile(list); string(after) != string(before) {
		t.Errorf("real's tags/list changed through the link:\n%s\nwas\n%s", after, before)
	}
	if _, err := os.Lstat(r.typeMapPath("real", "v2")); !os.IsNotExist(err) {
		t.Errorf("a tag was written into real through the link (%v)", err)
	}
}
