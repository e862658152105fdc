// Package testregistry runs go-containerregistry's in-memory registry on
// 127.0.0.1 and fills it with every kind of manifest image-serve must
// export. Tests only.
package testregistry

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Registry is a running in-memory registry that counts blob fetches.
type Registry struct {
	Host string // 127.0.0.1:PORT
	srv  *httptest.Server
	h    http.Handler

	mu        sync.Mutex
	blobGets  map[string]int // digest -> GET count
	requests  map[string]int // "METHOD KIND" -> count (see Requests)
	Intercept func(w http.ResponseWriter, r *http.Request) bool
}

// Start runs a registry over plain HTTP until the test ends. It has no
// referrers API (it answers 404, as the CNCF distribution registry does):
// go-containerregistry's client, pushing a manifest with a subject there,
// keeps the referrers tag schema's sha256-<hex> index tag instead.
func Start(t testing.TB) *Registry {
	return start(t, false)
}

// StartWithReferrers runs a registry over plain HTTP that serves the OCI
// referrers API, GET /v2/<name>/referrers/<digest>, until the test ends:
// a manifest pushed with a subject gets no sha256-<hex> tag there.
func StartWithReferrers(t testing.TB) *Registry {
	return start(t, false, registry.WithReferrersSupport(true))
}

// StartTLS runs a registry over HTTPS until the test ends, with
// httptest's self-signed certificate for 127.0.0.1: only clients that
// skip verification, or use Transport, trust it.
func StartTLS(t testing.TB) *Registry {
	return start(t, true)
}

func start(t testing.TB, tls bool, opts ...registry.Option) *Registry {
	r := &Registry{blobGets: map[string]int{}, requests: map[string]int{}}
	reg := registry.New(append([]registry.Option{registry.Logger(nopLogger())}, opts...)...)
	r.h = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests[req.Method+" "+requestKind(req.URL.Path)]++
		r.mu.Unlock()
		if r.Intercept != nil && r.Intercept(w, req) {
			return
		}
		if req.Method == http.MethodGet {
			if i := strings.Index(req.URL.Path, "/blobs/sha256:"); i >= 0 {
				r.mu.Lock()
				r.blobGets[req.URL.Path[i+len("/blobs/"):]]++
				r.mu.Unlock()
			}
		}
		reg.ServeHTTP(w, req)
	})
	r.srv = httptest.NewUnstartedServer(r.h)
	if tls {
		r.srv.StartTLS()
	} else {
		r.srv.Start()
	}
	t.Cleanup(r.srv.Close)
	_, r.Host, _ = strings.Cut(r.srv.URL, "://")
	return r
}

// Transport is an HTTP transport that trusts the registry's certificate
// (for a registry over plain HTTP, any transport).
func (r *Registry) Transport() http.RoundTripper { return r.srv.Client().Transport }

// CertificatePEM is the registry's certificate in PEM, for a registry
// StartTLS started: a CA a client may be told to trust (a certs.d
// directory's *.crt).
func (r *Registry) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
}

// ServeOn serves the registry's content over plain HTTP on l too, until
// the test ends, and returns l's host:port.
func (r *Registry) ServeOn(t testing.TB, l net.Listener) string {
	srv := httptest.NewUnstartedServer(r.h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return l.Addr().String()
}

// BlobGets reports how often blob d was fetched.
func (r *Registry) BlobGets(d string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.blobGets[d]
}

// Requests reports the requests the registry got since it started or
// since the last ResetRequests, by method and kind: "GET ping" (/v2/),
// "HEAD manifests", "GET manifests", "GET blobs", "GET tags" (tags/list),
// "GET referrers" (the OCI referrers API),
// "PUT …", "POST …" and so on for pushes, "… other" for anything else.
// Requests an Intercept answered count too.
func (r *Registry) Requests() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.requests))
	for k, v := range r.requests {
		out[k] = v
	}
	return out
}

// ResetRequests forgets the requests counted so far (not the blob GETs
// BlobGets reports): a test counts what one run does, after seeding.
func (r *Registry) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = map[string]int{}
}

