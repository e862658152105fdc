package exporter

import (
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// FuzzParseManifest: any bytes a source serves are either refused with an
// error or yield a manifest whose every reference is a digest the tree can
// store — never a panic, never a path-like digest.
func FuzzParseManifest(f *testing.F) {
	for _, seed := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":2},"layers":[]}`,
		`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("b", 64) + `","size":3,"platform":{"os":"linux","architecture":"amd64"}}]}`,
		`{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:` + strings.Repeat("c", 64) + `"}],"signatures":[{}]}`,
		`{"schemaVersion":3}`,
		`{"schemaVersion":2,"config":{"digest":"sha256:../../etc/passwd","size":1}}`,
		`not json`,
	} {
		f.Add([]byte(seed), "")
	}
	f.Fuzz(func(t *testing.T, raw []byte, labelled string) {
		m, err := parseManifest(raw, digest.FromBytes(raw), labelled)
		if err != nil {
			return
		}
		if !knownManifestTypes[m.MediaType] {
			t.Fatalf("accepted unknown media type %q", m.MediaType)
		}
		for _, d := range append(m.Blobs, m.Foreign...) {
			if distribution.ValidateDigest(d.Digest) != nil && !distribution.IsForeign(d.MediaType) {
				t.Fatalf("accepted blob digest %q", d.Digest)
			}
		}
		for _, c := range m.Children {
			if err := distribution.ValidateDigest(c.Digest); err != nil {
				t.Fatalf("accepted child digest %q: %v", c.Digest, err)
			}
		}
	})
}

// FuzzParseSource: any SOURCE argument parses or fails with an error, and
// a parsed one prints back as a reference of its transport.
func FuzzParseSource(f *testing.F) {
	for _, seed := range []string{
		"docker://registry.example:5000/ns/app:v1",
		"docker://localhost/app@sha256:" + strings.Repeat("a", 64),
		"oci:/tmp/layout:latest",
		"oci-archive:img.tar",
		"docker-archive:save.tar:app:v1",
		"docker-archive:save.tar:@1",
		"dockr://x", "docker:x", ":", "oci:",
		"containers-storage:localhost/app:hotfix", "containers-storage:[vfs@/r+/rr:o=1]app", "containers-storage:[",
		"docker-daemon:app:1", "docker-daemon:sha256:" + strings.Repeat("b", 64),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParseSource(s)
		if err != nil {
			return
		}
		if !strings.HasPrefix(src.String(), src.Transport) {
			t.Fatalf("ParseSource(%q) = %+v prints as %q", s, src, src.String())
		}
		if src.Path == "" {
			t.Fatalf("ParseSource(%q) accepted an empty path", s)
		}
	})
}
