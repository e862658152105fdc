package gc

import (
	"github.com/opencontainers/go-digest"
	"testing"
	"time"
)

// TestDeletePlanned: a tag ref with Planned is deleted only while the tag
// names the planned manifest. A tag an export moved after the plan — as
// the plan was handed to Delete, or between Delete's read of the tag and
// its removal (BeforeDeleteTag) — survives naming the new manifest, is
// reported in Skipped, and the new manifest is not pruned; a tag that did
// not move goes. Guards: sync --prune deleting a tag a concurrent export
// re-created with a new digest.
func TestDeletePlanned(t *testing.T) {
	tests := []struct {
		name       string
		moveBefore bool // the tag moves before Delete is called
		moveInside bool // it moves between Delete's read and the removal
		wantGone   bool
	}{
		{name: "unmoved", wantGone: true},
		{name: "moved after the plan", moveBefore: true},
		{name: "moved under the delete", moveInside: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t)
			planned := tr.image("app", "old", layer("old", 100))
			moved := tr.image("app", "new", layer("new", 100))
			tr.tag("app", "v1", planned)
			tr.tag("app", "keep", planned)
			if tt.moveBefore {
				tr.tag("app", "v1", moved)
			}
			if tt.moveInside {
				BeforeDeleteTag(t, func(r Ref) { tr.tag(r.Repo, r.Tag, moved) })
			}
			rep, err := Delete(tr.root, []Ref{{Repo: "app", Tag: "v1", Planned: planned.Digest}}, DeleteOptions{Grace: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			vs, verr := tr.fx.TagVariants("app", "v1")
			if tt.wantGone {
				if verr == nil || len(rep.Deleted) != 1 || len(rep.Skipped) != 0 {
					t.Errorf("v1: %v %v, report %+v: want it deleted", vs, verr, rep)
				}
			} else {
				if verr != nil || len(vs) != 1 || vs[0].Digest != moved.Digest {
					t.Errorf("v1: %v %v, want it naming %s", vs, verr, moved.Digest)
				}
				if len(rep.Deleted) != 0 || len(rep.Skipped) != 1 || rep.Skipped[0] != (SkippedTag{Tag: "app:v1", Planned: planned.Digest, Now: moved.Digest}) {
					t.Errorf("report %+v, want app:v1 skipped, moved from %s to %s", rep, planned.Digest, moved.Digest)
				}
				if !tr.hasManifest("app", moved) || !tr.hasBlob("app", desc{Digest: digest.FromBytes(layer("new", 100))}) {
					t.Error("the manifest the tag moved to was pruned")
				}
			}
			if !tr.hasManifest("app", planned) {
				t.Error("the planned manifest went, though tag keep names it")
			}
			tr.verify()
		})
	}
}
