package tree

import (
	"testing"
)

// FuzzFastMatch: every route's hand-written matcher answers what its
// regular expression answers, captures included.
func FuzzFastMatch(f *testing.F) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, s := range []string{"/v2/", "/v2", "/v2/app/manifests/v1", "/v2/a/b/manifests/" + d, "/v2/a/blobs/" + d, "/v2/a/blobs/" + d + ".gz",
		"/v2/a\n/blobs/x", "/v2//blobs/", "/v2/a/referrers/x", "/v2/a/tags/list", "/v2/_catalog", "/x/.y", "/v2/a/m.type-map", "/v2/a/index.json",
		"/v2/a--b/manifests/v1", "/v2/a__b/tags/list", "/v2/a___b/tags/list", "/v2/a/manifests/manifests/v1", "/v2/a.type-map\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		for i := range routes() {
			rt := &routes()[i]
			if rt.fast == nil {
				continue
			}
			got, gotOK := rt.fast(p)
			want, wantOK := rt.matchRegexp(p)
			if gotOK != wantOK || got != want {
				t.Errorf("route %s, %q: fast %v %+v, regexp %v %+v", rt.Name, p, gotOK, got, wantOK, want)
			}
		}
	})
}

// TestFastMatchers: every route has a matcher of its own.
func TestFastMatchers(t *testing.T) {
	for _, rt := range routes() {
		if rt.fast == nil {
			t.Errorf("route %s has no fast matcher: dispatch would run its regexp on every request", rt.Name)
		}
	}
}
