// Package contract is the HTTP contract every server of a static registry
// tree must meet, Apache, nginx or the embedded Go server alike: one table
// of requests and the status, headers and bodies real clients (skopeo,
// crane, containerd, the OCI conformance suites) need in answer. The rows
// come from serving-notes §1; each is a measured client requirement or a
// predecessor bug that must not come back.
//
// A server test builds the fixture into a tree, serves the tree, and runs
// the suite against it, saying what the server can do beyond what every
// server must (Options):
//
//	root := testserver.TempRoot(t)
//	f := contract.Build(t, root)
//	contract.Run(t, testserver.Apache(t, root), f, contract.Apache)
//
// docs/http-contract.md is this table in prose, a column per server.
package contract

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Options are what a server can do beyond what every server must. Each
// changes only the rows its comment names, to what that server answers
// instead; the rows are in docs/http-contract.md with a column per server.
type Options struct {
	// Negotiates: a tag answers by the client's Accept as Apache's type
	// maps do, with a JSON 406 when no variant is acceptable. Without it
	// (nginx) a multi-variant tag serves its linux/amd64 image only to a
	// client whose Accept lists several types and no index or wildcard,
	// its index to every other client (a lone type may be the first of
	// several Accept lines, all nginx 1.22 reads), and a single-variant
	// tag is served whatever the client accepts.
	Negotiates bool
	// Paginates: tags/list and _catalog honour n and last and send a Link
	// to the next page. Without it (Apache, nginx) they are static files
	// and the query is ignored: the whole list, without a Link.
	Paginates bool
	// DropsTagConditionals: a tag request is served as if it carried no
	// conditional header at all, as the Apache template's RequestHeader
	// unset makes it. Without it (nginx, which cannot remove a request
	// header) "If-None-Match: *" on a tag is answered 304, as RFC 9110
	// has it for any current representation; a real validator still
	// never matches, since tag responses carry none.
	DropsTagConditionals bool
	// FiltersReferrers: ?artifactType= on a referrers request keeps only
	// the entries of that artifactType and says so with
	// "OCI-Filters-Applied: artifactType". Without it (Apache, nginx) the
	// query is ignored: the whole index and no such header, which tells
	// clients to filter themselves (distribution-spec).
	FiltersReferrers bool
}

// The options of each server we ship a configuration for.
var (
	Apache   = Options{Negotiates: true, DropsTagConditionals: true}
	Nginx    = Options{}
	Embedded = Options{Negotiates: true, Paginates: true, DropsTagConditionals: true, FiltersReferrers: true}
)

// testCase is one row of the contract.
type testCase struct {
	name string
	req  request
	// prepare, when set, runs first: it may change the tree (a retag, a
	// deletion) and returns headers to add to the request.
	prepare func(t *testing.T, c *client) http.Header
	// revalidate, when set, first GETs another URL and sends the validator
	// it returned, as a cache would.
	revalidate *revalidation
	want       []check
}

// revalidation turns a previous response's validator into a conditional
// request header: If-None-Match and If-Range from its ETag,
// If-Modified-Since from its Last-Modified.
type revalidation struct {
	path   string
	header string
	// standIn: a response without the validator is no failure; a cache
	// would then send one it made up, which a server that compared
	// wrongly would take for a match: the digest as an ETag, or now.
	standIn bool
}

// Run checks the server at baseURL, which serves the tree f was built in,
// against every row of the contract as o adapts it, each as a subtest
// named for its row ("/" becomes "_", so that -run can select one) and
// failing with the request it sent. Some rows change the tree and put it
// back, so nothing else may write to it meanwhile.
func Run(t *testing.T, baseURL string, f *Fixture, o Options) {
	c := newClient(baseURL)
	for _, tc := range cases(f, o) {
		t.Run(strings.ReplaceAll(tc.name, "/", "_"), func(t *testing.T) {
			req := tc.req
			if tc.prepare != nil {
				req.header = withHeaders(req.header, tc.prepare(t, c))
			}
			if tc.revalidate != nil {
				req = withValidator(t, c, req, *tc.revalidate)
			}
			r, err := c.do(req)
			if err != nil {
				t.Fatalf("%s: %v", req, err)
			}
			for _, want := range tc.want {
				if err := want(r); err != nil {
					t.Errorf("%s: %v", req, err)
				}
			}
		})
	}
}