// requestKind is the kind of a registry API path, for Requests.
func requestKind(path string) string {
	switch {
	case path == "/v2/" || path == "/v2":
		return "ping"
	case strings.Contains(path, "/manifests/"):
		return "manifests"
	case strings.Contains(path, "/blobs/"):
		return "blobs"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}

// Ref is "HOST/repo:tag".
func (r *Registry) Ref(repoTag string) string { return r.Host + "/" + repoTag }

// Pushed describes something pushed: its reference and manifest digest.
type Pushed struct {
	Ref       string
	Digest    string
	MediaType string
	Raw       []byte
	// Children of an index: platform ("linux/arm64") -> digest.
	Children map[string]string
}

// PushImage pushes img as repoTag.
func (r *Registry) PushImage(t testing.TB, repoTag string, img v1.Image) Pushed {
	t.Helper()
	ref := r.parse(t, repoTag)
	if err := remote.Write(ref, img, r.remote()...); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	return pushedOf(t, ref.String(), img)
}

// PushIndex pushes an index of mediaType (OCI index or Docker list) over
// imgs, one linux image per architecture. The index is written by hand:
// go-containerregistry adds "artifactType" to every descriptor, which
// skopeo 1.9 drops when it copies a list, changing its digest
// (serving-notes §1.9, "fixture trap").
func (r *Registry) PushIndex(t testing.TB, repoTag string, mediaType types.MediaType, imgs map[string]v1.Image) Pushed {
	t.Helper()
	ref := r.parse(t, repoTag)
	type entry struct {
		MediaType types.MediaType `json:"mediaType"`
		Size      int64           `json:"size"`
		Digest    v1.Hash         `json:"digest"`
		Platform  *v1.Platform    `json:"platform"`
	}
	var entries []entry
	children := map[string]string{}
	for _, arch := range []string{"amd64", "arm64", "ppc64le", "s390x"} {
		img, ok := imgs[arch]
		if !ok {
			continue
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref.Context().Digest(d.String()), img, r.remote()...); err != nil {
			t.Fatalf("push %s child %s: %v", repoTag, arch, err)
		}
		mt, _ := img.MediaType()
		size, _ := img.Size()
		entries = append(entries, entry{mt, size, d, &v1.Platform{OS: "linux", Architecture: arch}})
		children["linux/"+arch] = d.String()
	}
	raw, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": mediaType, "manifests": entries})
	if err != nil {
		t.Fatal(err)
	}
	p := r.PushRaw(t, repoTag, string(mediaType), raw)
	p.Children = children
	return p
}

// PushRaw pushes manifest bytes as they are, after the blobs they name.
func (r *Registry) PushRaw(t testing.TB, repoTag, mediaType string, raw []byte, blobs ...v1.Layer) Pushed {
	t.Helper()
	ref := r.parse(t, repoTag)
	for _, b := range blobs {
		if err := remote.WriteLayer(ref.Context(), b, r.remote()...); err != nil {
			t.Fatalf("push blob to %s: %v", repoTag, err)
		}
	}
	m := rawManifest{raw: raw, mt: types.MediaType(mediaType)}
	if err := remote.Put(ref, m, r.remote()...); err != nil {
		t.Fatalf("push %s: %v", repoTag, err)
	}
	d, _, _ := v1.SHA256(bytes.NewReader(raw))
	return Pushed{Ref: ref.String(), Digest: d.String(), MediaType: mediaType, Raw: raw}
}

// remote is how the helpers that push reach the registry.
func (r *Registry) remote() []remote.Option {
	return []remote.Option{remote.WithTransport(r.Transport())}
}

func (r *Registry) parse(t testing.TB, repoTag string) name.Reference {
	ref, err := name.ParseReference(r.Ref(repoTag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

type describable interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
}

func pushedOf(t testing.TB, ref string, x describable) Pushed {
	raw, err := x.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := x.MediaType()
	d, _ := x.Digest()
	return Pushed{Ref: ref, Digest: d.String(), MediaType: string(mt), Raw: raw}
}

// Layer is a random gzip layer of size bytes (before compression) with the
// given media type.
func Layer(t testing.TB, size int64, mt types.MediaType) v1.Layer {
	t.Helper()
	l, err := random.Layer(size, mt)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// DockerImage is a Docker schema2 linux/amd64 image of the given layers.
func DockerImage(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	return DockerImageFor(t, "amd64", layers...)
}

// DockerImageFor is a Docker schema2 image for linux/arch.
func DockerImageFor(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, arch)
}

func withPlatform(t testing.TB, img v1.Image, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// OCIImage is an OCI image of the given layers for platform os/arch.
func OCIImage(t testing.TB, arch string, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, arch)
}

// Schema1 is an unsigned Docker schema1 manifest of layer, with the layer
// to push alongside.
func Schema1(t testing.TB, repo, tag string) ([]byte, v1.Layer) {
	t.Helper()
	l := Layer(t, 512, types.DockerLayer)
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	raw := fmt.Appendf(nil, `{
   "schemaVersion": 1,
   "name": %q,
   "tag": %q,
   "architecture": "amd64",
   "fsLayers": [{"blobSum": %q}],
   "history": [{"v1Compatibility": "{\"id\":\"%064x\"}"}]
}`, repo, tag, d, 1)
	return raw, l
}

// ArtifactType is the artifactType of Artifact and ArtifactFor.
const ArtifactType = "application/vnd.example.sbom.v1"

// Artifact is an OCI artifact manifest: a custom config media type and
// one data layer, with the blobs to push alongside.
func Artifact(t testing.TB) ([]byte, []v1.Layer) {
	t.Helper()
	return artifact(t, nil)
}

// ArtifactFor is Artifact with subject as its OCI 1.1 subject: a referrer
// of subject, as an SBOM or a signature attached to an image is.
func ArtifactFor(t testing.TB, subject Pushed) ([]byte, []v1.Layer) {
	t.Helper()
	return artifact(t, map[string]any{"mediaType": subject.MediaType, "digest": subject.Digest, "size": len(subject.Raw)})
}

func artifact(t testing.TB, subject map[string]any) ([]byte, []v1.Layer) {
	t.Helper()
	cfg := static.NewLayer([]byte(`{"kind":"sbom"}`), "application/vnd.example.sbom.config.v1+json")
	data := static.NewLayer([]byte("artifact payload\n"), "application/vnd.example.sbom.v1+text")
	desc := func(l v1.Layer) map[string]any {
		d, _ := l.Digest()
		s, _ := l.Size()
		mt, _ := l.MediaType()
		return map[string]any{"mediaType": mt, "digest": d.String(), "size": s}
	}
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIManifestSchema1,
		"artifactType":  ArtifactType,
		"config":        desc(cfg),
		"layers":        []any{desc(data)},
	}
	if subject != nil {
		m["subject"] = subject
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return raw, []v1.Layer{cfg, data}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }
