package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Media types of the fixture.
const (
	ociManifest    = "application/vnd.oci.image.manifest.v1+json"
	ociIndex       = "application/vnd.oci.image.index.v1+json"
	dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	dockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	// skopeo's Accept: every manifest type (serving-notes §1.8)
	acceptAll = ociManifest + ", " + dockerManifest + ", " + dockerList + ", " + ociIndex
)

type blob struct {
	d    digest.Digest
	data []byte
}

func newBlob(data []byte) blob { return blob{digest.FromBytes(data), data} }

type manifest struct {
	blob
	mediaType string
}

// fixture is a tree written with tree's writers.
type fixture struct {
	root                  *tree.Root
	fx                    *tree.Fixtures // root's writers and paths, to build and change it
	repo                  string         // "ns/app"
	config, layer, legacy blob           // legacy: stored only as "<digest>.gz"
	a, b, index, docker   manifest
	manyRepo              string // "ns/many", tags t0..t4
	manyTags, tags, repos []string
}

func build(t testing.TB) *fixture {
	t.Helper()
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return buildIn(t, root)
}

// buildIn writes build's tree at root.
func buildIn(t testing.TB, root *tree.Root) *fixture {
	t.Helper()
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{root: root, fx: tree.Fixture(root), repo: "ns/app", manyRepo: "ns/many"}
	f.config = newBlob([]byte(`{"architecture":"amd64","os":"linux"}`))
	f.layer = newBlob(bytes.Repeat([]byte("layer bytes "), 100))
	f.legacy = newBlob([]byte("\x1f\x8b legacy layer, always named .gz by TripleO"))
	f.a = f.manifest(t, ociManifest, `{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q},"layers":[{"digest":%q}]}`,
		ociManifest, f.config.d, f.layer.d)
	f.b = f.manifest(t, ociManifest, `{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q},"layers":[],"annotations":{"v":"b"}}`,
		ociManifest, f.config.d)
	f.index = f.manifest(t, ociIndex, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}]}`,
		ociIndex, ociManifest, f.a.d, len(f.a.data))
	f.docker = f.manifest(t, dockerManifest, `{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q},"layers":[]}`,
		dockerManifest, f.config.d)
	for _, b := range []blob{f.config, f.layer} {
		f.putBlob(t, f.repo, b)
	}
	if err := os.WriteFile(f.fx.LegacyBlobPath(f.repo, f.legacy.d), f.legacy.data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range []manifest{f.a, f.b, f.index, f.docker} {
		f.putManifest(t, f.repo, m)
	}
	f.putTag(t, f.repo, "single", f.a)
	f.putTag(t, f.repo, "docker", f.docker)
	f.putTag(t, f.repo, "v9.gz", f.docker)
	// the index first choice, the amd64 manifest for clients that cannot
	// read indexes (serving-notes §3.1, §4.3)
	f.putTag(t, f.repo, "multi", f.index, f.a)
	f.tags = []string{"docker", "multi", "single", "v9.gz"}

	f.putManifest(t, f.manyRepo, f.a)
	for i := range 5 {
		tag := "t" + strconv.Itoa(i)
		f.putTag(t, f.manyRepo, tag, f.a)
		f.manyTags = append(f.manyTags, tag)
	}
	f.repos = []string{f.repo, f.manyRepo}
	return f
}

func (f *fixture) manifest(t testing.TB, mediaType, format string, args ...any) manifest {
	t.Helper()
	return manifest{newBlob(fmt.Appendf(nil, format, args...)), mediaType}
}

func (f *fixture) putBlob(t testing.TB, repo string, b blob) {
	t.Helper()
	fetch := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.data)), nil }
	if _, _, err := f.fx.PutBlob(repo, b.d, int64(len(b.data)), false, fetch); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) putManifest(t testing.TB, repo string, m manifest) {
	t.Helper()
	if err := f.fx.PutManifest(repo, m.d, m.mediaType, m.data); err != nil {
		t.Fatal(err)
	}
}

// putTag points tag at ms, the first at qs=1.0 and the others at 0.001.
func (f *fixture) putTag(t testing.TB, repo, tag string, ms ...manifest) {
	t.Helper()
	if err := f.fx.PutTag(repo, tag, variants(ms...)); err != nil {
		t.Fatal(err)
	}
}

func variants(ms ...manifest) []tree.TagVariant {
	var vs []tree.TagVariant
	for i, m := range ms {
		qs := 1.0
		if i > 0 {
			qs = 0.001
		}
		vs = append(vs, tree.TagVariant{Digest: m.d, MediaType: m.mediaType, QS: qs})
	}
	return vs
}

// start serves f's tree on a real loopback listener.
func start(t testing.TB, f *fixture) string {
	t.Helper()
	srv := httptest.NewServer(New(f.root, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// client shows what the server sent: no transparent gunzip, no redirects.
var client = &http.Client{
	Transport: &http.Transport{DisableCompression: true},
	Timeout:   30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

type result struct {
	status int
	header http.Header
	body   []byte
}

func do(t testing.TB, base, method, path string, h http.Header) result {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return result{resp.StatusCode, resp.Header, body}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// want is what a response must carry: status, exact header values ("" =
// must be absent), and the body or the error code.
type want struct {
	status int
	header map[string]string
	body   []byte
	code   distribution.ErrorCode
}

func (w want) check(t *testing.T, r result) {
	t.Helper()
	if r.status != w.status {
		t.Errorf("status %d, want %d; body %.200q", r.status, w.status, r.body)
	}
	if got := r.header.Get(apiVersionHeader); got != apiVersion {
		t.Errorf("%s: %q, want %q on every response", apiVersionHeader, got, apiVersion)
	}
	for k, v := range w.header {
		if got := r.header.Values(k); v == "" && len(got) > 0 || v != "" && (len(got) != 1 || got[0] != v) {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if w.body != nil && !bytes.Equal(r.body, w.body) {
		t.Errorf("body %.100q, want %.100q", r.body, w.body)
	}
	if w.code != "" {
		checkError(t, r, w.code)
	}
}

// checkError checks an OCI error response as the template's ErrorDocuments
// send it.
func checkError(t *testing.T, r result, code distribution.ErrorCode) {
	t.Helper()
	if ct, cc := r.header.Get("Content-Type"), r.header.Get("Cache-Control"); ct != jsonType || cc != cacheNever {
		t.Errorf("error response typed %q, Cache-Control %q; want %q, %q", ct, cc, jsonType, cacheNever)
	}
	var e struct {
		Errors []struct{ Code distribution.ErrorCode } `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != code {
		t.Errorf("error body %q, want code %s", r.body, code)
	}
}