// withValidator adds the conditional header v asks for to req.
func withValidator(t *testing.T, c *client, req request, v revalidation) request {
	t.Helper()
	first := request{method: http.MethodGet, path: v.path}
	r, err := c.do(first)
	if err != nil {
		t.Fatalf("%s, for a validator: %v", first, err)
	}
	if r.status != http.StatusOK {
		t.Fatalf("%s, for a validator: status %d", first, r.status)
	}
	from := map[string]string{"If-None-Match": "ETag", "If-Range": "ETag", "If-Modified-Since": "Last-Modified"}[v.header]
	val := r.header.Get(from)
	if val == "" && v.standIn {
		val = standInValidator(v.header, path.Base(v.path))
	}
	if val == "" {
		t.Fatalf("%s: no %s to send as %s", first, from, v.header)
	}
	req.header = withHeaders(req.header, http.Header{v.header: {val}})
	return req
}

// standInValidator is what a cache that got no validator might send for
// the object named ref: its digest as an entity tag, or the current time.
func standInValidator(header, ref string) string {
	if header == "If-Modified-Since" {
		return time.Now().UTC().Format(http.TimeFormat)
	}
	return `"` + ref + `"`
}

// withHeaders returns h with extra set on a copy.
func withHeaders(h, extra http.Header) http.Header {
	out := h.Clone()
	if out == nil {
		out = http.Header{}
	}
	for k, vs := range extra {
		out[k] = vs
	}
	return out
}

func cases(f *Fixture, o Options) []testCase {
	var cs []testCase
	for _, group := range [][]testCase{
		pingCases(),
		tagCases(f, o),
		retagCases(f),
		digestCases(f),
		negotiationCases(f, o),
		blobCases(f),
		listCases(f),
		pageCases(f),
		paginationCases(f, o),
		referrersCases(f, o),
		referrersChangeCases(f),
		errorCases(f),
		hiddenCases(f),
	} {
		cs = append(cs, group...)
	}
	return cs
}

// getAndHead makes a GET row and a HEAD row of one request: HEAD must
// answer the same status and headers, without a body.
func getAndHead(name, path string, h http.Header, want func(method string) []check) []testCase {
	var cs []testCase
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		cs = append(cs, testCase{
			name: name + " " + m,
			req:  request{method: m, path: path, header: h},
			want: want(m),
		})
	}
	return cs
}

func get(name, path string, h http.Header, want ...check) testCase {
	return testCase{name: name, req: request{method: http.MethodGet, path: path, header: h}, want: want}
}

func accept(v string) http.Header { return http.Header{"Accept": {v}} }

func (f *Fixture) manifestPath(ref string) string { return "/v2/" + f.Repo + "/manifests/" + ref }

func (f *Fixture) blobPath(d digest.Digest) string { return "/v2/" + f.Repo + "/blobs/" + d.String() }

func (f *Fixture) referrersPath(ref string) string { return "/v2/" + f.Repo + "/referrers/" + ref }

// Accept headers of real clients on manifest requests (serving-notes §1.8).
const (
	acceptSkopeo = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, " +
		"application/vnd.docker.distribution.manifest.v1+prettyjws, application/vnd.docker.distribution.manifest.v1+json, " +
		"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"
	acceptCrane = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json," +
		"application/vnd.docker.distribution.manifest.v1+prettyjws,application/vnd.docker.distribution.manifest.v1+json," +
		"application/vnd.docker.distribution.manifest.list.v2+json,application/vnd.oci.image.index.v1+json"
	acceptContainerd = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, " +
		"application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*"
)

// pingCases: containers/image refuses a registry whose /v2/ is not 200 or
// 401.
func pingCases() []testCase {
	var cs []testCase
	for _, p := range []string{"/v2/", "/v2"} {
		cs = append(cs, getAndHead("ping "+p, p, nil, func(m string) []check {
			want := []check{status(http.StatusOK), header("Content-Type", "application/json"), header("Content-Length", "2")}
			if m == http.MethodGet {
				want = append(want, body([]byte("{}")))
			}
			return want
		})...)
	}
	return cs
}

