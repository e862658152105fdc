package tree_test

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// putManifest stores body as a manifest of repo.
func putManifest(t *testing.T, r *tree.Root, repo, mediaType, body string) digest.Digest {
	t.Helper()
	d := digest.FromString(body)
	if err := tree.Fixture(r).PutManifest(repo, d, mediaType, []byte(body)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestResolveTag: one call answers which manifest a tag serves a client,
// by Apache's negotiation (typemap.Negotiate), with the Vary the answer
// needs; 406 where Apache answers it; TripleO's symlink tags are not
// served.
func TestResolveTag(t *testing.T) {
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	const repo = "ns/app"
	// The image is the smaller file: ties must still go to the index, by qs.
	image := putManifest(t, root, repo, distribution.MediaTypeOCIManifest, `{"schemaVersion":2}`)
	index := putManifest(t, root, repo, distribution.MediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[]`+strings.Repeat(" ", 100)+`}`)
	if err := tree.Fixture(root).PutTag(repo, "multi", []tree.TagVariant{
		{Digest: index, MediaType: distribution.MediaTypeOCIIndex, QS: 1},
		{Digest: image, MediaType: distribution.MediaTypeOCIManifest, QS: 0.001},
	}); err != nil {
		t.Fatal(err)
	}
	if err := tree.Fixture(root).PutTag(repo, "single", []tree.TagVariant{{Digest: image, MediaType: distribution.MediaTypeOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tree.Fixture(root).ManifestDir(repo, image), tree.Fixture(root).LegacyTagPath(repo, "old")); err != nil {
		t.Fatal(err)
	}
	oci, docker := distribution.MediaTypeOCIManifest, distribution.MediaTypeDockerManifest
	tests := []struct {
		name, tag, accept string
		want              digest.Digest
		mediaType         string
		vary              bool
		err               error
	}{
		{"no Accept", "multi", "", index, distribution.MediaTypeOCIIndex, true, nil},
		{"*/*", "multi", "*/*", index, distribution.MediaTypeOCIIndex, true, nil},
		{"index and image", "multi", oci + ", " + distribution.MediaTypeOCIIndex, index, distribution.MediaTypeOCIIndex, true, nil},
		{"a lone image type", "multi", oci, image, oci, true, nil},
		{"an index type the tag lacks", "multi", distribution.MediaTypeDockerList, "", "", true, tree.ErrNotAcceptable},
		{"single, its type", "single", oci, image, oci, false, nil},
		{"single, another type", "single", docker, "", "", false, tree.ErrNotAcceptable},
		{"unknown tag", "v9", "", "", "", false, fs.ErrNotExist},
		{"legacy symlink tag", "old", "", "", "", false, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := tree.Fixture(root).ResolveTag(repo, tt.tag, tt.accept)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ResolveTag = %+v, %v; want %v", res, err, tt.err)
				}
				if res.Vary != tt.vary {
					t.Errorf("Vary %v on the error, want %v", res.Vary, tt.vary)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tree.Resolution{Digest: tt.want, MediaType: tt.mediaType, Vary: tt.vary}
			if res != want {
				t.Errorf("ResolveTag = %+v, want %+v", res, want)
			}
		})
	}
}