// served is a 200 for content with its digest, type and cache class.
func served(b blob, contentType, cacheControl string) want {
	return want{status: http.StatusOK, body: b.data, header: map[string]string{
		"Content-Type":   contentType,
		"Content-Length": strconv.Itoa(len(b.data)),
		digestHeader:     b.d.String(),
		"Cache-Control":  cacheControl,
	}}
}

// byTag is a manifest served by tag: no validators (serving-notes §3.12).
func byTag(m manifest, vary string) want {
	w := served(m.blob, m.mediaType, cacheRevalidate)
	w.header["ETag"], w.header["Last-Modified"], w.header["Vary"] = "", "", vary
	return w
}

func byDigest(m manifest) want {
	w := served(m.blob, m.mediaType, cacheImmutable)
	w.header["ETag"] = `"` + m.d.String() + `"`
	return w
}

func servedBlob(b blob) want {
	w := served(b, blobType, cacheImmutable)
	w.header["Accept-Ranges"], w.header["Content-Encoding"] = "bytes", ""
	w.header["ETag"] = `"` + b.d.String() + `"`
	return w
}

func failed(status int, code distribution.ErrorCode) want { return want{status: status, code: code} }

func TestRoutes(t *testing.T) {
	f := build(t)
	base := start(t, f)
	m := "/v2/" + f.repo + "/manifests/"
	blobs := "/v2/" + f.repo + "/blobs/"
	unknown := digest.FromString("unknown")
	tagsList, _ := json.Marshal(map[string]any{"name": f.repo, "tags": f.tags})
	catalogBody, _ := json.Marshal(map[string]any{"repositories": f.repos})
	ping := want{status: http.StatusOK, body: []byte("{}"), header: map[string]string{"Content-Type": jsonType, "Content-Length": "2"}}
	list := func(body []byte) want {
		return want{status: http.StatusOK, body: body, header: map[string]string{"Content-Type": jsonType, "Cache-Control": cacheRevalidate}}
	}
	tests := []struct {
		name   string
		method string // GET if empty
		path   string
		header http.Header
		want   want
	}{
		{name: "ping", path: "/v2/", want: ping},
		{name: "ping without slash", path: "/v2", want: ping},
		{name: "tag", path: m + "single", header: hdr("Accept", acceptAll), want: byTag(f.a, "")},
		{name: "tag without Accept", path: m + "single", want: byTag(f.a, "")},
		// the index wins on qs although the manifest is smaller (§3.1)
		{name: "multi-variant tag", path: m + "multi", header: hdr("Accept", acceptAll), want: byTag(f.index, "accept")},
		{name: "multi-variant tag, manifests only", path: m + "multi", header: hdr("Accept", ociManifest), want: byTag(f.a, "accept")},
		{name: "multi-variant tag, two Accept fields", path: m + "multi", header: hdr("Accept", dockerList, "Accept", ociManifest), want: byTag(f.a, "accept")},
		{name: "tag 406", path: m + "multi", header: hdr("Accept", dockerList), want: failed(http.StatusNotAcceptable, distribution.ManifestUnknown)},
		{name: "single-variant tag 406", path: m + "single", header: hdr("Accept", dockerManifest), want: failed(http.StatusNotAcceptable, distribution.ManifestUnknown)},
		{name: "tag that looks like a file", path: m + "v9.gz", want: byTag(f.docker, "")},
		{name: "no phantom tag (§3.6)", path: m + "v9", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "digest", path: m + f.a.d.String(), want: byDigest(f.a)},
		{name: "digest of an index", path: m + f.index.d.String(), want: byDigest(f.index)},
		{name: "unknown digest", path: m + unknown.String(), want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "malformed digest", path: m + "sha256:abc", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "tag of unknown repo", path: "/v2/ns/nope/manifests/single", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "invalid repo name", path: "/v2/NS/app/manifests/single", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "blob", path: blobs + f.layer.d.String(), want: servedBlob(f.layer)},
		{name: "blob, gzip accepted", path: blobs + f.layer.d.String(), header: hdr("Accept-Encoding", "gzip"), want: servedBlob(f.layer)},
		{name: "blob, octet-stream only accepted", path: blobs + f.layer.d.String(), header: hdr("Accept", blobType), want: servedBlob(f.layer)},
		{name: "legacy .gz blob", path: blobs + f.legacy.d.String(), header: hdr("Accept-Encoding", "gzip"), want: servedBlob(f.legacy)},
		{name: "unknown blob", path: blobs + unknown.String(), want: failed(http.StatusNotFound, distribution.BlobUnknown)},
		{name: "blob of invalid repo", path: "/v2/NS/blobs/" + f.layer.d.String(), want: failed(http.StatusNotFound, distribution.BlobUnknown)},
		{name: "legacy name addressed", path: blobs + f.legacy.d.String() + ".gz", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "tags/list", path: "/v2/" + f.repo + "/tags/list", want: list(tagsList)},
		{name: "_catalog", path: "/v2/_catalog", want: list(catalogBody)},
		{name: "tags/list of unknown repo", path: "/v2/ns/nope/tags/list", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "tags/list of invalid repo", path: "/v2/NS/tags/list", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "above the root", path: "/v2/../../etc/passwd", want: failed(http.StatusBadRequest, "NAME_INVALID")},
		{name: "merged slashes", path: "/v2//" + f.repo + "//tags/list", want: list(tagsList)},
		{name: "dot segments", path: "/v2/ns/x/../app/./tags/list", want: list(tagsList)},
		{name: "encoded slash", path: "/v2/ns%2Fapp/tags/list", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "manifest .htaccess", path: m + f.a.d.String() + "/.htaccess", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "manifest index.json", path: m + f.a.d.String() + "/index.json", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "manifest directory", path: m + f.a.d.String() + "/", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "type map", path: m + "single.type-map", want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "manifests directory", path: m, want: failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{name: "blobs directory", path: blobs, want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "repository directory", path: "/v2/" + f.repo + "/", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "v2/index.json", path: "/v2/index.json", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "state directory", path: "/.image-serve/errors/" + tree.ErrorFile(distribution.ErrBlobUnknown), want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "catalog page by its file name", path: "/index.html", want: failed(http.StatusNotFound, distribution.NameUnknown)},
		{name: "POST upload", method: http.MethodPost, path: blobs + "uploads/", want: failed(http.StatusMethodNotAllowed, distribution.Unsupported)},
		{name: "PUT tag", method: http.MethodPut, path: m + "single", want: failed(http.StatusMethodNotAllowed, distribution.Unsupported)},
		{name: "DELETE blob", method: http.MethodDelete, path: blobs + f.layer.d.String(), want: failed(http.StatusMethodNotAllowed, distribution.Unsupported)},
		{name: "PATCH elsewhere", method: http.MethodPatch, path: "/foo", want: failed(http.StatusMethodNotAllowed, distribution.Unsupported)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			tc.want.check(t, do(t, base, method, tc.path, tc.header))
		})
	}
}