// tagCases: a tag answers with the exact bytes of the manifest it names and
// the headers containerd resolves it by (HEAD: type, digest and length).
func tagCases(f *Fixture, o Options) []testCase {
	tags := []struct {
		tag string
		m   Manifest
	}{{TagSingle, f.AMD64}, {TagDocker, f.Docker}, {TagMulti, f.Index}, {TagV9GZ, f.Docker}}
	var cs []testCase
	for _, tg := range tags {
		cs = append(cs, getAndHead("tag "+tg.tag, f.manifestPath(tg.tag), nil, func(m string) []check {
			return servedByTag(m, tg.m)
		})...)
	}
	cs = append(cs, get("tag multi varies by Accept", f.manifestPath(TagMulti), nil, headerHas("Vary", "Accept")))
	// A tag carries no validators, and conditional requests on it are
	// answered in full: the manifest behind it may have been rolled back
	// to an older file (serving-notes §3.12).
	for _, h := range []string{"If-None-Match", "If-Modified-Since"} {
		cs = append(cs, testCase{
			name:       "tag single ignores " + h,
			req:        request{method: http.MethodGet, path: f.manifestPath(TagSingle)},
			revalidate: &revalidation{path: f.manifestPath(f.AMD64.Digest.String()), header: h, standIn: true},
			want:       servedByTag(http.MethodGet, f.AMD64),
		})
	}
	star := servedByTag(http.MethodGet, f.AMD64)
	if !o.DropsTagConditionals {
		star = []check{status(http.StatusNotModified), emptyBody, header("Cache-Control", noCache), noHeader("ETag")}
	}
	cs = append(cs, get("tag single ignores If-None-Match *", f.manifestPath(TagSingle),
		http.Header{"If-None-Match": {"*"}}, star...))
	// Manifests are JSON, which a server-wide gzip would compress.
	cs = append(cs, get("tag single Accept-Encoding gzip", f.manifestPath(TagSingle),
		http.Header{"Accept-Encoding": {"gzip"}}, append(servedByTag(http.MethodGet, f.AMD64), noHeader("Content-Encoding"))...))
	return cs
}

// retagCases: the writers' changes show on the next request, with no
// reload or other manual step, and a tag moved back to an older manifest
// is never answered 304 (serving-notes §3.12). Each row puts the tree
// back as it found it.
func retagCases(f *Fixture) []testCase {
	rollback := f.manifestPath(TagRollback)
	var cs []testCase
	for _, h := range []string{"If-None-Match", "If-Modified-Since"} {
		cs = append(cs, testCase{
			name:    "tag rolled back ignores " + h,
			req:     request{method: http.MethodGet, path: rollback},
			prepare: func(t *testing.T, c *client) http.Header { return f.rollBack(t, c, h) },
			want:    servedByTag(http.MethodGet, f.AMD64),
		})
	}
	ephemeral := f.manifestPath(TagEphemeral)
	return append(cs, testCase{
		name: "tag new, then deleted",
		req:  request{method: http.MethodGet, path: ephemeral},
		prepare: func(t *testing.T, c *client) http.Header {
			f.moveTag(t, TagEphemeral, f.Docker)
			mustServe(t, c, ephemeral, f.Docker)
			f.deleteTag(t, TagEphemeral)
			return nil
		},
		want: jsonError(http.MethodGet, http.StatusNotFound, distribution.ManifestUnknown),
	})
}

// rollBack moves TagRollback from AMD64 to ARM64, checks that a client
// sees the move, moves it back, and returns the conditional header h that
// a cache holding the ARM64 response would now send: the validator of the
// tag response, else of ARM64 by digest, else a stand-in.
func (f *Fixture) rollBack(t *testing.T, c *client, h string) http.Header {
	t.Helper()
	tag := f.manifestPath(TagRollback)
	f.moveTag(t, TagRollback, f.ARM64)
	seen := mustServe(t, c, tag, f.ARM64)
	from := map[string]string{"If-None-Match": "ETag", "If-Modified-Since": "Last-Modified"}[h]
	val := seen.header.Get(from)
	if val == "" {
		val = mustServe(t, c, f.manifestPath(f.ARM64.Digest.String()), f.ARM64).header.Get(from)
	}
	if val == "" {
		val = standInValidator(h, f.ARM64.Digest.String())
	}
	f.moveTag(t, TagRollback, f.AMD64)
	return http.Header{h: {val}}
}

