package gc

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// TestVerifyWhileTagsAreDeleted guards "verify exits 1 when a tag is
// deleted while it runs" (issue 17): tag deletes hold the tree lock
// shared, as verify does, so they run during a verify; a tag going is
// never a problem nor an error of verify. Whatever the interleaving, the
// assertion holds; the deterministic instant is
// tree's TestLegacyConventionsTagDeletedMeanwhile.
func TestVerifyWhileTagsAreDeleted(t *testing.T) {
	tr := newTree(t)
	ma := buildMultiArch(tr)
	for i := 0; i < 20; i++ {
		tr.tag("app", fmt.Sprintf("t%d", i), ma.amd)
	}
	solo := tr.image("solo", "solo", layer("solo", 10))
	tr.tag("solo", "only", solo)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; !stop.Load(); n++ {
			tag := fmt.Sprintf("t%d", n%20)
			if _, err := Delete(tr.root, []Ref{{Repo: "app", Tag: tag}, {Repo: "solo", Tag: "only"}}, DeleteOptions{NoPrune: true}); err != nil {
				t.Error(err)
				return
			}
			tr.tag("app", tag, ma.amd)
			tr.tag("solo", "only", solo)
		}
	}()
	for i := 0; i < 40; i++ {
		rep, err := Verify(tr.root, nil)
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
		if len(rep.Problems) > 0 {
			t.Fatalf("verify %d: %+v", i, rep.Problems)
		}
	}
	stop.Store(true)
	<-done
}