// TestEmptyRoot: a root that awaits its first export (an existing empty
// directory) is an empty registry — /v2/ answers, _catalog lists nothing,
// everything else is the 404 of an unknown repository — and the server
// writes nothing there; once a tree is written, the same server serves it.
// Guards: serve refused an empty directory, so it could not be installed
// before the first export.
func TestEmptyRoot(t *testing.T) {
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(root, nil))
	t.Cleanup(srv.Close)
	list := want{status: http.StatusOK, body: []byte(`{"repositories":[]}`), header: map[string]string{
		"Content-Type": jsonType, "Cache-Control": cacheRevalidate, "Content-Length": "19", "Link": "", "ETag": ""}}
	unknown := digest.FromString("unknown").String()
	for _, tc := range []struct {
		method, path string
		want         want
	}{
		{http.MethodGet, "/v2/", want{status: http.StatusOK, body: []byte("{}"), header: map[string]string{"Content-Type": jsonType}}},
		{http.MethodGet, "/v2/_catalog", list},
		{http.MethodHead, "/v2/_catalog", want{status: http.StatusOK, body: []byte{}, header: list.header}},
		{http.MethodGet, "/v2/_catalog?n=1", list},
		{http.MethodGet, "/v2/_catalog?n=1&last=a", list},
		{http.MethodGet, "/v2/_catalog?n=x", failed(http.StatusBadRequest, "PAGINATION_NUMBER_INVALID")},
		{http.MethodGet, "/v2/hello/tags/list", failed(http.StatusNotFound, distribution.NameUnknown)},
		{http.MethodGet, "/v2/hello/manifests/latest", failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{http.MethodGet, "/v2/hello/manifests/" + unknown, failed(http.StatusNotFound, distribution.ManifestUnknown)},
		{http.MethodGet, "/v2/hello/blobs/" + unknown, failed(http.StatusNotFound, distribution.BlobUnknown)},
		{http.MethodGet, "/v2/hello/referrers/" + unknown, failed(http.StatusNotFound, distribution.NameUnknown)},
		{http.MethodPut, "/v2/hello/manifests/latest", failed(http.StatusMethodNotAllowed, distribution.Unsupported)},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) { tc.want.check(t, do(t, srv.URL, tc.method, tc.path, nil)) })
	}
	if entries, err := os.ReadDir(root.Dir()); err != nil || len(entries) > 0 {
		t.Fatalf("the server wrote into the empty root: %v %v", entries, err)
	}

	// A directory holding something else is no empty registry: no
	// _catalog there is the 404 it is everywhere else.
	if err := os.WriteFile(filepath.Join(root.Dir(), "stray"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failed(http.StatusNotFound, distribution.NameUnknown).check(t, do(t, srv.URL, http.MethodGet, "/v2/_catalog", nil))
	if err := os.Remove(filepath.Join(root.Dir(), "stray")); err != nil {
		t.Fatal(err)
	}

	// The first export, while the server runs.
	f := buildIn(t, root)
	byTag(f.a, "").check(t, do(t, srv.URL, http.MethodGet, "/v2/"+f.repo+"/manifests/single", hdr("Accept", acceptAll)))
	catalogBody, _ := json.Marshal(map[string]any{"repositories": f.repos})
	want{status: http.StatusOK, body: catalogBody}.check(t, do(t, srv.URL, http.MethodGet, "/v2/_catalog", nil))
}

// TestHeadMatchesGet: HEAD answers GET's status and headers, Content-Length
// included (containerd resolves tags by HEAD), without a body.
func TestHeadMatchesGet(t *testing.T) {
	f := build(t)
	base := start(t, f)
	m := "/v2/" + f.repo + "/manifests/"
	for _, tc := range []struct {
		path   string
		header http.Header
	}{
		{"/v2/", nil},
		{m + "multi", hdr("Accept", acceptAll)},
		{m + "multi", hdr("Accept", dockerList)},
		{m + f.a.d.String(), nil},
		{m + "nope", nil},
		{"/v2/" + f.repo + "/blobs/" + f.layer.d.String(), nil},
		{"/v2/" + f.repo + "/blobs/" + f.legacy.d.String(), nil},
		{"/v2/" + f.repo + "/blobs/" + f.layer.d.String(), hdr("Range", "bytes=2-5")},
		{"/v2/" + f.repo + "/tags/list", nil},
		{"/v2/" + f.manyRepo + "/tags/list?n=2", nil},
		{"/v2/" + f.manyRepo + "/tags/list?n=x", nil},
		{"/v2/_catalog", nil},
		{"/nope", nil},
	} {
		t.Run(tc.path, func(t *testing.T) {
			get := do(t, base, http.MethodGet, tc.path, tc.header)
			head := do(t, base, http.MethodHead, tc.path, tc.header)
			if head.status != get.status {
				t.Errorf("HEAD status %d, GET %d", head.status, get.status)
			}
			if len(head.body) != 0 {
				t.Errorf("HEAD body %q", head.body)
			}
			if get.header.Get("Content-Length") == "" {
				t.Errorf("GET has no Content-Length")
			}
			for _, h := range []http.Header{get.header, head.header} {
				h.Del("Date")
			}
			if fmt.Sprint(get.header) != fmt.Sprint(head.header) {
				t.Errorf("headers differ:\nGET  %v\nHEAD %v", get.header, head.header)
			}
		})
	}
}

func TestPagination(t *testing.T) {
	f := build(t)
	base := start(t, f)
	tags := "/v2/" + f.manyRepo + "/tags/list"
	tagsPage := func(tags ...string) []byte {
		b, _ := json.Marshal(map[string]any{"name": f.manyRepo, "tags": append([]string{}, tags...)})
		return b
	}
	reposPage := func(repos ...string) []byte {
		b, _ := json.Marshal(map[string]any{"repositories": append([]string{}, repos...)})
		return b
	}
	page := func(body []byte, link string) want {
		return want{status: http.StatusOK, body: body, header: map[string]string{
			"Content-Type": jsonType, "Cache-Control": cacheRevalidate, "Link": link,
			"Content-Length": strconv.Itoa(len(body)),
		}}
	}
	bad := failed(http.StatusBadRequest, "PAGINATION_NUMBER_INVALID")
	tests := []struct {
		name, path string
		want       want
	}{
		{"no n: everything", tags, page(tagsPage(f.manyTags...), "")},
		{"first page", tags + "?n=2", page(tagsPage("t0", "t1"), `<`+tags+`?n=2&last=t1>; rel="next"`)},
		{"next page", tags + "?n=2&last=t1", page(tagsPage("t2", "t3"), `<`+tags+`?n=2&last=t3>; rel="next"`)},
		{"last page, exactly full", tags + "?n=1&last=t3", page(tagsPage("t4"), "")},
		{"last page, short", tags + "?n=2&last=t3", page(tagsPage("t4"), "")},
		{"n larger than all", tags + "?n=100", page(tagsPage(f.manyTags...), "")},
		{"n equal to all", tags + "?n=5", page(tagsPage(f.manyTags...), "")},
		{"last only", tags + "?last=t2", page(tagsPage("t3", "t4"), "")},
		{"last not a tag: strictly after it", tags + "?n=1&last=t1a", page(tagsPage("t2"), `<`+tags+`?n=1&last=t2>; rel="next"`)},
		{"last after everything", tags + "?n=2&last=zzz", page(tagsPage(), "")},
		{"n=0: empty, no Link", tags + "?n=0", page(tagsPage(), "")},
		{"n=0 with last", tags + "?n=0&last=t1", page(tagsPage(), "")},
		{"negative n", tags + "?n=-1", bad},
		{"non-integer n", tags + "?n=two", bad},
		{"empty n", tags + "?n=", bad},
		{"unknown repo before bad n", "/v2/ns/nope/tags/list?n=x", failed(http.StatusNotFound, distribution.NameUnknown)},
		{"catalog first page", "/v2/_catalog?n=1", page(reposPage(f.repo), `</v2/_catalog?n=1&last=ns%2Fapp>; rel="next"`)},
		{"catalog next page", "/v2/_catalog?n=1&last=" + f.repo, page(reposPage(f.manyRepo), "")},
		{"catalog n=0", "/v2/_catalog?n=0", page(reposPage(), "")},
		{"catalog bad n", "/v2/_catalog?n=1.5", bad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, do(t, base, http.MethodGet, tc.path, nil))
		})
	}
}

