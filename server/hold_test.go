package server

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/tree"
)

// The server holds the tree's root directory open for one request at a
// time (tree.FS.Hold): these tests check that nothing of it outlives the
// request.

// TestNoDescriptorAfterRequest: once a request is answered, the server
// holds no descriptor of the root directory, nor of anything below it,
// whatever it served — an idle server keeps no file system busy (umount
// works). Guards: the root held for good to spare its open per stat.
func TestNoDescriptorAfterRequest(t *testing.T) {
	f := build(t)
	base := start(t, f)
	dir := f.root.Dir()
	for _, p := range []string{
		"/v2/",
		"/v2/_catalog",
		"/v2/" + f.repo + "/tags/list",
		"/v2/" + f.repo + "/tags/list?n=1",
		"/v2/" + f.repo + "/manifests/" + f.a.d.String(),
		"/v2/" + f.repo + "/manifests/multi",
		"/v2/" + f.repo + "/blobs/" + f.layer.d.String(),
		"/v2/" + f.repo + "/blobs/" + f.legacy.d.String(),
		"/v2/" + f.repo + "/referrers/" + f.a.d.String(),
		"/v2/" + f.repo + "/manifests/nothing",
		"/v2/nothing/blobs/" + f.layer.d.String(),
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			if got := do(t, base, method, p, hdr("Accept", acceptAll)); got.status >= 500 {
				t.Fatalf("%s %s: %d", method, p, got.status)
			}
			// The handler's last step, closing what it held, may follow the
			// client's receiving the body (sendfile writes it before the
			// handler returns): wait for it, not for any time.
			if fds := eventuallyNone(t, dir); len(fds) > 0 {
				t.Fatalf("%s %s: still open on the tree after the request: %v", method, p, fds)
			}
		}
	}
}

// eventuallyNone waits, up to a minute (the handler returns within
// microseconds of the last byte sent), for this process to hold no
// descriptor on dir or below it, and returns the ones still open then.
func eventuallyNone(t *testing.T, dir string) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		fds := hostiletree.OpenDescriptors(t, dir)
		if len(fds) == 0 || time.Now().After(deadline) {
			return fds
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRootReplaced: a root directory replaced under its name between two
// requests (mv of a restored tree into place) is what the next request
// is answered from, without a restart. Guards: the root held for good
// would serve the directory moved away.
func TestRootReplaced(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "root")
	root, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := buildIn(t, root)
	srv := httptest.NewServer(New(root, nil))
	t.Cleanup(srv.Close)

	// The same tree with one more tag, written beside it.
	next, err := tree.Open(filepath.Join(base, "next"))
	if err != nil {
		t.Fatal(err)
	}
	g := buildIn(t, next)
	g.putTag(t, g.repo, "fresh", g.b)

	tagPath := "/v2/" + f.repo + "/manifests/fresh"
	failed(http.StatusNotFound, distribution.ManifestUnknown).check(t, do(t, srv.URL, http.MethodGet, tagPath, nil))
	byTag(f.a, "").check(t, do(t, srv.URL, http.MethodGet, "/v2/"+f.repo+"/manifests/single", nil))

	if err := os.Rename(dir, filepath.Join(base, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next.Dir(), dir); err != nil {
		t.Fatal(err)
	}
	byTag(g.b, "").check(t, do(t, srv.URL, http.MethodGet, tagPath, nil))
	if fds := eventuallyNone(t, filepath.Join(base, "old")); len(fds) > 0 {
		t.Errorf("still open on the root moved away: %v", fds)
	}
}
