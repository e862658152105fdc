package distribution

import (
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Manifests as gc and the referrers scan meet them: an image manifest of
// a config and five layers, an index of four platforms, and a signature
// (a referrer) naming a subject.
var (
	benchImage = []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","config":{"mediaType":"` + MediaTypeOCIConfig + `","digest":"` + dA.String() + `","size":1469},"layers":[` +
		strings.Repeat(`{"mediaType":"`+MediaTypeOCILayerGzip+`","digest":"`+dB.String()+`","size":3623807},`, 4) +
		`{"mediaType":"` + MediaTypeOCILayerGzip + `","digest":"` + dC.String() + `","size":32}],"annotations":{"org.opencontainers.image.created":"2026-01-01T00:00:00Z"}}`)
	benchIndex = []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}`, MediaTypeOCIIndex, strings.Join([]string{
		benchChild("amd64"), benchChild("arm64"), benchChild("ppc64le"), benchChild("s390x")}, ",")))
	benchReferrer = []byte(`{"schemaVersion":2,"mediaType":"` + MediaTypeOCIManifest + `","artifactType":"application/vnd.dev.cosign.artifact.sig.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + dA.String() + `","size":2},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"` + dB.String() + `","size":241,"annotations":{"dev.cosignproject.cosign/signature":"MEUCIQ"}}],"subject":{"mediaType":"` + MediaTypeOCIManifest + `","digest":"` + dC.String() + `","size":1234}}`)
)

func benchChild(arch string) string {
	return fmt.Sprintf(`{"mediaType":"%s","digest":"%s","size":1234,"platform":{"os":"linux","architecture":"%s"}}`, MediaTypeOCIManifest, dA, arch)
}

var benchManifests = []struct {
	name string
	raw  []byte
}{{"image", benchImage}, {"index", benchIndex}, {"referrer", benchReferrer}}

// BenchmarkParse times each reader on each kind of manifest: gc runs
// ParseReferences and the referrers scan runs ReferrerOf on every
// manifest of a tree.
func BenchmarkParse(b *testing.B) {
	for _, m := range benchManifests {
		b.Run("ParseManifest/"+m.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseManifest(m.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("ParseReferences/"+m.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseReferences(m.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("ReferrerOf/"+m.name, func(b *testing.B) {
			d := digest.FromBytes(m.raw)
			for b.Loop() {
				ReferrerOf(m.raw, d, "")
			}
		})
	}
}
