package server_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/server"
	"github.com/image-serve/image-serve/tree"
)

// fifoTree is a tree of one repository per kind of file a route serves,
// each exported with tag v1 (the referrers repository with a referrer of
// its manifest), and a FIFO planted at that kind of file in each; the
// planted paths are returned.
func fifoTree(t *testing.T) (*tree.Root, map[string]hostiletree.Image, []string) {
	t.Helper()
	root, err := tree.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	ims := map[string]hostiletree.Image{}
	for _, repo := range []string{"blob", "manifest", "headers", "typemap", "tagslist", "refs", "plain"} {
		ims[repo] = hostiletree.Export(t, root, repo, "v1")
	}
	hostiletree.Referrer(t, root, "refs", ims["refs"].Manifest)
	fx := tree.Fixture(root)
	planted := []string{
		fx.BlobPath("blob", ims["blob"].Blobs[1]),
		fx.ManifestPath("manifest", ims["manifest"].Manifest),
		fx.HeadersPath("headers", ims["headers"].Manifest),
		fx.TypeMapPath("typemap", "v1"),
		fx.TagsListPath("tagslist"),
		fx.ReferrersPath("refs", ims["refs"].Manifest),
		fx.CatalogPath(),
		fx.PingPath(),
	}
	for _, p := range planted {
		hostiletree.PlantFIFO(t, p)
	}
	return root, ims, planted
}

// fifoRequests are the requests a FIFO of fifoTree answers, in the order
// of its planted files.
func fifoRequests(ims map[string]hostiletree.Image) []string {
	return []string{
		"/v2/blob/blobs/" + ims["blob"].Blobs[1].String(),
		"/v2/manifest/manifests/" + ims["manifest"].Manifest.String(),
		"/v2/manifest/manifests/v1",
		"/v2/headers/manifests/" + ims["headers"].Manifest.String(),
		"/v2/headers/manifests/v1",
		"/v2/typemap/manifests/v1",
		"/v2/tagslist/tags/list",
		"/v2/tagslist/tags/list?n=1",
		"/v2/refs/referrers/" + ims["refs"].Manifest.String(),
		"/v2/refs/referrers/" + ims["refs"].Manifest.String() + "?artifactType=application/vnd.example.sbom",
		"/v2/_catalog",
		"/v2/_catalog?n=1",
		"/v2/",
	}
}

// startReleasing serves root on a loopback listener until the test ends,
// and then first lets go a handler blocked opening one of the FIFOs
// planted (the server's Close waits for every handler).
func startReleasing(t *testing.T, root *tree.Root, planted []string) *httptest.Server {
	srv := httptest.NewServer(server.New(root, nil))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		for _, p := range planted {
			hostiletree.ReleaseFIFO(p)
		}
	})
	return srv
}

// fifoClient gives up on a request after 10 s: a server blocked opening
// a FIFO fails the test instead of hanging it. One connection, kept
// alive, so that the process's descriptors count only the server's.
func fifoClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DisableCompression: true, MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1},
	}
}

func fetch(t *testing.T, c *http.Client, method, url string) (answer, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, body}, err
}

// TestServerNotRegular: every request whose file is a FIFO — a blob, a
// manifest's index.json, its .htaccess, a type map, tags/list, a
// referrers index, _catalog, v2/index.json — is answered at once, exactly
// as once the FIFO is gone: the answer for a missing file (404 with the
// location's error body where the file is what the URL names, as Apache
// and nginx answer). Before, each request blocked in open(2) forever,
// holding a thread and two descriptors.
func TestServerNotRegular(t *testing.T) {
	root, ims, planted := fifoTree(t)
	srv := startReleasing(t, root, planted)
	c := fifoClient()
	got := map[string]answer{}
	for _, p := range fifoRequests(ims) {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			a, err := fetch(t, c, method, srv.URL+p)
			if err != nil {
				t.Fatalf("%s %s: %v", method, p, err)
			}
			got[method+" "+p] = a
		}
	}
	for _, p := range planted {
		if fds := hostiletree.OpenDescriptors(t, p); len(fds) > 0 {
			t.Errorf("left open on the FIFO: %v", fds)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range fifoRequests(ims) {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			key := method + " " + p
			t.Run(strings.ReplaceAll(key, "/", "_"), func(t *testing.T) {
				a := got[key]
				missing, err := fetch(t, c, method, srv.URL+p)
				if err != nil {
					t.Fatal(err)
				}
				same := a.status == missing.status && bytes.Equal(a.body, missing.body) &&
					a.header.Get("Content-Type") == missing.header.Get("Content-Type") && a.header.Get("Content-Length") == missing.header.Get("Content-Length")
				if !same {
					t.Errorf("with the FIFO: %v\nonce it is gone: %v", a, missing)
				}
			})
		}
	}
	// Where the file is what the URL names, that is Apache's and nginx's
	// 404 with the location's error body.
	for p, code := range map[string]string{
		fifoRequests(ims)[0]: "BLOB_UNKNOWN", fifoRequests(ims)[1]: "MANIFEST_UNKNOWN", fifoRequests(ims)[2]: "MANIFEST_UNKNOWN",
		fifoRequests(ims)[5]: "MANIFEST_UNKNOWN", fifoRequests(ims)[6]: "NAME_UNKNOWN", fifoRequests(ims)[10]: "NAME_UNKNOWN",
	} {
		if a := got["GET "+p]; a.status != http.StatusNotFound || !bytes.Contains(a.body, []byte(`"`+code+`"`)) {
			t.Errorf("GET %s with a FIFO: %v, want 404 %s", p, a, code)
		}
	}
}

// TestServerNotRegularNoLeak: 200 requests for FIFOs later, the server
// has no more descriptors or threads than before and answers the other
// requests as before. Before, each left a thread blocked and two
// descriptors open, and after some 6,700 the server answered 500 to
// everything.
func TestServerNotRegularNoLeak(t *testing.T) {
	root, ims, planted := fifoTree(t)
	srv := startReleasing(t, root, planted)
	c := fifoClient()
	reqs := fifoRequests(ims)
	good := []string{
		"/v2/plain/blobs/" + ims["plain"].Blobs[1].String(),
		"/v2/plain/manifests/v1",
		"/v2/plain/tags/list",
	}
	round := func(paths []string, n int) {
		t.Helper()
		for i := range n {
			p := paths[i%len(paths)]
			if _, err := fetch(t, c, http.MethodGet, srv.URL+p); err != nil {
				t.Fatalf("request %d, GET %s: %v", i+1, p, err)
			}
		}
	}
	round(append(reqs, good...), len(reqs)+len(good)) // the connection is open, the caches warm
	fds, threads := count(t, "/proc/self/fd"), count(t, "/proc/self/task")
	round(reqs, 200)
	if n := count(t, "/proc/self/fd"); n > fds {
		t.Errorf("%d descriptors open after 200 requests for FIFOs, %d before", n, fds)
	}
	if n := count(t, "/proc/self/task"); n > threads+4 {
		t.Errorf("%d threads after 200 requests for FIFOs, %d before", n, threads)
	}
	for _, p := range good {
		a, err := fetch(t, c, http.MethodGet, srv.URL+p)
		if err != nil || a.status != http.StatusOK {
			t.Errorf("GET %s after 200 requests for FIFOs: %v %v", p, a, err)
		}
	}
}

// count is the number of entries of a /proc directory.
func count(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
