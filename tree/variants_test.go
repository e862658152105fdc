package tree_test

import (
	"fmt"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// TestVariants: the one quality policy of a tag, which export, migrate
// and repair all write through. A multi-arch tag offers its index at qs 1
// and its first linux/amd64 image at hand at 0.001; nothing else gets a
// variant of its own.
func TestVariants(t *testing.T) {
	d := func(s string) digest.Digest { return digest.FromString(s) }
	index := tree.TagVariant{Digest: d("index"), MediaType: distribution.MediaTypeOCIIndex}
	list := tree.TagVariant{Digest: d("list"), MediaType: distribution.MediaTypeDockerList}
	image := tree.TagVariant{Digest: d("image"), MediaType: distribution.MediaTypeOCIManifest}
	amd := tree.IndexChild{Digest: d("amd"), MediaType: distribution.MediaTypeOCIManifest, OS: "linux", Architecture: "amd64"}
	arm := tree.IndexChild{Digest: d("arm"), MediaType: distribution.MediaTypeOCIManifest, OS: "linux", Architecture: "arm64"}
	winAmd := tree.IndexChild{Digest: d("win"), MediaType: distribution.MediaTypeOCIManifest, OS: "windows", Architecture: "amd64"}
	nested := tree.IndexChild{Digest: d("nested"), MediaType: distribution.MediaTypeOCIIndex, OS: "linux", Architecture: "amd64"}
	absent := tree.IndexChild{Digest: d("absent"), OS: "linux", Architecture: "amd64"}
	docker := tree.IndexChild{Digest: d("docker"), MediaType: distribution.MediaTypeDockerManifest, OS: "linux", Architecture: "amd64"}
	top := func(v tree.TagVariant) tree.TagVariant { v.QS = 1; return v }
	fallback := func(c tree.IndexChild) tree.TagVariant {
		return tree.TagVariant{Digest: c.Digest, MediaType: c.MediaType, QS: 0.001}
	}
	for _, tc := range []struct {
		name     string
		top      tree.TagVariant
		children []tree.IndexChild
		want     []tree.TagVariant
	}{
		{"an image alone, no qs", image, nil, []tree.TagVariant{image}},
		{"an index with its amd64 image", index, []tree.IndexChild{arm, amd}, []tree.TagVariant{top(index), fallback(amd)}},
		{"a Docker list likewise", list, []tree.IndexChild{docker}, []tree.TagVariant{top(list), fallback(docker)}},
		{"no linux/amd64 child", index, []tree.IndexChild{arm, winAmd}, []tree.TagVariant{top(index)}},
		{"an amd64 child that is an index is no image", index, []tree.IndexChild{nested}, []tree.TagVariant{top(index)}},
		{"an amd64 child not at hand", index, []tree.IndexChild{absent, amd}, []tree.TagVariant{top(index), fallback(amd)}},
		{"the first amd64 image", index, []tree.IndexChild{docker, amd}, []tree.TagVariant{top(index), fallback(docker)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tree.Variants(tc.top, tc.children); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("Variants = %v, want %v", got, tc.want)
			}
		})
	}
}
