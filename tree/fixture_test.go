package tree

import (
	"bytes"
	"io"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestFixturePaths: every path a Fixtures names is the one the tree
// itself writes, so a test that breaks or plants a file through it breaks
// or plants the file a server serves.
func TestFixturePaths(t *testing.T) {
	r := newTree(t)
	fx := Fixture(r)
	const repo, tag = "ns/app", "v1"
	d := digest.FromString("x")
	typed, typedOK := fx.TypedManifestPath(repo, d, gcOCIManifest)
	wantTyped, wantTypedOK := r.typedManifestPath(repo, d, gcOCIManifest)
	for _, tc := range []struct{ name, got, want string }{
		{"V2Dir", fx.V2Dir(), r.v2Dir()},
		{"PingPath", fx.PingPath(), r.pingPath()},
		{"CatalogPath", fx.CatalogPath(), r.catalogPath()},
		{"EmptyReferrersPath", fx.EmptyReferrersPath(), r.emptyReferrersPath()},
		{"RepoDir", fx.RepoDir(repo), r.repoDir(repo)},
		{"TagsListPath", fx.TagsListPath(repo), r.tagsListPath(repo)},
		{"TypeMapPath", fx.TypeMapPath(repo, tag), r.typeMapPath(repo, tag)},
		{"TagLinkPath", fx.TagLinkPath(repo, tag), r.tagLinkPath(repo, tag)},
		{"FallbackLinkPath", fx.FallbackLinkPath(repo, tag), r.fallbackLinkPath(repo, tag)},
		{"LegacyTagPath", fx.LegacyTagPath(repo, tag), r.legacyTagPath(repo, tag)},
		{"ManifestDir", fx.ManifestDir(repo, d), r.manifestDir(repo, d)},
		{"ManifestPath", fx.ManifestPath(repo, d), r.manifestPath(repo, d)},
		{"HeadersPath", fx.HeadersPath(repo, d), r.headersPath(repo, d)},
		{"TypedManifestPath", typed, wantTyped},
		{"BlobPath", fx.BlobPath(repo, d), r.blobPath(repo, d)},
		{"LegacyBlobPath", fx.LegacyBlobPath(repo, d), r.legacyBlobPath(repo, d)},
		{"BlobFilePath", fx.BlobFilePath(repo, StoredBlob{Digest: d, Legacy: true}), r.legacyBlobPath(repo, d)},
		{"ReferrersPath", fx.ReferrersPath(repo, d), r.referrersPath(repo, d)},
	} {
		if tc.got != tc.want || tc.got == "" {
			t.Errorf("%s: %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	if typedOK != wantTypedOK {
		t.Errorf("TypedManifestPath: %v, want %v", typedOK, wantTypedOK)
	}
}

// TestFixtureWrites: a tree planted through a Fixtures is one the tree's
// own readers see whole — the blob, the manifest, the tag, tags/list and
// _catalog — and a tag deleted through it is gone from all of them.
func TestFixtureWrites(t *testing.T) {
	r := newTree(t)
	fx := Fixture(r)
	const repo, tag = "ns/app", "v1"
	layer := []byte("layer")
	ld := digest.FromBytes(layer)
	if _, _, err := fx.PutBlob(repo, ld, int64(len(layer)), false, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layer)), nil
	}); err != nil {
		t.Fatal(err)
	}
	raw := []byte(`{"schemaVersion":2,"layers":[{"digest":"` + ld.String() + `"}]}`)
	md := digest.FromBytes(raw)
	if err := fx.PutManifest(repo, md, gcOCIManifest, raw); err != nil {
		t.Fatal(err)
	}
	if err := fx.PutTag(repo, tag, []TagVariant{{Digest: md, MediaType: gcOCIManifest}}); err != nil {
		t.Fatal(err)
	}

	if bs, err := r.blobs(repo); err != nil || len(bs) != 1 || bs[0].Digest != ld {
		t.Errorf("blobs %v (%v), want %s", bs, err, ld)
	}
	if got, err := r.readManifest(repo, md); err != nil || !bytes.Equal(got, raw) {
		t.Errorf("manifest %q (%v), want %q", got, err, raw)
	}
	if vs, err := r.TagVariants(repo, tag); err != nil || len(vs) != 1 || vs[0].Digest != md {
		t.Errorf("tag %s: %+v (%v), want %s", tag, vs, err, md)
	}
	if listed, ok, err := r.readTagsList(repo); err != nil || !ok || !slices.Equal(listed, []string{tag}) {
		t.Errorf("tags/list %v %v (%v), want [%s]", listed, ok, err, tag)
	}
	if cat, err := r.readCatalog(); err != nil || !slices.Equal(cat, []string{repo}) {
		t.Errorf("_catalog %v (%v), want [%s]", cat, err, repo)
	}

	if err := fx.DeleteTag(repo, tag); err != nil {
		t.Fatal(err)
	}
	if tags, err := r.tags(repo); err != nil || len(tags) != 0 {
		t.Errorf("tags after DeleteTag: %v (%v), want none", tags, err)
	}
	if cat, err := r.readCatalog(); err != nil || len(cat) != 0 {
		t.Errorf("_catalog after DeleteTag: %v (%v), want empty", cat, err)
	}
}
