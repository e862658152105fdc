package tree

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestPublishPin: an image published with a pin and no tag is stored by
// digest, pinned, and in no tags/list or _catalog; View.TagRoots lists
// the pin; pinning again writes nothing; RemovePin removes it and its
// directory.
func TestPublishPin(t *testing.T) {
	r := newTree(t)
	im := newTestImage("ns/app", "", []byte("pinned layer"))
	d := im.Manifests[0].Digest
	im.Pin = d
	rep, err := r.Publish(context.Background(), []Image{im.Image}, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res := rep.Images[0]; res.Err != nil || res.Tagged.IsZero() {
		t.Fatalf("publish: %+v", res)
	}
	if !r.manifestComplete("ns/app", d) {
		t.Fatal("pinned manifest not stored")
	}
	raw, err := os.ReadFile(r.pinPath("ns/app", d))
	if err != nil || string(raw) != d.String()+"\n" {
		t.Fatalf("pin file = %q, %v", raw, err)
	}
	if want := filepath.Join(r.Dir(), ".image-serve", "pins", "ns+app", d.String()); r.pinPath("ns/app", d) != want {
		t.Fatalf("pinPath = %s, want %s", r.pinPath("ns/app", d), want)
	}
	if pins, err := r.pins("ns/app"); err != nil || !slices.Equal(pins, []digest.Digest{d}) {
		t.Fatalf("Pins = %v, %v", pins, err)
	}
	if repos, err := r.pinnedRepositories(); err != nil || !slices.Equal(repos, []string{"ns/app"}) {
		t.Fatalf("pinnedRepositories = %v, %v", repos, err)
	}
	if repos, err := r.repositories(); err != nil || len(repos) != 0 {
		t.Fatalf("Repositories (the catalog) = %v, %v: a pin is no tag", repos, err)
	}
	if tags, err := r.tags("ns/app"); err != nil || len(tags) != 0 {
		t.Fatalf("Tags = %v, %v", tags, err)
	}
	var roots []TagRoot
	if err := r.Inspect(func(v *View) (err error) { roots, err = v.TagRoots("ns/app"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(roots) != 1 || roots[0].Kind != TagPin || roots[0].Tag != "" || len(roots[0].Variants) != 1 || roots[0].Variants[0].Digest != d ||
		roots[0].Path != r.pinPath("ns/app", d) || roots[0].What() != "pin "+d.String() {
		t.Fatalf("TagRoots = %+v", roots)
	}

	// Pinning what is pinned writes nothing.
	before, _ := os.Stat(r.pinPath("ns/app", d))
	if err := r.putPin("ns/app", d); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(r.pinPath("ns/app", d)); !os.SameFile(before, after) {
		t.Fatal("pinning again rewrote the pin")
	}

	err = r.Maintain(MaintainOptions{}, func(m *Maint) error {
		ok, err := m.RemovePin("ns/app", d)
		if err != nil || !ok {
			t.Fatalf("RemovePin = %v, %v", ok, err)
		}
		ok, err = m.RemovePin("ns/app", d)
		if err != nil || ok {
			t.Fatalf("RemovePin again = %v, %v", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Dir(r.pinPath("ns/app", d))); !os.IsNotExist(err) {
		t.Fatalf("the repository's pins directory stays: %v", err)
	}
	if !r.manifestComplete("ns/app", d) {
		t.Fatal("RemovePin removed the manifest")
	}
}

// TestPinRefusesMissingManifest: a pin is written only after what it
// names; an image with neither a tag nor a pin is refused.
func TestPinRefusesMissingManifest(t *testing.T) {
	r := newTree(t)
	im := newTestImage("app", "", []byte("layer"))
	if err := r.putPin("app", im.Manifests[0].Digest); err == nil {
		t.Fatal("pinned a manifest the tree lacks")
	}
	rep, err := r.Publish(context.Background(), []Image{im.Image}, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Images[0].Err == nil {
		t.Fatal("published an image with neither tag nor pin")
	}
}

// TestPublishPinTogether: with AllOrNothing a pin is written with the
// batch's tags, and a pinned image with a tag gets both.
func TestPublishPinTogether(t *testing.T) {
	r := newTree(t)
	a := newTestImage("app", "v1", []byte("a"))
	b := newTestImage("app", "", []byte("b"))
	b.Pin = b.Manifests[0].Digest
	c := newTestImage("app", "v2", []byte("c"))
	c.Pin = c.Manifests[0].Digest
	rep, err := r.Publish(context.Background(), []Image{a.Image, b.Image, c.Image}, PublishOptions{AllOrNothing: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range rep.Images {
		if res.Err != nil {
			t.Fatalf("image %d: %v", i, res.Err)
		}
	}
	if pins, err := r.pins("app"); err != nil || len(pins) != 2 || !slices.Contains(pins, b.Pin) || !slices.Contains(pins, c.Pin) {
		t.Fatalf("Pins = %v, %v", pins, err)
	}
	if tags, err := r.tags("app"); err != nil || !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Fatalf("Tags = %v, %v", tags, err)
	}
}

// TestSweepPins: a crashed pin writer's temporary file goes, and so does
// a pins directory a crashed remover left empty; pins stay.
func TestSweepPins(t *testing.T) {
	r := newTree(t)
	im := newTestImage("app", "", []byte("layer"))
	im.Pin = im.Manifests[0].Digest
	if _, err := r.Publish(context.Background(), []Image{im.Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(r.pinPath("app", im.Pin))
	tmp := filepath.Join(dir, "."+im.Pin.String()+"12345")
	empty := filepath.Join(r.Dir(), ".image-serve", "pins", "gone")
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := r.Maintain(MaintainOptions{Sweep: true}, func(*Maint) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tmp, empty} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s stays: %v", p, err)
		}
	}
	if pins, err := r.pins("app"); err != nil || len(pins) != 1 {
		t.Fatalf("Pins = %v, %v", pins, err)
	}
}