// TestPaginationFollowsLink walks a listing by its Link headers, as clients
// prefer, and sees every tag once.
func TestPaginationFollowsLink(t *testing.T) {
	f := build(t)
	base := start(t, f)
	var seen []string
	next := "/v2/" + f.manyRepo + "/tags/list?n=2"
	for range 10 {
		r := do(t, base, http.MethodGet, next, nil)
		var l struct{ Tags []string }
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, l.Tags...)
		link := r.header.Get("Link")
		if link == "" {
			break
		}
		next = strings.TrimPrefix(strings.TrimSuffix(link, `>; rel="next"`), "<")
	}
	if fmt.Sprint(seen) != fmt.Sprint(f.manyTags) {
		t.Errorf("walked %q, want %q", seen, f.manyTags)
	}
}

// TestUnsortedListing: TripleO wrote tags/list and _catalog unsorted. The
// file is served as it is, like Apache does; pages are sorted.
func TestUnsortedListing(t *testing.T) {
	f := build(t)
	legacy := []byte(`{"name": "ns/many", "tags": ["t3", "t1", "t0", "t4", "t2"]}`)
	if err := os.WriteFile(f.fx.TagsListPath(f.manyRepo), legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	base := start(t, f)
	tags := "/v2/" + f.manyRepo + "/tags/list"
	t.Run("whole file", func(t *testing.T) {
		want{status: http.StatusOK, body: legacy}.check(t, do(t, base, http.MethodGet, tags, nil))
	})
	t.Run("page", func(t *testing.T) {
		want{status: http.StatusOK, body: []byte(`{"name":"ns/many","tags":["t1","t2"]}`)}.check(t, do(t, base, http.MethodGet, tags+"?n=2&last=t0", nil))
	})
}

func TestRangeAndRevalidation(t *testing.T) {
	f := build(t)
	base := start(t, f)
	layer := "/v2/" + f.repo + "/blobs/" + f.layer.d.String()
	legacy := "/v2/" + f.repo + "/blobs/" + f.legacy.d.String()
	size := strconv.Itoa(len(f.layer.data))
	digestM := "/v2/" + f.repo + "/manifests/" + f.a.d.String()
	etag := func(d digest.Digest) string { return `"` + d.String() + `"` }
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   want
	}{
		{"range", layer, hdr("Range", "bytes=0-9"), want{status: http.StatusPartialContent, body: f.layer.data[:10], header: map[string]string{
			"Content-Range": "bytes 0-9/" + size, "Content-Length": "10", digestHeader: f.layer.d.String(), "Content-Encoding": ""}}},
		{"open range", layer, hdr("Range", "bytes=1000-"), want{status: http.StatusPartialContent, body: f.layer.data[1000:]}},
		{"legacy range", legacy, hdr("Range", "bytes=0-1"), want{status: http.StatusPartialContent, body: f.legacy.data[:2], header: map[string]string{"Content-Encoding": ""}}},
		{"range past the end", layer, hdr("Range", "bytes="+size+"-"), want{status: http.StatusRequestedRangeNotSatisfiable}},
		{"If-Range current", layer, hdr("Range", "bytes=0-9", "If-Range", etag(f.layer.d)), want{status: http.StatusPartialContent, body: f.layer.data[:10]}},
		{"If-Range stale", layer, hdr("Range", "bytes=0-9", "If-Range", `"other"`), want{status: http.StatusOK, body: f.layer.data}},
		{"blob If-None-Match", layer, hdr("If-None-Match", etag(f.layer.d)), want{status: http.StatusNotModified, body: []byte{}, header: map[string]string{
			digestHeader: f.layer.d.String(), "Cache-Control": cacheImmutable}}},
		{"digest If-None-Match", digestM, hdr("If-None-Match", etag(f.a.d)), want{status: http.StatusNotModified, body: []byte{}, header: map[string]string{
			digestHeader: f.a.d.String(), "Cache-Control": cacheImmutable}}},
		{"digest range", digestM, hdr("Range", "bytes=0-0"), want{status: http.StatusPartialContent, body: f.a.data[:1]}},
		// a tag keeps Range (Apache drops only the conditionals)
		{"tag range", "/v2/" + f.repo + "/manifests/single", hdr("Range", "bytes=0-0"), want{status: http.StatusPartialContent, body: f.a.data[:1]}},
		{"tag If-None-Match *", "/v2/" + f.repo + "/manifests/single", hdr("If-None-Match", "*"), byTag(f.a, "")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.want.check(t, do(t, base, http.MethodGet, tc.path, tc.header))
		})
	}
}

