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

// TestDiskUsagePinOnly: a repository that holds only pinned manifests (no
// tag: in no _catalog) is a stored repository as any other, and du counts
// what its pins keep. Guards: du listing the repositories with tags only.
func TestDiskUsagePinOnly(t *testing.T) {
	root, size, p := fixtureParts(t)
	fx := tree.Fixture(root)
	if err := fx.PutPin("app", p.index); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"multi", "one"} {
		if err := fx.DeleteTag("app", tag); err != nil {
			t.Fatal(err)
		}
	}
	u, err := inView(root, func(v *tree.View) (*catalog.Usage, error) {
		repos, err := v.StoredRepositories()
		if err != nil {
			return nil, err
		}
		return catalog.DiskUsage(v, repos)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Repositories) != 1 || u.Repositories[0].Repository != "app" {
		t.Fatalf("repositories %+v, want app alone", u.Repositories)
	}
	// size is the manifests' and blobs' bytes; their headers count too.
	if ru := u.Repositories[0]; ru.Bytes < size || ru.Unique != ru.Bytes || u.Total < ru.Bytes {
		t.Errorf("app: %+v (total %d), want at least the %d bytes the pin keeps, all unique", ru, u.Total, size)
	}
}
