package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/opencontainers/go-digest"
)

// TestSyncReferrersServed: after a sync, an image's SBOM (an OCI
// referrer, untagged at the source) is listed by the embedded server's
// referrers API as go-containerregistry's client reads it, and its cosign
// signature tag pulls; with --no-referrers, neither. (Real cosign and
// oras against Apache and nginx are issue 19's later step.)
func TestSyncReferrersServed(t *testing.T) {
	reg := testregistry.StartWithReferrers(t)
	img := reg.PushImage(t, "ns/app:v1", testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 2048, types.OCILayer)))
	raw, blobs := testregistry.ArtifactFor(t, img)
	sbom := reg.PushRaw(t, "ns/app@"+digest.FromBytes(raw).String(), distribution.MediaTypeOCIManifest, raw, blobs...)
	sigTag := "sha256-" + strings.TrimPrefix(img.Digest, "sha256:") + ".sig"
	sig := reg.PushImage(t, "ns/app:"+sigTag, testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 64, types.OCILayer)))
	listed := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(raw)), Digest: mustHash(t, sbom.Digest), ArtifactType: testregistry.ArtifactType}

	root := testserver.TempRoot(t)
	r := mustRun(t, "--root", root.Dir(), "sync", "--src-tls-verify=false", "docker://"+reg.Ref("ns/app:v1"))
	if !strings.Contains(r.stderr, "synced=1") || !strings.Contains(r.stderr, "signature_tags=1") || !strings.Contains(r.stderr, "referrers=1") {
		t.Errorf("stderr does not say 1 synced, 1 signature tag and 1 referrer:\n%s", r.stderr)
	}
	base := testserver.Embedded(t, root)
	wantReferrers(t, base, img.Digest, "", listed)
	wantReferrers(t, base, img.Digest, testregistry.ArtifactType, listed)
	if d := pulledImage(t, base, "ns/app:"+sigTag); d != sig.Digest {
		t.Errorf("ns/app:%s pulls %s, want %s", sigTag, d, sig.Digest)
	}
	mustRun(t, "--root", root.Dir(), "verify")

	bare := testserver.TempRoot(t)
	mustRun(t, "--root", bare.Dir(), "sync", "--no-referrers", "--src-tls-verify=false", "docker://"+reg.Ref("ns/app:v1"))
	base = testserver.Embedded(t, bare)
	wantReferrers(t, base, img.Digest, "")
	ref, err := name.ParseReference(strings.TrimPrefix(base, "http://")+"/ns/app:"+sigTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(ref); err == nil {
		t.Errorf("--no-referrers: ns/app:%s is served", sigTag)
	}

	// The file's referrers: false, on the image, does the same.
	file := writeFile(t, "sync.yaml", fmt.Sprintf(`
%s:
  tls-verify: false
  images:
    ns/app:
      tags: [v1]
      referrers: false
`, reg.Host))
	fromFile := testserver.TempRoot(t)
	r = mustRun(t, "--root", fromFile.Dir(), "sync", "-f", file)
	if !strings.Contains(r.stderr, "synced=1") || !strings.Contains(r.stderr, "signature_tags=0") || !strings.Contains(r.stderr, "referrers=0") {
		t.Errorf("referrers: false: stderr does not say 1 synced and nothing attached:\n%s", r.stderr)
	}
	wantReferrers(t, testserver.Embedded(t, fromFile), img.Digest, "")
}

// pulledImage pulls ref from the server at base, its layers included,
// and returns its digest.
func pulledImage(t *testing.T, base, ref string) string {
	t.Helper()
	r, err := name.ParseReference(strings.TrimPrefix(base, "http://")+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatalf("pull %s: %v", r, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("pull %s: %v", r, err)
	}
	return d.String()
}
