// Package hot holds benchmarks of the hot functions that the product
// packages' own benchmarks do not isolate. It only benchmarks: go test
// without -bench runs nothing here.
package hot

import (
	"testing"

	"github.com/image-serve/image-serve/typemap"
)

// accept is the Accept header skopeo sends for manifests.
const accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"

// indexMap is the type map of a tag naming an index: the index at qs=1.0
// and its linux/amd64 image at qs=0.001, as exports write it.
var indexMap = typemap.Map{URI: "current-tripleo", Variants: []typemap.Variant{
	{URI: "sha256:7d0b5ef8e8b2a1f3b9b1c1f0d6d0b1c3e1f2a3b4c5d6e7f8091a2b3c4d5e6f70/index.json", ContentType: "application/vnd.oci.image.index.v1+json", QS: 1},
	{URI: "sha256:1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809/index.json", ContentType: "application/vnd.oci.image.manifest.v1+json", QS: 0.001},
}}

// BenchmarkTypemapParse parses a tag's type map, what a server does on a
// cache miss for a manifest by tag and what gc and verify do per tag.
func BenchmarkTypemapParse(b *testing.B) {
	raw := indexMap.Marshal()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := typemap.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTypemapNegotiate picks the variant for skopeo's Accept header:
// the tag resolution of every manifest-by-tag request.
func BenchmarkTypemapNegotiate(b *testing.B) {
	m, err := typemap.Parse(indexMap.Marshal())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := typemap.Negotiate(m.Variants, accept, nil); !ok {
			b.Fatal("not acceptable")
		}
	}
}