// mustServe GETs path and fails t unless it answers 200 with m's bytes.
func mustServe(t *testing.T, c *client, path string, m Manifest) *response {
	t.Helper()
	req := request{method: http.MethodGet, path: path}
	r, err := c.do(req)
	if err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	if r.status != http.StatusOK || r.header.Get("Docker-Content-Digest") != m.Digest.String() {
		t.Fatalf("%s: status %d, digest %q; want 200 and %s at once, with no reload", req, r.status,
			r.header.Get("Docker-Content-Digest"), m.Digest)
	}
	return r
}

// digestCases: by digest a manifest is immutable and served directly, not
// by a 301 to its directory (serving-notes §3.11).
func digestCases(f *Fixture) []testCase {
	var cs []testCase
	for _, m := range []struct {
		name string
		m    Manifest
	}{{"amd64", f.AMD64}, {"arm64", f.ARM64}, {"index", f.Index}, {"docker", f.Docker}} {
		cs = append(cs, getAndHead("digest "+m.name, f.manifestPath(m.m.Digest.String()), nil, func(method string) []check {
			return servedByDigest(method, m.m)
		})...)
	}
	return cs
}

// negotiationCases: the multi-arch tag serves the index to every client
// that accepts it, whatever the sizes (serving-notes §3.1), the amd64 child
// to clients that take only image manifests, and a JSON 406 to clients
// that take nothing the tag has. A server that does not negotiate (nginx)
// serves the amd64 child only to a client listing several types and no
// index, the index to every other, and a single variant to every client.
func negotiationCases(f *Fixture, o Options) []testCase {
	multi := f.manifestPath(TagMulti)
	index := servedByTag(http.MethodGet, f.Index)
	amd64 := servedByTag(http.MethodGet, f.AMD64)
	// negotiated is what a negotiating server answers, and otherwise what
	// the others serve instead.
	negotiated := func(want []check, instead Manifest) []check {
		if !o.Negotiates {
			return servedByTag(http.MethodGet, instead)
		}
		return want
	}
	notAcceptable := jsonError(http.MethodGet, http.StatusNotAcceptable, distribution.ManifestUnknown)
	cs := []testCase{
		get("multi Accept skopeo", multi, accept(acceptSkopeo), index...),
		// containers/image sends one Accept line per type, an image
		// manifest type first; nginx before 1.23 reads only that line
		get("multi Accept skopeo, one line per type", multi,
			http.Header{"Accept": strings.Split(acceptSkopeo, ", ")}, index...),
		get("multi Accept crane", multi, accept(acceptCrane), index...),
		get("multi Accept containerd", multi, accept(acceptContainerd), index...),
		get("multi Accept */*", multi, accept("*/*"), index...),
		get("multi no Accept", multi, nil, index...),
		get("multi Accept manifest and index;q=0.9", multi,
			accept(MediaTypeOCIManifest+", "+MediaTypeOCIIndex+";q=0.9"), index...),
		get("multi Accept image manifests only", multi,
			accept(MediaTypeDockerManifest+";q=1, "+MediaTypeOCIManifest+";q=0.5"), amd64...),
		get("multi Accept OCI manifest only", multi, accept(MediaTypeOCIManifest), negotiated(amd64, f.Index)...),
		get("multi Accept Docker list only", multi, accept(MediaTypeDockerList), negotiated(notAcceptable, f.Index)...),
		get("single Accept Docker v2 only", f.manifestPath(TagSingle), accept(MediaTypeDockerManifest),
			negotiated(notAcceptable, f.AMD64)...),
		get("docker Accept skopeo", f.manifestPath(TagDocker), accept(acceptSkopeo),
			servedByTag(http.MethodGet, f.Docker)...),
	}
	return cs
}