// TestTagRollback is serving-notes §3.12: Apache sent a tag with the
// validators of the digest file it named. After v1 moved to a newer
// manifest and back to an older one, If-Modified-Since with the newer
// manifest's date answered 304, and a cache kept the wrong manifest. A tag
// must answer 200 with the current bytes, whatever the client revalidates
// with.
func TestTagRollback(t *testing.T) {
	f := build(t)
	base := start(t, f)
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(f.fx.ManifestPath(f.repo, f.a.d), old, old); err != nil {
		t.Fatal(err)
	}
	tag := "/v2/" + f.repo + "/manifests/v1"
	f.putTag(t, f.repo, "v1", f.a)
	byTag(f.a, "").check(t, do(t, base, http.MethodGet, tag, nil))

	f.putTag(t, f.repo, "v1", f.b)
	seen := do(t, base, http.MethodGet, tag, nil)
	byTag(f.b, "").check(t, seen)
	// B's validators, as Apache would have sent them with the tag
	bByDigest := do(t, base, http.MethodGet, "/v2/"+f.repo+"/manifests/"+f.b.d.String(), nil)

	f.putTag(t, f.repo, "v1", f.a) // the rollback
	for _, h := range []http.Header{
		hdr("If-Modified-Since", bByDigest.header.Get("Last-Modified")),
		hdr("If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)),
		hdr("If-None-Match", bByDigest.header.Get("ETag")),
		hdr("If-None-Match", `"`+f.a.d.String()+`"`),
		hdr("If-None-Match", "*"),
	} {
		byTag(f.a, "").check(t, do(t, base, http.MethodGet, tag, h))
	}
}

// TestTagFlipConcurrent: while a writer flips a tag between an index and a
// manifest, every response's body hashes to its Docker-Content-Digest and
// is typed as that manifest (serving-notes §6): the tag file is read once
// and the chosen manifest opened once. The readers go on until they have
// seen the tag change under them wantFlips times, however slowly the
// machine lets the writer run, so the test never passes without racing.
func TestTagFlipConcurrent(t *testing.T) {
	f := build(t)
	base := start(t, f)
	f.putTag(t, f.repo, "flip", f.index)
	types := map[string]string{f.index.d.String(): f.index.mediaType, f.a.d.String(): f.a.mediaType}

	stop := make(chan struct{})
	var flips atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		targets := [][]tree.TagVariant{variants(f.a), variants(f.index, f.a)}
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			if err := f.fx.PutTag(f.repo, "flip", targets[i%2]); err != nil {
				writerDone <- err
				return
			}
			flips.Add(1)
		}
	}()

	const clients, wantFlips = 4, 100
	var (
		wg         sync.WaitGroup
		requests   atomic.Int64
		observed   atomic.Int64 // a client's answer differed from its last one
		mismatches atomic.Int64
		failures   atomic.Int64
	)
	deadline := time.Now().Add(2 * time.Minute)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := ""
			for observed.Load() < wantFlips && failures.Load() == 0 && time.Now().Before(deadline) {
				status, h, body, err := get(base+"/v2/"+f.repo+"/manifests/flip", acceptAll)
				requests.Add(1)
				if err != nil || status != http.StatusOK {
					failures.Add(1)
					t.Errorf("status %d, err %v", status, err)
					continue
				}
				d := h.Get(digestHeader)
				sum := sha256.Sum256(body)
				if "sha256:"+hex.EncodeToString(sum[:]) != d || types[d] != h.Get("Content-Type") {
					mismatches.Add(1)
				}
				if last != "" && d != last {
					observed.Add(1)
				}
				last = d
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests, %d flips written, %d observed", requests.Load(), flips.Load(), observed.Load())
	if mismatches.Load() != 0 || failures.Load() != 0 {
		t.Errorf("%d digest or type mismatches, %d failed requests", mismatches.Load(), failures.Load())
	}
	if observed.Load() < wantFlips {
		t.Errorf("the readers saw the tag change only %d times in 2 minutes, want %d: the test proved little", observed.Load(), wantFlips)
	}
}

