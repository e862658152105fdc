package tree_test

import (
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

const (
	sha256D = digest.Digest("sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
	sha512D = digest.Digest("sha512:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
)

// TestMatchRoute: the table dispatches as the Apache template's rewrite
// rules do, in their order, and captures the names the handlers serve.
func TestMatchRoute(t *testing.T) {
	d := sha256D.String()
	tests := []struct {
		path, route string
		want        tree.Match
	}{
		{"/v2/", tree.RoutePing, tree.Match{}},
		{"/v2", tree.RoutePing, tree.Match{}},
		{"/v2/index.json", tree.RouteOther, tree.Match{}},
		{"/", tree.RouteCatalogPage, tree.Match{}},
		{"/index.html", tree.RouteOther, tree.Match{}},
		{"/_errors/name-unknown.json", tree.RouteOther, tree.Match{}},
		{"/v2/app/manifests/" + d, tree.RouteManifestByDigest, tree.Match{Repo: "app", Digest: sha256D}},
		{"/v2/ns/app/manifests/" + sha512D.String(), tree.RouteManifestByDigest, tree.Match{Repo: "ns/app", Digest: sha512D}},
		{"/v2/a/manifests/manifests/" + d, tree.RouteManifestByDigest, tree.Match{Repo: "a/manifests", Digest: sha256D}},
		{"/v2/ns/app/manifests/v1.0", tree.RouteManifestByTag, tree.Match{Repo: "ns/app", Tag: "v1.0"}},
		{"/v2/ns/app/manifests/v1.type-map", tree.RouteTypeMaps, tree.Match{}},
		{"/v2/ns/app/manifests/.tags/v1", tree.RouteDotFiles, tree.Match{}},
		{"/v2/app/manifests/" + d + "/index.json", tree.RouteManifestFiles, tree.Match{}},
		{"/v2/app/manifests/" + d + "/manifest.oci-manifest", tree.RouteManifests, tree.Match{}},
		{"/v2/NS/app/manifests/v1", tree.RouteManifests, tree.Match{}},
		{"/v2/app/manifests/sha256:abc", tree.RouteManifests, tree.Match{}},
		{"/v2/app/manifests/", tree.RouteManifests, tree.Match{}},
		{"/v2/a/manifests/b/blobs/" + d, tree.RouteManifests, tree.Match{}},
		{"/v2/app/blobs/" + d, tree.RouteBlob, tree.Match{Repo: "app", Digest: sha256D}},
		{"/v2/NS/app/blobs/" + d, tree.RouteBlobUnknown, tree.Match{Digest: sha256D}},
		{"/v2/app/blobs/" + d + ".gz", tree.RouteBlobs, tree.Match{}},
		{"/v2/app/blobs/uploads/", tree.RouteBlobs, tree.Match{}},
		{"/v2/app/referrers/" + d, tree.RouteReferrers, tree.Match{Repo: "app", Digest: sha256D}},
		{"/v2/NS/referrers/" + d, tree.RouteReferrersUnknown, tree.Match{Digest: sha256D}},
		{"/v2/app/referrers/sha256:abc", tree.RouteReferrersInvalid, tree.Match{}},
		{"/v2/app/referrers/", tree.RouteReferrersInvalid, tree.Match{}},
		{"/v2/app/referrers/" + d + "/", tree.RouteReferrersInvalid, tree.Match{}},
		{"/v2/_catalog", tree.RouteCatalog, tree.Match{}},
		{"/v2/ns/app/tags/list", tree.RouteTagsList, tree.Match{Repo: "ns/app"}},
		{"/v2/NS/app/tags/list", tree.RouteOther, tree.Match{}},
		{"/v2/app/tags/", tree.RouteOther, tree.Match{}},
	}
	for _, tt := range tests {
		rt, m := tree.MatchRoute(tt.path)
		if rt.Name != tt.route || m != tt.want {
			t.Errorf("MatchRoute(%q) = %s %+v, want %s %+v", tt.path, rt.Name, m, tt.route, tt.want)
		}
	}
}

// TestNotFoundAt: the 404 body is the one of the location the path falls
// in, as the static servers choose their error document.
func TestNotFoundAt(t *testing.T) {
	d := sha256D.String()
	tests := []struct {
		path string
		want distribution.Error
	}{
		{"/v2/app/manifests/" + d + "/index.json", distribution.ErrManifestUnknown},
		{"/v2/app/manifests/v1.type-map", distribution.ErrManifestUnknown},
		{"/v2/app/manifests/.tags/v1", distribution.ErrManifestUnknown},
		{"/v2/app/blobs/." + d + "123456", distribution.ErrNameUnknown},
		{"/v2/NS/blobs/" + d, distribution.ErrBlobUnknown},
		{"/v2/app/referrers/." + d + "123456", distribution.ErrNameUnknown},
		{"/.image-serve/empty-index.json", distribution.ErrNameUnknown},
		{"/v2/.htaccess", distribution.ErrNameUnknown},
	}
	for _, tt := range tests {
		if got := tree.NotFoundAt(tt.path); got != tt.want {
			t.Errorf("NotFoundAt(%q) = %s, want %s", tt.path, got.Name, tt.want.Name)
		}
	}
}

// TestRouteFiles: the files each route resolves to are the ones the
// writers write, for every parameter the route has.
func TestRouteFiles(t *testing.T) {
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const repo, tag = "ns/app", "v1"
	m := tree.Match{Repo: repo, Tag: tag, Digest: sha256D}
	want := map[string][]string{
		tree.RoutePing:             {tree.Fixture(root).PingPath()},
		tree.RouteManifestByDigest: {tree.Fixture(root).ManifestPath(repo, sha256D)},
		tree.RouteManifestByTag:    {tree.Fixture(root).TypeMapPath(repo, tag)},
		tree.RouteBlob:             {tree.Fixture(root).BlobPath(repo, sha256D), tree.Fixture(root).LegacyBlobPath(repo, sha256D)},
		tree.RouteReferrers:        {tree.Fixture(root).ReferrersPath(repo, sha256D), tree.Fixture(root).EmptyReferrersPath()},
		tree.RouteCatalog:          {tree.Fixture(root).CatalogPath()},
		tree.RouteTagsList:         {tree.Fixture(root).TagsListPath(repo)},
		tree.RouteCatalogPage:      {tree.Fixture(root).PagePath()},
	}
	typed, _ := tree.Fixture(root).TypedManifestPath(repo, sha256D, distribution.MediaTypeOCIManifest)
	wantNginx := map[string][]string{
		tree.RouteManifestByDigest: {typed},
		tree.RouteManifestByTag:    {tree.Fixture(root).TagLinkPath(repo, tag), tree.Fixture(root).FallbackLinkPath(repo, tag)},
	}
	ext := tree.NginxTypes()[0].Ext
	names := tree.Names()
	file := func(tmpl, links string) string {
		return filepath.Join(root.Dir(), filepath.FromSlash(tree.Expand(tmpl, nil, func(p tree.Param) string {
			switch p {
			case tree.ParamRepo:
				return repo
			case tree.ParamTag:
				return tag
			case tree.ParamDigest:
				return sha256D.String()
			case tree.ParamExt:
				return ext
			case tree.ParamLinks:
				return links
			}
			t.Fatalf("file template %q has {%s}", tmpl, p)
			return ""
		})))
	}
	for _, rt := range tree.Routes() {
		var got, gotNginx []string
		for _, f := range append(rt.Files, rt.Fallbacks...) {
			got = append(got, file(f, ""))
		}
		for _, f := range rt.Nginx {
			for _, links := range []string{names.TagLinksDir, names.FallbackLinksDir} {
				if g := file(f, links); len(gotNginx) == 0 || gotNginx[len(gotNginx)-1] != g {
					gotNginx = append(gotNginx, g)
				}
			}
		}
		if strings.Join(got, "\n") != strings.Join(want[rt.Name], "\n") {
			t.Errorf("route %s resolves to %q, the writers write %q", rt.Name, got, want[rt.Name])
		}
		if strings.Join(gotNginx, "\n") != strings.Join(wantNginx[rt.Name], "\n") {
			t.Errorf("route %s has nginx read %q, the writers write %q", rt.Name, gotNginx, wantNginx[rt.Name])
		}
		if rt.Requires != "" && file(rt.Requires, "") != filepath.Dir(tree.Fixture(root).TypeMapPath(repo, tag)) {
			t.Errorf("route %s requires %q, not the repository's manifests directory", rt.Name, rt.Requires)
		}
		if len(rt.Files) > 0 && len(rt.Params()) > 0 {
			if u := rt.URL(m); !matches(rt, u) {
				t.Errorf("route %s: its own URL %q does not match it", rt.Name, u)
			}
		}
	}
}

func matches(rt tree.Route, path string) bool {
	_, ok := rt.Match(path)
	return ok
}

// TestRoutePatterns: what the static servers are given of each route
// compiles, and with uncaptured params matches what the route matches.
func TestRoutePatterns(t *testing.T) {
	paths := []string{"/v2/", "/v2/app/manifests/" + sha256D.String(), "/v2/a/b/manifests/v1", "/v2/app/blobs/" + sha512D.String(),
		"/v2/app/referrers/x", "/v2/_catalog", "/v2/a/tags/list", "/v2/a/manifests/" + sha256D.String() + "/index.json", "/x/.y"}
	for _, rt := range tree.Routes() {
		numbered := regexp.MustCompile(rt.Pattern(func(_ tree.Param, p string) string { return "(" + p + ")" }))
		if numbered.NumSubexp() != len(rt.Params()) {
			t.Errorf("route %s: %d groups, %d params: the params' patterns must not capture", rt.Name, numbered.NumSubexp(), len(rt.Params()))
		}
		plain := regexp.MustCompile(rt.Pattern(nil))
		for _, p := range paths {
			if got, want := plain.MatchString(p), matches(rt, p); got != want {
				t.Errorf("route %s, %q: its pattern matches %v, the route %v", rt.Name, p, got, want)
			}
		}
	}
}

// FuzzGrammar: the URL grammar the routes match is exactly the grammar
// distribution validates, so every server serves the names the writers
// accept and no other.
func FuzzGrammar(f *testing.F) {
	for _, s := range []string{"app", "ns/app", "a.b_c__d--e", "a___b", "-a", "NS/app", "ns//app", "../etc", ".tags",
		"v1", "_x", "x.y-z", sha256D.String(), sha512D.String(), "sha256:abc", strings.Repeat("a", 129)} {
		f.Add(s)
	}
	repo := regexp.MustCompile(`^(?:` + tree.RepoPattern + `)$`)
	tag := regexp.MustCompile(`^(?:` + tree.TagPattern + `)$`)
	dg := regexp.MustCompile(`^(?:` + tree.DigestPattern + `)$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := repo.MatchString(s), distribution.ValidateRepo(s) == nil; got != want && len(s) <= distribution.MaxRepoLength {
			t.Errorf("repository %q: pattern %v, distribution %v", s, got, want)
		}
		if got, want := tag.MatchString(s), distribution.ValidateTag(s) == nil; got != want {
			t.Errorf("tag %q: pattern %v, distribution %v", s, got, want)
		}
		if got, want := dg.MatchString(s), distribution.ValidateDigest(digest.Digest(s)) == nil; got != want {
			t.Errorf("digest %q: pattern %v, distribution %v", s, got, want)
		}
	})
}

// FuzzMatchRoute: dispatch never fails, and a route's captures are what
// its Path says: a repository, tag and digest of the grammar.
func FuzzMatchRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/app/manifests/v1", "/v2/a/blobs/" + sha256D.String(), "/v2/a/referrers/x", "/v2/a/tags/list"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt, m := tree.MatchRoute(p)
		if m.Repo != "" && distribution.ValidateRepo(m.Repo) != nil && len(m.Repo) <= distribution.MaxRepoLength {
			t.Errorf("%q: route %s captured repository %q", p, rt.Name, m.Repo)
		}
		if m.Tag != "" && distribution.ValidateTag(m.Tag) != nil {
			t.Errorf("%q: route %s captured tag %q", p, rt.Name, m.Tag)
		}
		if m.Digest != "" && distribution.ValidateDigest(m.Digest) != nil {
			t.Errorf("%q: route %s captured digest %q", p, rt.Name, m.Digest)
		}
		if len(rt.Files) > 0 && len(rt.Params()) > 0 && rt.URL(m) != p {
			t.Errorf("%q: route %s captured %+v, whose URL is %q", p, rt.Name, m, rt.URL(m))
		}
	})
}

// TestHeadersDirGlobs: at every repository depth the grammar allows, the
// directory of a manifest's headers matches exactly one glob, for either
// digest algorithm, and no other directory or file a server reads does.
// Apache reads .htaccess files only there.
func TestHeadersDirGlobs(t *testing.T) {
	globs := tree.HeadersDirGlobs()
	if len(globs) != distribution.MaxRepoDepth {
		t.Fatalf("%d globs, want one for each of %d depths", len(globs), distribution.MaxRepoDepth)
	}
	root, err := tree.Open("/srv/tree")
	if err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string {
		r, err := filepath.Rel(root.Dir(), p)
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	matches := func(p string) []string {
		var ms []string
		for _, g := range globs {
			if ok, err := path.Match(g, rel(p)); err != nil {
				t.Fatalf("glob %s: %v", g, err)
			} else if ok {
				ms = append(ms, g)
			}
		}
		return ms
	}
	for depth := 1; depth <= distribution.MaxRepoDepth; depth++ {
		// components of one letter reach the deepest name; "ns-1" checks a
		// longer one where there is room
		repo := strings.Repeat("a/", depth-1) + "a"
		if depth <= 8 {
			repo = strings.Repeat("ns-1/", depth-1) + "app.x"
		}
		if err := tree.ValidateRepo(repo); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		for _, d := range []digest.Digest{sha256D, sha512D} {
			if got := matches(tree.Fixture(root).ManifestDir(repo, d)); len(got) != 1 {
				t.Errorf("depth %d: %s matches %q, want one glob", depth, rel(tree.Fixture(root).ManifestDir(repo, d)), got)
			}
			for _, p := range []string{
				tree.Fixture(root).V2Dir(), tree.Fixture(root).RepoDir(repo), filepath.Dir(tree.Fixture(root).BlobPath(repo, d)), tree.Fixture(root).BlobPath(repo, d),
				tree.Fixture(root).LegacyBlobPath(repo, d), filepath.Dir(tree.Fixture(root).TagsListPath(repo)), filepath.Dir(tree.Fixture(root).TypeMapPath(repo, "v1")),
				tree.Fixture(root).TypeMapPath(repo, "v1"), filepath.Dir(tree.Fixture(root).TagLinkPath(repo, "v1")), filepath.Dir(tree.Fixture(root).FallbackLinkPath(repo, "v1")),
				filepath.Dir(tree.Fixture(root).ReferrersPath(repo, d)), tree.Fixture(root).ReferrersPath(repo, d),
				filepath.Join(tree.Fixture(root).ManifestDir(repo, d), "sub"),
			} {
				if got := matches(p); len(got) != 0 {
					t.Errorf("depth %d: %s matches %q, want none", depth, rel(p), got)
				}
			}
		}
	}
}