// blobCases: blobs are raw bytes with their digest, whatever the client
// accepts, and support ranges and revalidation.
func blobCases(f *Fixture) []testCase {
	gz := http.Header{"Accept-Encoding": {"gzip"}}
	layer := f.blobPath(f.Layer.Digest)
	size := len(f.Layer.Data)
	cs := getAndHead("blob layer", layer, nil, func(m string) []check { return servedBlob(m, f.Layer) })
	cs = append(cs, getAndHead("blob config", f.blobPath(f.ConfigAMD64.Digest), nil, func(m string) []check {
		return servedBlob(m, f.ConfigAMD64)
	})...)
	cs = append(cs, getAndHead("blob legacy .gz", f.blobPath(f.LegacyLayer.Digest), gz, func(m string) []check {
		return servedBlob(m, f.LegacyLayer)
	})...)
	cs = append(cs,
		get("blob layer Accept-Encoding gzip", layer, gz, servedBlob(http.MethodGet, f.Layer)...),
		// containerd's blob Accept; a negotiating server answered 406 to
		// one without */* (serving-notes §3.7)
		get("blob layer Accept containerd", layer, accept(MediaTypeOCILayer+", */*"), servedBlob(http.MethodGet, f.Layer)...),
		get("blob layer Accept octet-stream only", layer, accept("application/octet-stream"), servedBlob(http.MethodGet, f.Layer)...),
		get("blob range 0-9", layer, http.Header{"Range": {"bytes=0-9"}},
			status(http.StatusPartialContent),
			header("Content-Range", "bytes 0-9/"+strconv.Itoa(size)),
			header("Content-Length", "10"),
			header("Docker-Content-Digest", f.Layer.Digest.String()),
			noHeader("Content-Encoding"),
			body(f.Layer.Data[:10])),
		get("blob range past the end", layer, http.Header{"Range": {"bytes=" + strconv.Itoa(size) + "-"}},
			status(http.StatusRequestedRangeNotSatisfiable)),
		get("blob range suffix", layer, http.Header{"Range": {"bytes=-10"}},
			status(http.StatusPartialContent),
			header("Content-Range", fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size)),
			body(f.Layer.Data[size-10:])),
		get("blob range end past the size", layer, http.Header{"Range": {"bytes=100-99999"}},
			status(http.StatusPartialContent),
			header("Content-Range", fmt.Sprintf("bytes 100-%d/%d", size-1, size)),
			body(f.Layer.Data[100:])),
		// a suffix of no bytes is unsatisfiable, never a 206 of nothing
		get("blob range zero-length suffix", layer, http.Header{"Range": {"bytes=-0"}},
			status(http.StatusRequestedRangeNotSatisfiable), noHeader("Content-Encoding")),
	)
	// Several ranges: the answer is the whole blob, or exactly the bytes
	// asked for, and never larger than the blob (thousands of tiny ranges
	// made servers send many times the file).
	for _, r := range []struct {
		name, spec string
		b          Blob
	}{
		{"overlapping", "bytes=0-9,5-19", f.Layer},
		{"larger as multipart than the blob", fmt.Sprintf("bytes=0-%d,%d-%d", size/2-2, size/2, size-1), f.Layer},
		{"two small", "bytes=0-0,100-109", f.Big},
		{"hundreds disjoint", everyOther(700), f.Big},
		{"thousands overlapping", "bytes=" + strings.TrimSuffix(strings.Repeat("0-9,", 1500), ","), f.Big},
	} {
		cs = append(cs, get("blob ranges "+r.name, f.blobPath(r.b.Digest), http.Header{"Range": {r.spec}}, rangesServed(r.spec, r.b.Data)))
	}
	cs = append(cs,
		// a resumed download: the range only if the blob is unchanged
		testCase{
			name:       "blob If-Range",
			req:        request{method: http.MethodGet, path: layer, header: http.Header{"Range": {"bytes=10-"}}},
			revalidate: &revalidation{path: layer, header: "If-Range"},
			want: []check{status(http.StatusPartialContent),
				header("Content-Range", fmt.Sprintf("bytes 10-%d/%d", size-1, size)), body(f.Layer.Data[10:])},
		},
		testCase{
			name:       "blob If-None-Match",
			req:        request{method: http.MethodGet, path: layer},
			revalidate: &revalidation{path: layer, header: "If-None-Match"},
			want: []check{status(http.StatusNotModified), emptyBody,
				header("Docker-Content-Digest", f.Layer.Digest.String()), header("Cache-Control", immutable)},
		},
	)
	return cs
}

