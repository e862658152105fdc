package gc

import (
	"slices"
	"strings"
	"testing"
)

// TestVerifyPinsNamed: verify and verify --repair of named repositories
// check the pins of those alone — a repository with pins and no
// directory included — and leave the others' broken pins be.
// Guards: a named repository whose pins were never read because it has
// no directory.
func TestVerifyPinsNamed(t *testing.T) {
	p := newPinTree(t)
	p.rm(t, p.tr.fx.RepoDir("pinned"))
	p.rm(t, p.tr.fx.ManifestDir("app", p.solo.Digest))
	gone := "pinned@" + p.idx.Digest.String()
	rep, err := Verify(p.tr.root, []string{"pinned"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0].Message, "pins "+gone) {
		t.Errorf("verify pinned: %v, want the one pin of a repository gone", rep.Problems)
	}
	rr, err := Repair(p.tr.root, []string{"pinned"})
	if err != nil {
		t.Fatal(err)
	}
	// Its last pin gone, pinned is no repository at all, as verify says
	// of any name that is none.
	if len(rr.Unpinned) != 1 || rr.Unpinned[0].Ref != gone || !slices.Contains(rr.NeedExport, gone) ||
		len(rr.Verify.Problems) != 1 || !strings.Contains(rr.Verify.Problems[0].Message, "no such repository") {
		t.Errorf("repair pinned: unpinned %v, need export %v, problems %v; want %s alone unpinned, and no such repository", rr.Unpinned, rr.NeedExport, rr.Verify.Problems, gone)
	}
	if !p.tr.pinned("app", p.solo) {
		t.Error("the repair of pinned removed a pin of app")
	}
}