// get is a plain GET for goroutines, which must not call t.Fatal.
func get(url, accept string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, body, err
}

// bigBlob adds a blob of several copyChunks to f.
func bigBlob(t testing.TB, f *fixture, size int) blob {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	b := newBlob(data)
	f.putBlob(t, f.repo, b)
	return b
}

// TestLargeBlob sends a blob of several chunks (each under its own write
// deadline), whole and in ranges across chunk boundaries.
func TestLargeBlob(t *testing.T) {
	f := build(t)
	b := bigBlob(t, f, 3*copyChunk+12345)
	base := start(t, f)
	path := "/v2/" + f.repo + "/blobs/" + b.d.String()
	servedBlob(b).check(t, do(t, base, http.MethodGet, path, nil))
	from, to := copyChunk-10, 2*copyChunk+10
	r := do(t, base, http.MethodGet, path, hdr("Range", fmt.Sprintf("bytes=%d-%d", from, to)))
	want{status: http.StatusPartialContent, body: b.data[from : to+1]}.check(t, r)
	r = do(t, base, http.MethodGet, path, hdr("Range", "bytes=0-0,100-199"))
	if r.status != http.StatusPartialContent || !strings.HasPrefix(r.header.Get("Content-Type"), "multipart/byteranges") {
		t.Errorf("multi-range: status %d, type %q", r.status, r.header.Get("Content-Type"))
	}
}

