package contract

// The embedded server is left out here until catalog confines its reads
// to the tree: it follows every symlink below the root today. Add it to
// the servers below once it does.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// secret is what the files outside the tree hold: no response may carry
// it.
const secret = "SECRET: a file outside the served tree"

// TestPlantedSymlinksApacheNginx plants symlinks from inside the tree to
// files and directories outside it, wherever a server reads: a blob (and
// a legacy .gz blob), a manifest's index.json and typed link, tag links
// and a type map, a tags/list, _catalog, a referrers index, and a whole
// repository directory holding a complete, valid repository. Every
// request through them is refused (a JSON 403 or 404) without a byte of
// what lies outside, while the tree's own links (nginx's tag links are
// symlinks) keep serving.
func TestPlantedSymlinksApacheNginx(t *testing.T) {
	root := testserver.TempRoot(t)
	f := Build(t, root)
	p := plant(t, root, f)
	servers := []struct{ name, base string }{
		{"Apache", testserver.Apache(t, root)},
		// nginx logs each refused link at crit level, as it should
		{"nginx", testserver.Nginx(t, root, testserver.WithExpectedNginxLog(regexp.MustCompile(`\(40: Too many levels of symbolic links\)`)))},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			c := newClient(s.base)
			for _, tc := range append(p.refused(), p.served(f)...) {
				t.Run(strings.ReplaceAll(tc.name, "/", "_"), func(t *testing.T) {
					r, err := c.do(tc.req)
					if err != nil {
						t.Fatalf("%s: %v", tc.req, err)
					}
					for _, want := range tc.want {
						if err := want(r); err != nil {
							t.Errorf("%s: %v", tc.req, err)
						}
					}
				})
			}
		})
	}
}

// planted is what plant put into the tree: the URL of each planted link.
type planted struct {
	blob, legacyBlob, manifest, tag, tagsList, catalog, referrers string
	// a repository whose directory is a link to a complete repository
	// outside the tree
	linkedBlob, linkedManifest, linkedTag, linkedTagsList, linkedReferrers string
}

// plant makes the files outside the tree and the links to them.
func plant(t *testing.T, root *tree.Root, f *Fixture) *planted {
	t.Helper()
	out := testserver.SharedTempDir(t, "image-serve-outside-")
	secretFile := filepath.Join(out, "secret")
	writeFile(t, secretFile, []byte(secret))
	link := func(target, name string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	d := func(s string) digest.Digest { return digest.FromString(s) }
	p := &planted{}
	m := "/v2/" + f.Repo + "/manifests/"

	// A blob and a legacy blob, named by the secret's own digest.
	fx := tree.Fixture(root)
	link(secretFile, fx.BlobPath(f.Repo, d(secret)))
	p.blob = f.blobPath(d(secret))
	link(secretFile, fx.LegacyBlobPath(f.Repo, d("legacy")))
	p.legacyBlob = f.blobPath(d("legacy"))

	// A manifest as the exporter writes it, its index.json and typed link
	// then replaced by links out.
	pm := manifest(t, MediaTypeOCIManifest, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest, "planted": true})
	if err := fx.PutManifest(f.Repo, pm.Digest, pm.MediaType, pm.Data); err != nil {
		t.Fatal(err)
	}
	typed, _ := fx.TypedManifestPath(f.Repo, pm.Digest, pm.MediaType)
	for _, file := range []string{fx.ManifestPath(f.Repo, pm.Digest), typed} {
		if err := os.Remove(file); err != nil {
			t.Fatal(err)
		}
		link(secretFile, file)
	}
	p.manifest = m + pm.Digest.String()

	// A tag whose links and type map lead to a digest directory outside.
	td := filepath.Join(out, d("tag").String())
	writeFile(t, filepath.Join(td, "index.json"), []byte(secret))
	writeFile(t, filepath.Join(td, "manifest.oci-manifest"), []byte(secret))
	writeFile(t, filepath.Join(out, "planted.type-map"), []byte("Content-Type: "+MediaTypeOCIManifest+"\nURI: "+td+"/index.json\n\n"))
	link(td, fx.TagLinkPath(f.Repo, "planted"))
	link(td, fx.FallbackLinkPath(f.Repo, "planted"))
	link(filepath.Join(out, "planted.type-map"), fx.TypeMapPath(f.Repo, "planted"))
	p.tag = m + "planted"

	// The listings and a referrers index of a repository of their own.
	const listed = "ns/planted"
	link(secretFile, fx.TagsListPath(listed))
	p.tagsList = "/v2/" + listed + "/tags/list"
	if err := os.Rename(fx.CatalogPath(), fx.CatalogPath()+".real"); err != nil {
		t.Fatal(err)
	}
	link(secretFile, fx.CatalogPath())
	p.catalog = "/v2/_catalog"
	link(secretFile, fx.ReferrersPath(f.Repo, d("subject")))
	p.referrers = f.referrersPath(d("subject").String())

	// A whole repository, written by the tree package into a tree outside, with
	// the secret as a blob and inside a manifest with a referrer.
	other, err := tree.Open(filepath.Join(out, "tree"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Init(); err != nil {
		t.Fatal(err)
	}
	const repo = "ns/secret"
	layer := putBlob(t, other, repo, blob([]byte(secret)))
	sm := manifest(t, MediaTypeOCIManifest, imageManifest(MediaTypeOCIManifest,
		descriptor(MediaTypeOCIConfig, putBlob(t, other, repo, blob([]byte("{}")))), descriptor(MediaTypeOCILayer, layer)))
	sm.Data = bytes.Replace(sm.Data, []byte("{"), []byte(`{"annotations":{"secret":"`+secret+`"},`), 1)
	sm.Digest = digest.FromBytes(sm.Data)
	ofx := tree.Fixture(other)
	if err := ofx.PutManifest(repo, sm.Digest, sm.MediaType, sm.Data); err != nil {
		t.Fatal(err)
	}
	putTag(t, other, repo, "latest", tree.TagVariant{Digest: sm.Digest, MediaType: sm.MediaType})
	referrer(t, other, repo, sm, map[string]any{"artifactType": ArtifactTypeSignature,
		"config": descriptor(MediaTypeOCIEmpty, blob([]byte("{}"))), "annotations": map[string]string{"secret": secret}})
	if err := ofx.UpdateReferrers(repo, sm.Digest); err != nil {
		t.Fatal(err)
	}
	const linked = "ns/linked"
	link(ofx.RepoDir(repo), fx.RepoDir(linked))
	p.linkedBlob = "/v2/" + linked + "/blobs/" + layer.Digest.String()
	p.linkedManifest = "/v2/" + linked + "/manifests/" + sm.Digest.String()
	p.linkedTag = "/v2/" + linked + "/manifests/latest"
	p.linkedTagsList = "/v2/" + linked + "/tags/list"
	p.linkedReferrers = "/v2/" + linked + "/referrers/" + sm.Digest.String()
	return p
}

// refused are the requests through planted links: each a JSON 403 or
// 404, and nothing of what the link leads to.
func (p *planted) refused() []testCase {
	var cs []testCase
	for _, r := range []struct {
		name, path string
		// besides a refusal: what the tree answers as if the link were
		// not there
		orAbsent func(method string) []check
	}{
		{"blob", p.blob, nil}, {"legacy blob", p.legacyBlob, nil}, {"manifest by digest", p.manifest, nil}, {"tag", p.tag, nil},
		{"tags/list", p.tagsList, nil}, {"_catalog", p.catalog, nil},
		// a digest without an index of its own has the empty one
		{"referrers", p.referrers, func(m string) []check { return servedReferrers(m, nil) }},
		{"linked repository blob", p.linkedBlob, nil}, {"linked repository manifest", p.linkedManifest, nil},
		{"linked repository tag", p.linkedTag, nil}, {"linked repository tags/list", p.linkedTagsList, nil},
		{"linked repository referrers", p.linkedReferrers, nil},
	} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			want := refusedJSON(m)
			if r.orAbsent != nil {
				want = either(want, r.orAbsent(m))
			}
			cs = append(cs, testCase{name: "planted " + r.name + " " + m, req: request{method: m, path: r.path},
				want: []check{want, noSecret}})
		}
	}
	return cs
}

