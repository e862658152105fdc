package contract

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// TestPlantedFIFOs plants FIFOs wherever a server reads a file — a blob
// and a legacy .gz blob, a manifest's index.json and nginx's typed link
// of it, a tag's type map and nginx's tag links, a tags/list, _catalog,
// a referrers index — and holds Apache, nginx and the embedded server to
// one answer for each: a JSON 404 (or 403), or the empty referrers index,
// sent at once; the tree's own content keeps being served next to them.
// open(2) of a FIFO waits for a writer: before, the embedded server's
// request blocked forever.
func TestPlantedFIFOs(t *testing.T) {
	root := testserver.TempRoot(t)
	f := Build(t, root)
	servers := []struct{ name, base string }{
		{"Apache", testserver.Apache(t, root)},
		// nginx logs each at crit level, as it should
		{"nginx", testserver.Nginx(t, root, testserver.WithExpectedNginxLog(regexp.MustCompile(`" is not a regular file, client`)))},
		{"embedded", testserver.Embedded(t, root)},
	}
	// Planted once the servers run: when the test ends, a request blocked
	// on a FIFO is let go before the servers are stopped (the embedded
	// server's Close waits for every request).
	p := plantFIFOs(t, root, f)
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			c := newClient(s.base)
			c.http.Timeout = 10 * time.Second // a blocked request fails, not the suite
			for _, tc := range append(p.refusedFIFOs(), p.served(f)...) {
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

// plantFIFOs plants a FIFO at every file of each request of planted.
func plantFIFOs(t *testing.T, root *tree.Root, f *Fixture) *planted {
	t.Helper()
	d := func(s string) digest.Digest { return digest.FromString(s) }
	p := &planted{}

	fx := tree.Fixture(root)
	hostiletree.PlantFIFO(t, fx.BlobPath(f.Repo, d("blob")))
	p.blob = f.blobPath(d("blob"))
	hostiletree.PlantFIFO(t, fx.LegacyBlobPath(f.Repo, d("legacy")))
	p.legacyBlob = f.blobPath(d("legacy"))

	// A manifest and a tag as the exporter writes them, then every file
	// a server reads for them replaced by a FIFO.
	// In a repository of their own, so that the fixture's tags/list stays.
	const repo = "ns/fifo-manifests"
	pm := manifest(t, MediaTypeOCIManifest, map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest, "planted": true})
	if err := fx.PutManifest(repo, pm.Digest, pm.MediaType, pm.Data); err != nil {
		t.Fatal(err)
	}
	putTag(t, root, repo, "fifo", tree.TagVariant{Digest: pm.Digest, MediaType: pm.MediaType})
	typed, _ := fx.TypedManifestPath(repo, pm.Digest, pm.MediaType)
	for _, file := range []string{fx.ManifestPath(repo, pm.Digest), typed, fx.TypeMapPath(repo, "fifo"),
		fx.TagLinkPath(repo, "fifo"), fx.FallbackLinkPath(repo, "fifo")} {
		hostiletree.PlantFIFO(t, file)
	}
	p.manifest = "/v2/" + repo + "/manifests/" + pm.Digest.String()
	p.tag = "/v2/" + repo + "/manifests/fifo"

	const listed = "ns/fifo"
	hostiletree.PlantFIFO(t, fx.TagsListPath(listed))
	p.tagsList = "/v2/" + listed + "/tags/list"
	if err := os.Rename(fx.CatalogPath(), filepath.Join(root.Dir(), "_catalog.real")); err != nil {
		t.Fatal(err)
	}
	hostiletree.PlantFIFO(t, fx.CatalogPath())
	p.catalog = "/v2/_catalog"
	hostiletree.PlantFIFO(t, fx.ReferrersPath(f.Repo, d("subject")))
	p.referrers = f.referrersPath(d("subject").String())
	return p
}

// refusedFIFOs are the requests for planted FIFOs: each a JSON 403 or
// 404, or for a referrers index the empty one.
func (p *planted) refusedFIFOs() []testCase {
	var cs []testCase
	for _, r := range []struct{ name, path string }{
		{"blob", p.blob}, {"legacy blob", p.legacyBlob}, {"manifest by digest", p.manifest}, {"tag", p.tag},
		{"tags/list", p.tagsList}, {"_catalog", p.catalog}, {"referrers", p.referrers},
	} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			want := refusedJSON(m)
			if r.name == "referrers" {
				// a digest without an index of its own has the empty one
				want = either(want, servedReferrers(m, nil))
			}
			cs = append(cs, testCase{name: "FIFO " + r.name + " " + m, req: request{method: m, path: r.path}, want: []check{want}})
		}
	}
	return cs
}