// listCases: listings are JSON, never cached, tags sorted.
func listCases(f *Fixture) []testCase {
	list := "/v2/" + f.Repo + "/tags/list"
	cs := getAndHead("tags/list", list, nil, func(m string) []check {
		want := []check{status(http.StatusOK), header("Content-Type", "application/json"), header("Cache-Control", noCache)}
		if m == http.MethodGet {
			want = append(want, tagsList(f.Repo, f.Tags))
		}
		return want
	})
	return append(cs, getAndHead("_catalog", "/v2/_catalog", nil, func(m string) []check {
		want := []check{status(http.StatusOK), header("Content-Type", "application/json"), header("Cache-Control", noCache)}
		if m == http.MethodGet {
			want = append(want, catalogHas(f.Repo))
		}
		return want
	})...)
}

// pageCases: the catalog page at / is HTML, revalidated, and shows every
// tag as REPO:TAG with its manifest's short digest.
func pageCases(f *Fixture) []testCase {
	return getAndHead("catalog page", "/", nil, func(m string) []check {
		want := []check{status(http.StatusOK), header("Content-Type", tree.PageContentType), header("Cache-Control", noCache)}
		if m == http.MethodGet {
			for _, tag := range f.Tags {
				want = append(want, bodyContains(f.Repo+":"+tag))
			}
			want = append(want, bodyContains(f.AMD64.Digest.Encoded()[:12]), bodyContains(f.Docker.Digest.Encoded()[:12]))
		}
		return want
	})
}

// paginationCases: n and last page through tags/list and _catalog, with a
// Link to the next page, and n=0 is an empty page without one
// (distribution-spec "Listing Tags"). A static file ignores the query: the
// whole list and no Link, which a client following Links also reads right.
func paginationCases(f *Fixture, o Options) []testCase {
	list := "/v2/" + f.Repo + "/tags/list"
	if !o.Paginates {
		return []testCase{
			get("tags/list ?n=1 ignored", list+"?n=1", nil, status(http.StatusOK), tagsList(f.Repo, f.Tags), noHeader("Link")),
			get("_catalog ?n=1 ignored", "/v2/_catalog?n=1", nil, status(http.StatusOK), catalogIs(f.Repos), noHeader("Link")),
		}
	}
	tags := f.Tags // 5, sorted
	return []testCase{
		get("tags/list ?n=2", list+"?n=2", nil, status(http.StatusOK), header("Content-Type", "application/json"),
			tagsList(f.Repo, tags[:2]), linkNext(list, 2, tags[1])),
		get("tags/list ?n=2&last", list+"?n=2&last="+tags[1], nil, status(http.StatusOK),
			tagsList(f.Repo, tags[2:4]), linkNext(list, 2, tags[3])),
		get("tags/list ?n=2 last page", list+"?n=2&last="+tags[3], nil, status(http.StatusOK),
			tagsList(f.Repo, tags[4:]), noHeader("Link")),
		get("tags/list ?n=0", list+"?n=0", nil, status(http.StatusOK), tagsList(f.Repo, []string{}), noHeader("Link")),
		get("tags/list ?last past the end", list+"?last=zzz", nil, status(http.StatusOK), tagsList(f.Repo, []string{}), noHeader("Link")),
		get("_catalog ?n=1", "/v2/_catalog?n=1", nil, status(http.StatusOK), header("Content-Type", "application/json"),
			catalogIs(f.Repos[:1]), linkNext("/v2/_catalog", 1, f.Repos[0])),
		get("_catalog ?n=1&last", "/v2/_catalog?n=1&last="+f.Repos[0], nil, status(http.StatusOK),
			catalogIs(f.Repos[1:]), noHeader("Link")),
	}
}

