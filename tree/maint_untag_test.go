package tree

import (
	"errors"
	"slices"
	"testing"
)

// TestDeleteTagIf: a conditional delete removes a tag that still names
// the manifest expected, and leaves one that names another, reporting
// both digests, with tags/list as it was. Guards: a sync --prune that
// deletes a tag a concurrent export re-created after its plan.
func TestDeleteTagIf(t *testing.T) {
	r := newTree(t)
	old := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	moved := gcPutManifest(t, r, "app", `{"schemaVersion":2,"annotations":{"a":"b"}}`)
	if err := r.putTag("app", "v1", []TagVariant{{Digest: old, MediaType: gcOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	if err := r.putTag("app", "v2", []TagVariant{{Digest: moved, MediaType: gcOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	err := r.Untag(func(u *Untagger) error {
		var me *TagMovedError
		if err := u.DeleteTagIf("app", "v2", old); !errors.As(err, &me) || !errors.Is(err, ErrTagMoved) || me.Want != old || me.Now != moved {
			t.Errorf("DeleteTagIf of a moved tag: %v, want a TagMovedError from %s to %s", err, old, moved)
		}
		if err := u.DeleteTagIf("app", "nosuch", old); !errors.Is(err, ErrTagUnknown) {
			t.Errorf("DeleteTagIf of no tag: %v, want ErrTagUnknown", err)
		}
		return u.DeleteTagIf("app", "v1", old)
	})
	if err != nil {
		t.Fatal(err)
	}
	if tags, err := r.tags("app"); err != nil || !slices.Equal(tags, []string{"v2"}) {
		t.Errorf("tags: %v %v, want v2 alone", tags, err)
	}
	if listed, _, err := r.readTagsList("app"); err != nil || !slices.Equal(listed, []string{"v2"}) {
		t.Errorf("tags/list: %v %v, want v2 alone", listed, err)
	}
	if vs, err := r.TagVariants("app", "v2"); err != nil || len(vs) != 1 || vs[0].Digest != moved {
		t.Errorf("v2: %v %v, want it still naming %s", vs, err, moved)
	}
}
