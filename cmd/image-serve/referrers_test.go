package main

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
)

// TestReferrers asks go-containerregistry's client for referrers (OCI
// 1.1) through Apache, nginx and the embedded server, each configured by
// `image-serve config` or serving the tree as is: an SBOM exported by its
// own tag with an image as its subject is listed with its artifactType,
// an image nothing refers to has an empty list (from the API, never the
// referrers-tag fallback a 404 would trigger), and after `delete
// REPO:sbom` the list is empty again everywhere, with no reload.
func TestReferrers(t *testing.T) {
	root := testserver.TempRoot(t)
	reg := testregistry.Start(t)
	img := reg.PushImage(t, "ns/app:v1", testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 2048, types.OCILayer)))
	plain := reg.PushImage(t, "ns/app:v2", testregistry.OCIImage(t, "arm64", testregistry.Layer(t, 2048, types.OCILayer)))
	raw, blobs := testregistry.ArtifactFor(t, img)
	sbom := reg.PushRaw(t, "ns/app:sbom", distribution.MediaTypeOCIManifest, raw, blobs...)
	for _, tag := range []string{"v1", "v2", "sbom"} {
		mustRun(t, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref("ns/app:"+tag))
	}
	servers := threeServers(t, root)
	listed := v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: int64(len(raw)), Digest: mustHash(t, sbom.Digest), ArtifactType: testregistry.ArtifactType}
	for srv, base := range servers {
		t.Run(srv, func(t *testing.T) {
			wantReferrers(t, base, img.Digest, "", listed)
			wantReferrers(t, base, img.Digest, testregistry.ArtifactType, listed)
			wantReferrers(t, base, img.Digest, "application/vnd.example.other")
			wantReferrers(t, base, plain.Digest, "")
		})
	}
	mustRun(t, "--root", root.Dir(), "verify")
	// inspect shows the referrer of its subject.
	if r := mustRun(t, "--root", root.Dir(), "inspect", "--json", "ns/app:v1"); !strings.Contains(r.stdout, `"digest": "`+sbom.Digest+`"`) || !strings.Contains(r.stdout, `"artifact_type": "`+testregistry.ArtifactType+`"`) {
		t.Errorf("inspect ns/app:v1 does not list the SBOM %s as a referrer:\n%s", sbom.Digest, r.stdout)
	}

	mustRun(t, "--root", root.Dir(), "-q", "delete", "ns/app:sbom")
	for srv, base := range servers {
		t.Run(srv+" after delete", func(t *testing.T) {
			wantReferrers(t, base, img.Digest, "")
		})
	}
	if r := mustRun(t, "--root", root.Dir(), "verify"); !strings.Contains(r.stdout, "no problems") {
		t.Errorf("verify after the delete: %q", r.stdout)
	}
}

// wantReferrers lists the referrers of subject in ns/app at base with
// go-containerregistry, filtered by artifactType unless it is "", and
// wants exactly want, from the referrers API.
func wantReferrers(t *testing.T, base, subject, artifactType string, want ...v1.Descriptor) {
	t.Helper()
	d, err := name.NewDigest(strings.TrimPrefix(base, "http://")+"/ns/app@"+subject, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	rt := &recordingTransport{}
	opts := []remote.Option{remote.WithTransport(rt)}
	if artifactType != "" {
		opts = append(opts, remote.WithFilter("artifactType", artifactType))
	}
	idx, err := remote.Referrers(d, opts...)
	if err != nil {
		t.Fatalf("ggcr referrers %s (artifactType %q): %v", d, artifactType, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("ggcr referrers %s: %v", d, err)
	}
	if fallback := rt.pathsContaining("/manifests/sha256-"); len(fallback) > 0 {
		t.Errorf("ggcr referrers %s fell back to the referrers tag (%v): the API did not answer 200 with an index", d, fallback)
	}
	if len(m.Manifests) != len(want) {
		t.Fatalf("ggcr referrers %s (artifactType %q): %+v, want %+v", d, artifactType, m.Manifests, want)
	}
	for i, got := range m.Manifests {
		w := want[i]
		if got.MediaType != w.MediaType || got.Digest != w.Digest || got.Size != w.Size || got.ArtifactType != w.ArtifactType {
			t.Errorf("ggcr referrers %s: entry %+v, want %+v", d, got, w)
		}
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// recordingTransport remembers the path of every request it sends.
type recordingTransport struct {
	mu    sync.Mutex
	paths []string
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.paths = append(rt.paths, r.URL.Path)
	rt.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (rt *recordingTransport) pathsContaining(s string) []string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	var out []string
	for _, p := range rt.paths {
		if strings.Contains(p, s) {
			out = append(out, p)
		}
	}
	return out
}