// referrersCases: the OCI 1.1 referrers API answers every digest of a
// repository that exists with 200 and an index, empty when nothing refers
// to the digest, never 404 for some digests only (serving-notes §1.6); a
// malformed digest is 400.
func referrersCases(f *Fixture, o Options) []testCase {
	amd64 := f.referrersPath(f.AMD64.Digest.String())
	cs := getAndHead("referrers of a subject", amd64, nil, func(m string) []check {
		return servedReferrers(m, f.Referrers)
	})
	cs = append(cs, getAndHead("referrers none", f.referrersPath(f.ARM64.Digest.String()), nil, func(m string) []check {
		return servedReferrers(m, nil)
	})...)
	cs = append(cs, getAndHead("referrers unknown repo", "/v2/ns/nope/referrers/"+f.AMD64.Digest.String(), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, distribution.NameUnknown)
	})...)
	cs = append(cs, getAndHead("referrers malformed digest", f.referrersPath("sha256:abc"), nil, func(m string) []check {
		return jsonError(m, http.StatusBadRequest, distribution.DigestInvalid)
	})...)
	signature := f.Referrers[slices.IndexFunc(f.Referrers, func(r Referrer) bool { return r.ArtifactType == ArtifactTypeSignature })]
	filtered := append(servedReferrers(http.MethodGet, f.Referrers), noHeader("OCI-Filters-Applied"))
	if o.FiltersReferrers {
		filtered = []check{status(http.StatusOK), header("Content-Type", MediaTypeOCIIndex),
			header("OCI-Filters-Applied", "artifactType"), referrersList([]Referrer{signature})}
	}
	return append(cs,
		get("referrers of a digest the repository lacks", f.referrersPath(digest.FromString("not in the fixture").String()), nil,
			servedReferrers(http.MethodGet, nil)...),
		get("referrers malformed digest, unknown repo", "/v2/ns/nope/referrers/sha256:abc", nil,
			jsonError(http.MethodGet, http.StatusBadRequest, distribution.DigestInvalid)...),
		get("referrers no digest", f.referrersPath(""), nil, jsonError(http.MethodGet, http.StatusBadRequest, distribution.DigestInvalid)...),
		get("referrers digest and slash", amd64+"/", nil, jsonError(http.MethodGet, http.StatusBadRequest, distribution.DigestInvalid)...),
		get("referrers ?artifactType", amd64+"?artifactType="+url.QueryEscape(ArtifactTypeSignature), nil, filtered...),
		get("referrers Accept-Encoding gzip", amd64, http.Header{"Accept-Encoding": {"gzip"}},
			append(servedReferrers(http.MethodGet, f.Referrers), noHeader("Content-Encoding"))...),
		testCase{
			name:       "referrers ignores If-None-Match",
			req:        request{method: http.MethodGet, path: amd64},
			revalidate: &revalidation{path: amd64, header: "If-None-Match", standIn: true},
			want:       servedReferrers(http.MethodGet, f.Referrers),
		},
	)
}

// referrersChangeCases: an export or deletion of a referrer shows on the
// next request, and a subject whose last referrer went is answered by the
// (older) empty index in full, never 304 from a cache's validator of the
// longer list: the same trap as a tag rolled back (serving-notes §3.12).
// Each row puts the tree back as it found it.
func referrersChangeCases(f *Fixture) []testCase {
	arm64 := f.referrersPath(f.ARM64.Digest.String())
	var cs []testCase
	for _, h := range []string{"If-Modified-Since", "If-None-Match"} {
		cs = append(cs, testCase{
			name:    "referrer added, then deleted, " + h,
			req:     request{method: http.MethodGet, path: arm64},
			prepare: func(t *testing.T, c *client) http.Header { return f.addAndDeleteReferrer(t, c, h) },
			want:    servedReferrers(http.MethodGet, nil),
		})
	}
	return cs
}

// addAndDeleteReferrer gives ARM64 a referrer, checks that a client sees
// it, deletes it as gc does (index first), and returns the conditional
// header h a cache holding the longer list would now send.
func (f *Fixture) addAndDeleteReferrer(t *testing.T, c *client, h string) http.Header {
	t.Helper()
	arm64 := f.referrersPath(f.ARM64.Digest.String())
	r := referrer(t, f.root, f.Repo, f.ARM64, map[string]any{"artifactType": ArtifactTypeSignature, "config": descriptor(MediaTypeOCIEmpty, blob([]byte("{}")))})
	fx := tree.Fixture(f.root)
	if err := fx.UpdateReferrers(f.Repo, f.ARM64.Digest); err != nil {
		t.Fatal(err)
	}
	r.ArtifactType = ArtifactTypeSignature
	req := request{method: http.MethodGet, path: arm64}
	seen, err := c.do(req)
	if err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	if err := referrersList([]Referrer{r})(seen); err != nil || seen.status != http.StatusOK {
		t.Fatalf("%s: status %d, %v; want the new referrer at once, with no reload", req, seen.status, err)
	}
	if err := fx.RefreshReferrers(f.Repo, r.Digest); err != nil {
		t.Fatal(err)
	}
	if err := fx.RemoveManifest(f.Repo, r.Digest); err != nil {
		t.Fatal(err)
	}
	from := map[string]string{"If-None-Match": "ETag", "If-Modified-Since": "Last-Modified"}[h]
	val := seen.header.Get(from)
	if val == "" {
		val = standInValidator(h, f.ARM64.Digest.String())
	}
	return http.Header{h: {val}}
}

