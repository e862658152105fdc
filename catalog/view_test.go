package catalog_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"testing"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
)

// fixture builds repo app with tag multi (an index of an amd64 and an arm64
// image) and tag one (the amd64 image alone).
func fixture(t *testing.T) (*tree.Root, int64) {
	root, size, _ := fixtureParts(t)
	return root, size
}

// parts are the digests of fixture's content.
type parts struct {
	index, amd, arm, amdConfig, layer digest.Digest
}

// fixtureParts is fixture, with the digests of what it wrote.
func fixtureParts(t *testing.T) (*tree.Root, int64, parts) {
	t.Helper()
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	fx := tree.Fixture(root)
	blob := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if _, _, err := fx.PutBlob("app", d, int64(len(b)), false, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	manifest := func(mt string, raw []byte) digest.Digest {
		d := digest.FromBytes(raw)
		if err := fx.PutManifest("app", d, mt, raw); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var size int64
	layer := []byte("a shared layer")
	ld := blob(layer)
	size += int64(len(layer))
	configs := map[string]digest.Digest{}
	image := func(arch string) (digest.Digest, int) {
		cfg := fmt.Appendf(nil, `{"architecture":%q,"os":"linux","history":[{},{}]}`, arch)
		cd := blob(cfg)
		configs[arch] = cd
		raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q,"size":%d},"layers":[{"digest":%q,"size":%d}]}`, ociManifest, cd, len(cfg), ld, len(layer))
		size += int64(len(cfg) + len(raw))
		return manifest(ociManifest, raw), len(raw)
	}
	amd, amdLen := image("amd64")
	arm, armLen := image("arm64")
	idx := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}},{"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64"}}]}`, ociIndex, amd, amdLen, arm, armLen)
	size += int64(len(idx))
	id := manifest(ociIndex, idx)
	if err := fx.PutTag("app", "multi", []tree.TagVariant{{Digest: id, MediaType: ociIndex, QS: 1}, {Digest: amd, MediaType: ociManifest, QS: 0.001}}); err != nil {
		t.Fatal(err)
	}
	if err := fx.PutTag("app", "one", []tree.TagVariant{{Digest: amd, MediaType: ociManifest}}); err != nil {
		t.Fatal(err)
	}
	return root, size, parts{index: id, amd: amd, arm: arm, amdConfig: configs["amd64"], layer: ld}
}

// TestTags: a multi-arch tag is described by its index (the variant of
// highest quality), its children's platforms, and every manifest and
// blob a pull of all of them fetches, each once; a single image by the
// platform its config names.
func TestTags(t *testing.T) {
	root, size := fixture(t)
	tags, err := inView(root, func(v *tree.View) ([]catalog.Tag, error) { return catalog.Tags(v, []string{"app"}) })
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 2 {
		t.Fatalf("%d tags, want 2: %+v", len(tags), tags)
	}
	multi, one := tags[0], tags[1]
	if multi.Tag != "multi" || multi.MediaType != ociIndex || !slices.Equal(multi.Platforms, []string{"linux/amd64", "linux/arm64"}) || multi.Size != size {
		t.Errorf("multi: %+v, want the index, both platforms and %d bytes", multi, size)
	}
	if one.MediaType != ociManifest || !slices.Equal(one.Platforms, []string{"linux/amd64"}) || one.Changed.IsZero() {
		t.Errorf("one: %+v", one)
	}
}

// TestInspect: an index lists its children with their platforms; an
// image its config summary and layers.
func TestInspect(t *testing.T) {
	root, _ := fixture(t)
	idx, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "multi", "") })
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Children) != 2 || idx.Children[1].Platform != "linux/arm64" || idx.Config != nil {
		t.Errorf("index: %+v", idx)
	}
	img, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "one", "") })
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || img.Config.Architecture != "amd64" || img.Config.HistoryLength != 2 || len(img.Layers) != 1 {
		t.Errorf("image: %+v %+v", img, img.Config)
	}
	if _, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "nosuch", "") }); err == nil {
		t.Error("no error for a tag that is not there")
	}
}

