package catalog_test

import (
	"slices"
	"testing"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/tree"
)

// TestTagsPins: a pinned index is listed after the tags, as a Tag with
// Pinned set and no tag name, described as a tag naming it would be.
func TestTagsPins(t *testing.T) {
	root, size, p := fixtureParts(t)
	if err := tree.Fixture(root).PutPin("app", p.index); err != nil {
		t.Fatal(err)
	}
	tags, err := inView(root, func(v *tree.View) ([]catalog.Tag, error) { return catalog.Tags(v, []string{"app"}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 3 {
		t.Fatalf("%d entries, want two tags and a pin: %+v", len(tags), tags)
	}
	pin := tags[2]
	if !pin.Pinned || pin.Tag != "" || pin.Digest != p.index || pin.MediaType != ociIndex || pin.Size != size ||
		!slices.Equal(pin.Platforms, []string{"linux/amd64", "linux/arm64"}) || pin.Changed.IsZero() || pin.Status != "" {
		t.Errorf("pin: %+v, want the index pinned, both platforms and %d bytes", pin, size)
	}
	if tags[0].Pinned || tags[1].Pinned {
		t.Errorf("tags marked pinned: %+v", tags[:2])
	}
}