// errorCases: unknown content is a JSON 404 with the right code, and the
// registry is read-only.
func errorCases(f *Fixture) []testCase {
	unknown := digest.FromString("not in the fixture")
	cs := getAndHead("unknown blob", f.blobPath(unknown), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, distribution.BlobUnknown)
	})
	cs = append(cs, getAndHead("unknown manifest digest", f.manifestPath(unknown.String()), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, distribution.ManifestUnknown)
	})...)
	// v9.gz is a tag; MultiViews made v9 one too (serving-notes §3.6)
	cs = append(cs, getAndHead("unknown tag v9", f.manifestPath("v9"), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, distribution.ManifestUnknown)
	})...)
	cs = append(cs,
		get("unknown repo manifest", "/v2/ns/nope/manifests/"+TagSingle, nil,
			jsonError(http.MethodGet, http.StatusNotFound, distribution.ManifestUnknown)...),
		get("unknown repo tags/list", "/v2/ns/nope/tags/list", nil,
			jsonError(http.MethodGet, http.StatusNotFound, distribution.NameUnknown)...),
	)
	writes := []request{
		{method: http.MethodPost, path: "/v2/" + f.Repo + "/blobs/uploads/"},
		{method: http.MethodPatch, path: "/v2/" + f.Repo + "/blobs/uploads/some-session"},
		{method: http.MethodPut, path: f.manifestPath(TagSingle)},
		{method: http.MethodDelete, path: f.manifestPath(f.AMD64.Digest.String())},
		{method: http.MethodDelete, path: f.blobPath(f.Layer.Digest)},
		{method: http.MethodPost, path: "/v2/"},
	}
	for _, r := range writes {
		cs = append(cs, testCase{name: "read-only " + r.method + " " + r.path, req: r,
			want: jsonError(r.method, http.StatusMethodNotAllowed, distribution.Unsupported)})
	}
	return cs
}

// hiddenCases: only API routes are addressable. Everything else in the
// tree (headers, type maps, the files behind digests, temporary files,
// directories, our own state) is a JSON 404 (serving-notes §3.13).
func hiddenCases(f *Fixture) []testCase {
	dg := f.AMD64.Digest.String()
	paths := []string{
		f.manifestPath(".htaccess"),
		f.manifestPath(dg + "/.htaccess"),
		f.manifestPath(dg + "/index.json"),
		f.manifestPath(dg + "/manifest.oci-manifest"),
		f.manifestPath(".tags/" + TagSingle),
		f.manifestPath(".tags-fallback/" + TagMulti),
		f.manifestPath(".tags"),
		f.manifestPath(dg + "/"),
		f.manifestPath(TagSingle + ".type-map"),
		"/v2/" + f.Repo + "/blobs/." + f.Layer.Digest.String() + "123456",
		f.blobPath(f.LegacyLayer.Digest) + ".gz",
		"/v2/" + f.Repo + "/blobs/",
		"/v2/" + f.Repo + "/blobs",
		"/v2/" + f.Repo + "/",
		"/v2/" + f.Repo + "/tags/",
		"/.image-serve/errors/" + tree.ErrorFile(distribution.ErrBlobUnknown),
		strings.TrimPrefix(tree.Fixture(f.root).EmptyReferrersPath(), f.root.Dir()),
		"/v2/" + f.Repo + "/referrers/" + filepath.Base(f.referrersTempFile()),
		"/v2/" + f.Repo + "/referrers",
		"/_errors/" + tree.ErrorFile(distribution.ErrBlobUnknown),
		"/v2/index.json",
		"/index.html",
	}
	var cs []testCase
	for _, p := range paths {
		cs = append(cs, get("not served "+p, p, nil, jsonError(http.MethodGet, http.StatusNotFound, anyCode)...))
	}
	return cs
}