// TestBrokenTags: a tag whose manifest, child, config or layer is gone, or
// whose type map or manifest cannot be read, is still described, with its
// Status; the other tag is not marked.
func TestBrokenTags(t *testing.T) {
	for _, tc := range []struct {
		name      string
		damage    func(fx *tree.Fixtures, p parts) error
		multi     string // Status of app:multi
		one       string // Status of app:one
		platforms int    // of app:multi
	}{
		{"nothing", func(*tree.Fixtures, parts) error { return nil }, "", "", 2},
		{"index gone", func(fx *tree.Fixtures, p parts) error { return os.Remove(fx.ManifestPath("app", p.index)) },
			catalog.StatusMissingManifest, "", 0},
		{"child gone", func(fx *tree.Fixtures, p parts) error { return os.Remove(fx.ManifestPath("app", p.arm)) },
			catalog.StatusMissingManifest, "", 2},
		{"config gone", func(fx *tree.Fixtures, p parts) error { return os.Remove(fx.BlobPath("app", p.amdConfig)) },
			catalog.StatusMissingBlob, catalog.StatusMissingBlob, 2},
		{"layer gone", func(fx *tree.Fixtures, p parts) error { return os.Remove(fx.BlobPath("app", p.layer)) },
			catalog.StatusMissingBlob, catalog.StatusMissingBlob, 2},
		{"index unparseable", func(fx *tree.Fixtures, p parts) error {
			return os.WriteFile(fx.ManifestPath("app", p.index), []byte("{"), 0o644)
		}, catalog.StatusUnreadableManifest, "", 0},
		{"type map empty", func(fx *tree.Fixtures, p parts) error { return os.Truncate(fx.TypeMapPath("app", "multi"), 0) },
			catalog.StatusUnreadableTypeMap, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, _, p := fixtureParts(t)
			if err := tc.damage(tree.Fixture(root), p); err != nil {
				t.Fatal(err)
			}
			tags, err := inView(root, func(v *tree.View) ([]catalog.Tag, error) { return catalog.Tags(v, []string{"app"}) })
			if err != nil {
				t.Fatal(err)
			}
			if len(tags) != 2 {
				t.Fatalf("%d tags, want both: %+v", len(tags), tags)
			}
			multi, one := tags[0], tags[1]
			if multi.Status != tc.multi || len(multi.Platforms) != tc.platforms {
				t.Errorf("multi: status %q, platforms %v; want %q and %d platforms", multi.Status, multi.Platforms, tc.multi, tc.platforms)
			}
			if one.Status != tc.one || one.Digest != p.amd {
				t.Errorf("one: status %q, digest %s; want %q and %s", one.Status, one.Digest, tc.one, p.amd)
			}
			img, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "multi", "") })
			if err != nil {
				t.Fatal(err)
			}
			if img.Status != tc.multi {
				t.Errorf("inspect multi: status %q, want %q", img.Status, tc.multi)
			}
		})
	}
}

// TestInspectMarks: inspect marks what is missing where it is named: the
// child of an index, the config and the layer of an image.
func TestInspectMarks(t *testing.T) {
	root, _, p := fixtureParts(t)
	fx := tree.Fixture(root)
	for _, path := range []string{fx.ManifestPath("app", p.arm), fx.BlobPath("app", p.layer)} {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "multi", "") })
	if err != nil {
		t.Fatal(err)
	}
	// The amd64 child has all its blobs but the layer; the arm64 child is
	// gone, and said so first.
	if len(idx.Children) != 2 || idx.Children[0].Status != catalog.StatusMissingBlob || idx.Children[1].Status != catalog.StatusMissingManifest {
		t.Errorf("children: %+v", idx.Children)
	}
	if idx.Status != catalog.StatusMissingBlob {
		t.Errorf("index status %q, want the first child's problem", idx.Status)
	}
	img, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "one", "") })
	if err != nil {
		t.Fatal(err)
	}
	if img.Config == nil || img.Config.Status != "" || img.Config.Architecture != "amd64" || len(img.Layers) != 1 || img.Layers[0].Status != catalog.StatusMissingBlob {
		t.Errorf("image: config %+v, layers %+v", img.Config, img.Layers)
	}
	if _, err := inView(root, func(v *tree.View) (*catalog.Image, error) { return catalog.Inspect(v, "app", "", p.arm) }); !errors.Is(err, catalog.ErrUnknown) {
		t.Errorf("inspect of a manifest that is gone, by digest: %v, want ErrUnknown", err)
	}
}

// inView runs a view inside root.Inspect, as the CLI does.
func inView[T any](root *tree.Root, view func(*tree.View) (T, error)) (T, error) {
	var out T
	err := root.Inspect(func(v *tree.View) (err error) {
		out, err = view(v)
		return err
	})
	return out, err
}
