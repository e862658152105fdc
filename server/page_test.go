package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/image-serve/image-serve/tree"
)

// TestEmptyRootPage: on a root that awaits its first export, / is the
// page of no tag, the very page Init (config, an export's first step)
// then writes there, and the server writes nothing.
func TestEmptyRootPage(t *testing.T) {
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(root, nil))
	t.Cleanup(srv.Close)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, srv.URL+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tree.PageContentType ||
			resp.Header.Get("Cache-Control") != cacheRevalidate {
			t.Errorf("%s /: %s, %q, %q", method, resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
		}
		if method == http.MethodGet && string(body) != string(tree.EmptyPage()) {
			t.Errorf("GET /: %s, want the empty page", body)
		}
	}
	if entries, err := os.ReadDir(root.Dir()); err != nil || len(entries) > 0 {
		t.Fatalf("the server wrote into the empty root: %v %v", entries, err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(tree.Fixture(root).PagePath())
	if err != nil || string(written) != string(tree.EmptyPage()) {
		t.Errorf("Init wrote %q, %v; want the empty page", written, err)
	}
}
