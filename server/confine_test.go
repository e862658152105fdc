package server_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/server"
)

// The hostile tree these tests run on: internal/hostiletree builds it.
type hostileTree = hostiletree.Tree

const (
	secret      = hostiletree.Secret
	ociManifest = hostiletree.OCIManifest
)

func buildHostileTree(t *testing.T, relative bool) *hostileTree {
	return hostiletree.Build(t, relative)
}

func watch(t *testing.T, dir string) func() []string { return hostiletree.Watch(t, dir) }

// answer is what the server sent.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s %q", a.status, a.header.Get("Content-Type"), a.body)
}

// leaks reports whether a carries anything from outside the root.
func (a answer) leaks() bool {
	if bytes.Contains(a.body, []byte(secret)) {
		return true
	}
	for _, vs := range a.header {
		for _, v := range vs {
			if strings.Contains(v, secret) {
				return true
			}
		}
	}
	return false
}

func serve(h http.Handler, method, path string) answer {
	rec := httptest.NewRecorder()
	// The handler returns when it has closed what it opened: the events of
	// one request are all queued when ServeHTTP returns.
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, body}
}

// TestServerConfined: for every path a planted link makes lead outside
// the root, the embedded server answers exactly as it does once the link
// is gone — the answer for a missing file — and never with a byte from
// outside, nor opening anything there.
func TestServerConfined(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.Root
		requests := []struct {
			path string
		}{
			{"/v2/app/blobs/" + h.Marker.String()},
			{"/v2/app/manifests/" + h.M.String()},
			{"/v2/app/manifests/linked"},
			{"/v2/app/manifests/evil"},
			{"/v2/app/referrers/" + h.M.String()},
			{"/v2/headers/manifests/" + h.Images["headers"].String()},
			{"/v2/headers/manifests/v1"},
			{"/v2/tagslist/tags/list"},
			{"/v2/tagslist/tags/list?n=1"},
			{"/v2/evil/tags/list"},
			{"/v2/evil/manifests/latest"},
			{"/v2/evil/manifests/" + h.M.String()},
			{"/v2/evil/blobs/" + h.Blobs[0].String()},
			{"/v2/evil/referrers/" + h.M.String()},
			{"/v2/blobsdir/blobs/" + h.Blobs[0].String()},
			{"/v2/blobsdir/blobs/" + h.Blobs[1].String()},
			{"/v2/mdir/manifests/" + h.M.String()},
			{"/v2/mdir/manifests/latest"},
			{"/v2/nginx/manifests/v1"},
			{"/v2/_catalog"},
			{"/v2/"},
		}
		handler := server.New(r, nil)
		before := h.Snapshot(t)
		events := watch(t, h.Outside)
		got := map[string]answer{}
		touched := map[string][]string{}
		for _, rq := range requests {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				got[method+" "+rq.path] = serve(handler, method, rq.path)
				touched[method+" "+rq.path] = events()
			}
		}
		if after := h.Snapshot(t); after != before {
			t.Errorf("outside the root changed:\n%s", testtree.Diff(before, after))
		}
		// The same requests once every planted link is gone.
		for p := range h.Links {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		for _, rq := range requests {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				key := method + " " + rq.path
				t.Run(strings.ReplaceAll(key, "/", "_"), func(t *testing.T) {
					a, missing := got[key], serve(handler, method, rq.path)
					confined := !a.leaks() && len(touched[key]) == 0 && a.status == missing.status && bytes.Equal(a.body, missing.body) &&
						a.header.Get("Content-Type") == missing.header.Get("Content-Type") && a.header.Get("Content-Length") == missing.header.Get("Content-Length")
					if !confined {
						t.Errorf("through the link: %v\nonce it is gone: %v", a, missing)
						if len(touched[key]) > 0 {
							t.Errorf("accessed outside the root:\n%s", strings.Join(touched[key], "\n"))
						}
					}
				})
			}
		}
	})
}

// linkKinds runs test on a hostile tree of absolute links, and on one of
// relative links climbing out with "..".
func linkKinds(t *testing.T, test func(t *testing.T, h *hostileTree)) {
	for _, kind := range []struct {
		name     string
		relative bool
	}{{"absolute", false}, {"relative", true}} {
		t.Run(kind.name, func(t *testing.T) { test(t, buildHostileTree(t, kind.relative)) })
	}
}