// TestStalledClientCut: a client that stops reading is disconnected after
// writeIdleTimeout, where a WriteTimeout-free server would wait forever.
// The client reads nothing until the handler has returned, which it can
// only do by giving up on the client.
func TestStalledClientCut(t *testing.T) {
	defer func(d time.Duration) { writeIdleTimeout = d }(writeIdleTimeout)
	writeIdleTimeout = 300 * time.Millisecond
	f := build(t)
	b := bigBlob(t, f, 64<<20) // far more than the socket buffers hold
	returned := make(chan struct{})
	h := New(f.root, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		close(returned)
	}))
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: x\r\n\r\n", f.repo, b.d)
	select { // stall
	case <-returned:
	case <-time.After(time.Minute):
		t.Fatal("the handler still writes to a client that has read nothing for a minute")
	}
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, conn)
	if err != nil {
		t.Fatalf("after %d bytes: %v (want the server to close the connection)", n, err)
	}
	if n >= int64(len(b.data)) {
		t.Errorf("got %d bytes: the stalled client was never cut", n)
	}
}

// TestListenAndServeShutdown: cancelling ctx stops accepting, lets the
// request in flight finish, and returns nil.
func TestListenAndServeShutdown(t *testing.T) {
	f := build(t)
	b := bigBlob(t, f, 16<<20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, f.root, slog.New(slog.DiscardHandler), Options{}) }()
	base := "http://" + ln.Addr().String()

	resp, err := client.Get(base + "/v2/" + f.repo + "/blobs/" + b.d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	cancel() // mid-download
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err != nil {
			break // refused: the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections a minute after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("in-flight download cut: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, b.data) {
		t.Errorf("in-flight download: %d bytes, want the %d of the blob", len(got), len(b.data))
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after shutdown")
	}
}

func TestListenAndServeBadAddress(t *testing.T) {
	f := build(t)
	if err := ListenAndServe(context.Background(), "127.0.0.1:-1", f.root, nil, Options{}); err == nil {
		t.Error("no error for an invalid address")
	}
}