// either passes when first does, or when every check of second does.
func either(first check, second []check) check {
	return func(r *response) error {
		err := first(r)
		if err == nil {
			return nil
		}
		for _, c := range second {
			if err2 := c(r); err2 != nil {
				return fmt.Errorf("%v; nor is it what the tree holds without the link: %v", err, err2)
			}
		}
		return nil
	}
}

// served are the tree's own content next to the planted links, nginx's
// tag links among it: still served.
func (p *planted) served(f *Fixture) []testCase {
	return []testCase{
		get("own tag single", f.manifestPath(TagSingle), nil, servedByTag(http.MethodGet, f.AMD64)...),
		get("own tag multi", f.manifestPath(TagMulti), nil, servedByTag(http.MethodGet, f.Index)...),
		get("own tag multi, image manifests only", f.manifestPath(TagMulti),
			accept(MediaTypeDockerManifest+";q=1, "+MediaTypeOCIManifest+";q=0.5"), servedByTag(http.MethodGet, f.AMD64)...),
		get("own manifest by digest", f.manifestPath(f.ARM64.Digest.String()), nil, servedByDigest(http.MethodGet, f.ARM64)...),
		get("own blob", f.blobPath(f.Layer.Digest), nil, servedBlob(http.MethodGet, f.Layer)...),
		get("own legacy blob", f.blobPath(f.LegacyLayer.Digest), nil, servedBlob(http.MethodGet, f.LegacyLayer)...),
		get("own tags/list", "/v2/"+f.Repo+"/tags/list", nil, status(http.StatusOK), tagsList(f.Repo, f.Tags)),
		get("own referrers", f.referrersPath(f.AMD64.Digest.String()), nil, servedReferrers(http.MethodGet, f.Referrers)...),
	}
}

// refusedJSON is a 403 or 404 with an OCI error body: the answer to a
// request through a planted link, whichever of the two the server gives.
func refusedJSON(method string) check {
	return func(r *response) error {
		if r.status != http.StatusForbidden && r.status != http.StatusNotFound {
			return fmt.Errorf("status %d, want 403 or 404", r.status)
		}
		for _, c := range jsonError(method, r.status, anyCode) {
			if err := c(r); err != nil {
				return err
			}
		}
		return nil
	}
}

// noSecret checks that nothing from outside the tree was sent.
func noSecret(r *response) error {
	if bytes.Contains(r.body, []byte("SECRET")) {
		return fmt.Errorf("served a file outside the tree: %.200q", r.body)
	}
	return nil
}
