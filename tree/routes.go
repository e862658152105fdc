package tree

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// The read API, declared once. Every server of a tree answers the same
// URLs from the same files: the embedded server dispatches on Routes, and
// the Apache and nginx templates take every path segment, suffix and
// pattern of their rules from it. The file templates are built from the
// layout names in layout.go, which the writers use too, so a name changes
// there or nowhere.

// The URL grammar, as regular expressions that Go's regexp and PCRE (Apache
// httpd, nginx) read alike. They admit no dot segment, so no URL they
// match names a dot file, a temporary file or a link directory. The
// grammars are distribution's (ValidateRepo, ValidateTag, ValidateDigest);
// the length limit of names and the components the layout reserves are
// checked by the handlers, not here.
const (
	RepoPattern   = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*`
	TagPattern    = `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`
	DigestPattern = `sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}`
)

// ErrorsURL is the URL prefix the static servers map to ErrorsDir to send
// the error bodies; they refuse it to clients.
const ErrorsURL = "/_errors/"

// A Param is a placeholder of a route's path or file template, written
// {name}.
type Param string

// The parameters of the templates.
const (
	ParamRepo   Param = "repo"   // a repository name of the grammar
	ParamTag    Param = "tag"    // a tag of the grammar
	ParamDigest Param = "digest" // a digest a tree stores
	// ParamAny is anything of at least one character: the repository part
	// of a location that catches names off the grammar too, as the static
	// servers' greedy ".+" does. It is never captured.
	ParamAny Param = "any"
	// ParamRest ends a path template that matches a prefix: anything may
	// follow. It is never captured.
	ParamRest Param = "rest"
	// ParamExt is the extension of an nginx typed link (NginxTypes).
	ParamExt Param = "ext"
	// ParamLinks is an nginx tag link directory (Layout).
	ParamLinks Param = "links"
)

// Pattern is p's grammar as a regular expression (empty for ParamRest).
// Alternatives are not grouped: a caller embedding it groups it.
func (p Param) Pattern() string {
	switch p {
	case ParamRepo:
		return RepoPattern
	case ParamTag:
		return TagPattern
	case ParamDigest:
		return DigestPattern
	case ParamAny:
		return ".+"
	case ParamExt:
		exts := make([]string, len(nginxTypes))
		for i, t := range nginxTypes {
			exts[i] = regexp.QuoteMeta(t.Ext)
		}
		return strings.Join(exts, "|")
	case ParamLinks:
		return regexp.QuoteMeta(tagLinksDir) + "|" + regexp.QuoteMeta(fallbackLinksDir)
	}
	return ""
}

// captured reports whether routes capture p: the values a handler needs.
func (p Param) captured() bool { return p == ParamRepo || p == ParamTag || p == ParamDigest }

// A CacheClass is what a route's answers say to caches: the value of their
// Cache-Control header.
type CacheClass string

// The cache classes.
const (
	// CacheValidators sends no Cache-Control: the file's own validators
	// decide (the ping).
	CacheValidators CacheClass = ""
	// CacheImmutable is content addressed: the bytes behind a digest never
	// change.
	CacheImmutable CacheClass = "public, max-age=31536000, immutable"
	// CacheRevalidate is what changes in place (tags, listings, referrers):
	// caches revalidate on every use.
	CacheRevalidate CacheClass = "no-cache"
	// CacheNever is an error: a 404 may be a 200 at the next publish.
	CacheNever CacheClass = "no-store"
)

// A Route is one entry of the read API: which URLs it takes, which files
// answer them, and what a client gets when none does.
type Route struct {
	// Name identifies the route (RouteBlob, …); the embedded server binds
	// its handlers by it.
	Name string
	// Path is the URL grammar: literal text and {param}s, matched whole
	// (a prefix when it ends in {rest}). Empty when Regexp is set.
	Path string
	// Regexp is the grammar of a route no path template expresses, as a
	// regular expression of both dialects (unanchored unless it says so).
	Regexp string
	// Files are the candidates, relative to the root with "/" separators
	// and the Path's params, that Apache and the embedded server serve:
	// the first that is a regular file answers.
	Files []string
	// Fallbacks answer when no File is a regular file: TripleO's legacy
	// blob names, the shared empty referrers index.
	Fallbacks []string
	// Requires is a directory that must exist for the route to answer,
	// from its Files or its Fallbacks: a repository that exists, for the
	// referrers indexes.
	Requires string
	// Nginx are the files nginx reads instead of Files, where the tree
	// carries links for it (serving-notes §5.3).
	Nginx []string
	// Cache is the cache class of the route's answers.
	Cache CacheClass
	// ContentType is the Content-Type of the route's answers when its
	// files carry none of their own (the catalog page); empty for the
	// routes whose handlers and stanzas set theirs.
	ContentType string
	// NotFound is the answer when no file answers; for a route without
	// Files it is the route's only answer. The zero Error means the 404
	// of the location the path falls in (NotFoundAt).
	NotFound distribution.Error

	re     *regexp.Regexp
	params []Param                    // captured params of Path, in order
	groups []int                      // their submatch indexes in re
	fast   func(string) (Match, bool) // re's answer without re, or nil (routes_fast.go)
}

// The routes' names.
const (
	RouteDotFiles         = "dot-files"
	RouteTypeMaps         = "type-maps"
	RouteManifestFiles    = "manifest-files"
	RoutePing             = "ping"
	RouteManifestByDigest = "manifest-by-digest"
	RouteManifestByTag    = "manifest-by-tag"
	RouteManifests        = "manifests"
	RouteBlob             = "blob"
	RouteBlobUnknown      = "blob-unknown"
	RouteBlobs            = "blobs"
	RouteReferrers        = "referrers"
	RouteReferrersUnknown = "referrers-unknown"
	RouteReferrersInvalid = "referrers-invalid"
	RouteCatalog          = "catalog"
	RouteTagsList         = "tags-list"
	RouteCatalogPage      = "catalog-page"
	RouteOther            = "other"
)

// Templates of the layout, in the routes' terms.
var (
	repoT     = v2Dir + "/{repo}/"
	digestDir = repoT + manifestsDir + "/{digest}/"
	// manifestFileT is manifest {digest}'s bytes, the file of
	// RouteManifestByDigest.
	manifestFileT = digestDir + manifestFile
)

// routes is the table, in the order the servers try it: the first route
// whose grammar matches a path answers it. The order is the Apache
// template's rewrite rules': what is never served first, then manifests
// (whose location's error body wins over the blobs'), blobs, referrers and
// listings, each family's own catch-alls after it.
// routes is the table, its path templates compiled the first time it is
// read: a command that serves or renders no route (a sync, a view)
// compiles none at start-up.
var routes = sync.OnceValue(func() []Route { return compile(routeTable()) })

func routeTable() []Route {
	return []Route{
		// Never addressed directly (serving-notes §3.13).
		{Name: RouteDotFiles, Regexp: `/\.`},
		{Name: RouteTypeMaps, Regexp: regexp.QuoteMeta(typeMapExt) + "$"},
		{Name: RouteManifestFiles, Path: "/" + v2Dir + "/{any}/" + manifestFile},

		// containers/image wants 200 or 401 here (serving-notes §1.2).
		{Name: RoutePing, Regexp: "^/" + v2Dir + "/?$", Files: []string{v2Dir + "/" + manifestFile},
			Cache: CacheValidators, NotFound: distribution.ErrNameUnknown},

		{Name: RouteManifestByDigest, Path: "/" + repoT + manifestsDir + "/{digest}",
			Files: []string{manifestFileT},
			Nginx: []string{digestDir + typedLinkPrefix + "{ext}"},
			Cache: CacheImmutable, NotFound: distribution.ErrManifestUnknown},
		// Exactly <tag>.type-map: never MultiViews (serving-notes §3.6).
		{Name: RouteManifestByTag, Path: "/" + repoT + manifestsDir + "/{tag}",
			Files: []string{repoT + manifestsDir + "/{tag}" + typeMapExt},
			Nginx: []string{repoT + manifestsDir + "/{links}/{tag}"},
			Cache: CacheRevalidate, NotFound: distribution.ErrManifestUnknown},
		{Name: RouteManifests, Path: "/" + v2Dir + "/{any}/" + manifestsDir + "/{rest}", NotFound: distribution.ErrManifestUnknown},

		// Raw bytes; TripleO's layers are named <digest>.gz (serving-notes §3.7).
		{Name: RouteBlob, Path: "/" + repoT + blobsDir + "/{digest}",
			Files:     []string{repoT + blobsDir + "/{digest}"},
			Fallbacks: []string{repoT + blobsDir + "/{digest}" + legacyBlobExt},
			Cache:     CacheImmutable, NotFound: distribution.ErrBlobUnknown},
		{Name: RouteBlobUnknown, Path: "/" + v2Dir + "/{any}/" + blobsDir + "/{digest}", NotFound: distribution.ErrBlobUnknown},
		{Name: RouteBlobs, Path: "/" + v2Dir + "/{any}/" + blobsDir + "/{rest}", NotFound: distribution.ErrNameUnknown},

		// An index for every digest of a repository that exists, never a 404
		// for some digests only (serving-notes §1.6).
		{Name: RouteReferrers, Path: "/" + repoT + referrersDir + "/{digest}",
			Files:     []string{repoT + referrersDir + "/{digest}"},
			Requires:  repoT + manifestsDir,
			Fallbacks: []string{stateDir + "/" + emptyIndexFile},
			Cache:     CacheRevalidate, NotFound: distribution.ErrNameUnknown},
		{Name: RouteReferrersUnknown, Path: "/" + v2Dir + "/{any}/" + referrersDir + "/{digest}", NotFound: distribution.ErrNameUnknown},
		{Name: RouteReferrersInvalid, Path: "/" + v2Dir + "/{any}/" + referrersDir + "/{rest}", NotFound: distribution.ErrDigestInvalid},

		{Name: RouteCatalog, Path: "/" + v2Dir + "/" + catalogFile, Files: []string{v2Dir + "/" + catalogFile},
			Cache: CacheRevalidate, NotFound: distribution.ErrNameUnknown},
		{Name: RouteTagsList, Path: "/" + repoT + tagsDir + "/" + tagsListFile, Files: []string{repoT + tagsDir + "/" + tagsListFile},
			Cache: CacheRevalidate, NotFound: distribution.ErrNameUnknown},

		// The catalog page, for people (catalogpage.go): written with
		// _catalog, so revalidated as it is.
		{Name: RouteCatalogPage, Path: "/", Files: []string{pageFile},
			Cache: CacheRevalidate, ContentType: PageContentType, NotFound: distribution.ErrNameUnknown},

		// Nothing else is addressable.
		{Name: RouteOther, Regexp: "^", NotFound: distribution.ErrNameUnknown},
	}
}

// PageContentType is the catalog page's Content-Type on every server.
const PageContentType = "text/html; charset=utf-8"

// Routes returns the route table in the order the servers try it.
func Routes() []Route { return slices.Clone(routes()) }

// LookupRoute returns the route named name, and false if there is none.
func LookupRoute(name string) (Route, bool) {
	for _, rt := range routes() {
		if rt.Name == name {
			return rt, true
		}
	}
	return Route{}, false
}

// A Match is what a route captured of a path.
type Match struct {
	Repo   string
	Tag    string
	Digest digest.Digest
}

// MatchRoute returns the first route of the table whose grammar matches
// path, which is already normalized (decoded, slashes merged, dot segments
// resolved), and what it captured. Some route always matches (RouteOther).
func MatchRoute(path string) (*Route, Match) {
	table := routes()
	for i := range table {
		if m, ok := table[i].Match(path); ok {
			return &table[i], m
		}
	}
	panic("tree: no route matches " + path) // RouteOther matches everything
}

// Match reports whether rt's grammar matches path, and what it captured.
func (rt *Route) Match(path string) (Match, bool) {
	if rt.fast != nil {
		return rt.fast(path)
	}
	return rt.matchRegexp(path)
}

// matchRegexp is Match by the route's regular expression.
func (rt *Route) matchRegexp(path string) (Match, bool) {
	sub := rt.re.FindStringSubmatchIndex(path)
	if sub == nil {
		return Match{}, false
	}
	var m Match
	for i, p := range rt.params {
		g := rt.groups[i]
		m.set(p, path[sub[2*g]:sub[2*g+1]])
	}
	return m, true
}

// set records v as p's value.
func (m *Match) set(p Param, v string) {
	switch p {
	case ParamRepo:
		m.Repo = v
	case ParamTag:
		m.Tag = v
	case ParamDigest:
		m.Digest = digest.Digest(v)
	}
}

// URL is the path of rt that captures m: its Path with m's values for
// its params. It validates nothing, and is empty for a route given by
// Regexp.
func (rt Route) URL(m Match) string { return m.Expand(rt.Path) }

// Expand is the template t — a route's Path, one of its Files or
// Fallbacks, its Requires — with m's values for {repo}, {tag} and
// {digest}, and nothing for any other param. A file template expands to
// a name of FS. It validates nothing.
func (m Match) Expand(t string) string {
	return Expand(t, nil, func(p Param) string {
		switch p {
		case ParamRepo:
			return m.Repo
		case ParamTag:
			return m.Tag
		case ParamDigest:
			return m.Digest.String()
		}
		return ""
	})
}

// NotFoundAt is the 404 body for path of the location it falls in, as
// the static servers pick their error document by location: that of the
// first route matching path that has a 404 of its own, else NAME_UNKNOWN.
func NotFoundAt(path string) distribution.Error {
	table := routes()
	for i := range table {
		rt := &table[i]
		if rt.NotFound.Name == "" || rt.NotFound.Status != distribution.ErrNameUnknown.Status {
			continue
		}
		if _, ok := rt.Match(path); ok {
			return rt.NotFound
		}
	}
	return distribution.ErrNameUnknown
}

// Params lists the params rt captures, in the order they appear in its
// path: a server numbering its captures ($1, $2) numbers them so.
func (rt Route) Params() []Param { return slices.Clone(rt.params) }

// Pattern is rt's grammar as an anchored regular expression of both
// dialects: each captured param (repo, tag, digest) rendered by capture,
// which gets the param and its grammar, {any} as ".+" and a trailing
// {rest} as a prefix match. A route given by Regexp is returned as it is.
func (rt Route) Pattern(capture func(p Param, pattern string) string) string {
	if rt.Path == "" {
		return rt.Regexp
	}
	return PathPattern(rt.Path, capture)
}

// PathPattern is the anchored regular expression of the path template t,
// as Route.Pattern renders it.
func PathPattern(t string, capture func(p Param, pattern string) string) string {
	prefix := strings.HasSuffix(t, "{"+string(ParamRest)+"}")
	s := "^" + Expand(t, regexp.QuoteMeta, func(p Param) string {
		switch {
		case p == ParamRest:
			return ""
		case p.captured() && capture != nil:
			return capture(p, p.Pattern())
		}
		return "(?:" + p.Pattern() + ")"
	})
	if !prefix {
		s += "$"
	}
	return s
}

// Expand renders template t: each run of literal text through lit (nil:
// as it is) and each {param} through param.
func Expand(t string, lit func(string) string, param func(Param) string) string {
	if lit == nil {
		lit = func(s string) string { return s }
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(t, '{')
		j := strings.IndexByte(t, '}')
		if i < 0 || j < i {
			b.WriteString(lit(t))
			return b.String()
		}
		b.WriteString(lit(t[:i]))
		b.WriteString(param(Param(t[i+1 : j])))
		t = t[j+1:]
	}
}

// compile parses the table's path templates once.
func compile(table []Route) []Route {
	for i := range table {
		rt := &table[i]
		if rt.Path != "" {
			Expand(rt.Path, nil, func(p Param) string {
				if p.captured() {
					rt.params = append(rt.params, p)
				}
				return ""
			})
		}
		rt.re = regexp.MustCompile(rt.Pattern(func(p Param, pattern string) string {
			return "(?P<" + string(p) + ">" + pattern + ")"
		}))
		for _, p := range rt.params {
			rt.groups = append(rt.groups, rt.re.SubexpIndex(string(p)))
		}
		if rt.Path == "" && rt.Regexp == "" {
			panic(fmt.Sprintf("tree: route %s has no grammar", rt.Name))
		}
		rt.fast = fastMatcher(*rt)
	}
	return table
}

// Layout names the static servers need beyond the routes' files: the
// values the nginx template maps a request to, the extension Apache hands
// to its type-map handler.
type Layout struct {
	TagLinksDir      string // manifests/<TagLinksDir>/<tag>: clients that take indexes
	FallbackLinksDir string // manifests/<FallbackLinksDir>/<tag>: clients that take none
	TypeMapExt       string // manifests/<tag><TypeMapExt>
	HeadersFile      string // manifests/<digest>/<HeadersFile>: Apache's per-manifest headers
	LegacyBlobExt    string // blobs/<digest><LegacyBlobExt>: an extension Apache may map to an encoding
}

// HeadersDirGlobs are the directories a manifest's headers file
// (Layout.HeadersFile) is in, as wildcards relative to the root in the
// syntax of Apache's <Directory> and of path.Match: one for each
// repository depth the name grammar allows, 1 to
// distribution.MaxRepoDepth, as a wildcard's * never matches a slash:
// v2/*/manifests/*:*, v2/*/*/manifests/*:*, …, in that order. "*:*" is a
// digest, algorithm:encoded; no other directory a server reads or passes
// through has a colon in its name (repository names have none), nor is a
// repository component ever "manifests" (ValidateRepo).
func HeadersDirGlobs() []string {
	globs := make([]string, distribution.MaxRepoDepth)
	for i := range globs {
		globs[i] = v2Dir + "/" + strings.Repeat("*/", i+1) + manifestsDir + "/*:*"
	}
	return globs
}

// Names returns the layout names of Layout.
func Names() Layout {
	return Layout{TagLinksDir: tagLinksDir, FallbackLinksDir: fallbackLinksDir, TypeMapExt: typeMapExt,
		HeadersFile: headersFile, LegacyBlobExt: legacyBlobExt}
}