// TestRequestLog: one Debug record per request with what an operator needs.
func TestRequestLog(t *testing.T) {
	f := build(t)
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(New(f.root, log))
	defer srv.Close()
	do(t, srv.URL, http.MethodGet, "/v2/"+f.repo+"/blobs/"+f.layer.d.String(), nil)
	srv.Close()
	mu.Lock()
	defer mu.Unlock()
	var rec struct {
		Level, Msg, Method, Path string
		Status                   int
		Bytes                    int64
		Duration                 int64
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log %q: %v", buf.Bytes(), err)
	}
	if rec.Level != "DEBUG" || rec.Method != http.MethodGet || rec.Status != http.StatusOK ||
		rec.Bytes != int64(len(f.layer.data)) || rec.Duration <= 0 || !strings.HasSuffix(rec.Path, f.layer.d.String()) {
		t.Errorf("log record %+v", rec)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/v2", "/v2", true},
		{"/v2/", "/v2/", true},
		{"//v2//a///b", "/v2/a/b", true},
		{"/v2/a/./b/.", "/v2/a/b/", true},
		{"/v2/a/../b", "/v2/b", true},
		{"/v2/a/..", "/v2/", true},
		{"/v2/..", "/", true},
		{"/..", "", false},
		{"/v2/../..", "", false},
		{"*", "", false},
		{"", "", false},
	} {
		got, ok := normalize(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("normalize(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestRequestBody: a read that carries a body or a Transfer-Encoding is
// refused with 400 and the connection closed, and so is every other
// request with one (405); an HTTP/1.0 request, whose Transfer-Encoding Go
// hides, is served and the connection closed. internal/contract's
// TestRequestFraming sends the same over one raw connection.
func TestRequestBody(t *testing.T) {
	f := build(t)
	h := New(f.root, nil)
	path := "/v2/" + f.repo + "/tags/list"
	tests := []struct {
		name, method, proto string
		body                string
		chunked             bool
		want                int
		code                distribution.ErrorCode
		close               bool
	}{
		{"GET", http.MethodGet, "HTTP/1.1", "", false, http.StatusOK, "", false},
		{"GET with a body", http.MethodGet, "HTTP/1.1", "hello", false, http.StatusBadRequest, distribution.Unsupported, true},
		{"GET chunked", http.MethodGet, "HTTP/1.1", "", true, http.StatusBadRequest, distribution.Unsupported, true},
		{"HEAD chunked", http.MethodHead, "HTTP/1.1", "", true, http.StatusBadRequest, "", true},
		{"POST with a body", http.MethodPost, "HTTP/1.1", "hello", false, http.StatusMethodNotAllowed, distribution.Unsupported, true},
		{"POST", http.MethodPost, "HTTP/1.1", "", false, http.StatusMethodNotAllowed, distribution.Unsupported, false},
		{"HTTP/1.0 GET", http.MethodGet, "HTTP/1.0", "", false, http.StatusOK, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, path, strings.NewReader(tc.body))
			r.Proto = tc.proto
			r.ProtoMajor, r.ProtoMinor, _ = http.ParseHTTPVersion(tc.proto)
			if tc.chunked {
				r.ContentLength, r.TransferEncoding = -1, []string{"chunked"}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			res := result{rec.Code, rec.Header(), rec.Body.Bytes()}
			want{status: tc.want, code: tc.code}.check(t, res)
			if got := rec.Header().Get("Connection") == "close"; got != tc.close {
				t.Errorf("Connection: %q, want close %v", rec.Header().Get("Connection"), tc.close)
			}
		})
	}
}

// TestCacheSeesEveryChange: the server keeps parsed type maps and headers
// by file identity, and must still answer every change at once — a tag
// replaced by rename (what writers do) and a type map or .htaccess
// rewritten in place with the same size (what an operator's editor or a
// foreign tool may do) — while not reading a file that did not change.
func TestCacheSeesEveryChange(t *testing.T) {
	f := build(t)
	h := New(f.root, nil).(*handler)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	base := srv.URL
	tag := "/v2/" + f.repo + "/manifests/cached"
	f.putTag(t, f.repo, "cached", f.a)
	byTag(f.a, "").check(t, do(t, base, http.MethodGet, tag, nil))
	f.putTag(t, f.repo, "cached", f.b) // rename: a new inode
	byTag(f.b, "").check(t, do(t, base, http.MethodGet, tag, nil))

	// Files changed within racyWindow are never kept; wait until the type
	// map is older, then it is read once and answered from memory.
	path := f.fx.TypeMapPath(f.repo, "cached")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if key, ok := identity(path); ok && time.Since(key.changed()) > racyWindow {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the type map never got older than racyWindow")
		}
	}
	byTag(f.b, "").check(t, do(t, base, http.MethodGet, tag, nil))
	loads := h.cache.loads.Load()
	byTag(f.b, "").check(t, do(t, base, http.MethodGet, tag, nil))
	if n := h.cache.loads.Load() - loads; n != 0 {
		t.Errorf("an unchanged tag read %d files again: not cached", n)
	}

	// In place, same size: only the times tell.
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := bytes.Replace(old, []byte(f.b.d.Encoded()), []byte(f.a.d.Encoded()), 1)
	if len(edited) != len(old) || bytes.Equal(edited, old) {
		t.Fatal("the edit should keep the size and change the content")
	}
	if err := os.WriteFile(path, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	byTag(f.a, "").check(t, do(t, base, http.MethodGet, tag, nil))

	hdr := f.fx.HeadersPath(f.repo, f.a.d)
	hb, err := os.ReadFile(hdr)
	if err != nil {
		t.Fatal(err)
	}
	other := bytes.Replace(hb, []byte(ociManifest), []byte(strings.Repeat("x", len(ociManifest))), 1)
	if err := os.WriteFile(hdr, other, 0o644); err != nil {
		t.Fatal(err)
	}
	r := do(t, base, http.MethodGet, "/v2/"+f.repo+"/manifests/"+f.a.d.String(), nil)
	if got := r.header.Get("Content-Type"); got != strings.Repeat("x", len(ociManifest)) {
		t.Errorf("after an in-place edit of the headers, Content-Type %q", got)
	}
}
