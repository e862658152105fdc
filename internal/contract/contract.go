// Package contract is the HTTP contract every server of a static registry
// tree must meet, Apache, nginx or the embedded Go server alike: one table
// of requests and the status, headers and bodies real clients (skopeo,
// crane, containerd, the OCI conformance suites) need in answer. The rows
// come from serving-facts §1; each is a measured client requirement or a
// predecessor bug that must not come back.
//
// A server test builds the fixture into a tree, serves the tree, and runs
// the suite against it:
//
//	root := testserver.TempRoot(t)
//	f := contract.Build(t, root)
//	contract.Run(t, testserver.Apache(t, root), f)
package contract

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/catalog"
	"github.com/opencontainers/go-digest"
)

// testCase is one row of the contract.
type testCase struct {
	name string
	req  request
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
}

// Run checks the server at baseURL, which serves the tree f was built in,
// against every row of the contract, each as a subtest named for its row
// ("/" becomes "_", so that -run can select one) and failing with the
// request it sent.
func Run(t *testing.T, baseURL string, f *Fixture) {
	c := newClient(baseURL)
	for _, tc := range cases(f) {
		t.Run(strings.ReplaceAll(tc.name, "/", "_"), func(t *testing.T) {
			req := tc.req
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
	if val == "" {
		t.Fatalf("%s: no %s to send as %s", first, from, v.header)
	}
	h := req.header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set(v.header, val)
	req.header = h
	return req
}

func cases(f *Fixture) []testCase {
	var cs []testCase
	for _, group := range [][]testCase{
		pingCases(),
		tagCases(f),
		digestCases(f),
		negotiationCases(f),
		blobCases(f),
		listCases(f),
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

// Accept headers of real clients on manifest requests (serving-facts §1.8).
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
func tagCases(f *Fixture) []testCase {
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
	// to an older file (serving-facts §3.12).
	for _, h := range []string{"If-None-Match", "If-Modified-Since"} {
		cs = append(cs, testCase{
			name:       "tag single ignores " + h,
			req:        request{method: http.MethodGet, path: f.manifestPath(TagSingle)},
			revalidate: &revalidation{path: f.manifestPath(f.AMD64.Digest.String()), header: h},
			want:       servedByTag(http.MethodGet, f.AMD64),
		})
	}
	cs = append(cs, get("tag single ignores If-None-Match *", f.manifestPath(TagSingle),
		http.Header{"If-None-Match": {"*"}}, servedByTag(http.MethodGet, f.AMD64)...))
	return cs
}

// digestCases: by digest a manifest is immutable and served directly, not
// by a 301 to its directory (serving-facts §3.11).
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
// that accepts it, whatever the sizes (serving-facts §3.1), the amd64 child
// to clients that take only image manifests, and a JSON 406 to clients
// that take nothing the tag has.
func negotiationCases(f *Fixture) []testCase {
	multi := f.manifestPath(TagMulti)
	index := servedByTag(http.MethodGet, f.Index)
	cs := []testCase{
		get("multi Accept skopeo", multi, accept(acceptSkopeo), index...),
		get("multi Accept crane", multi, accept(acceptCrane), index...),
		get("multi Accept containerd", multi, accept(acceptContainerd), index...),
		get("multi Accept */*", multi, accept("*/*"), index...),
		get("multi no Accept", multi, nil, index...),
		get("multi Accept manifest and index;q=0.9", multi,
			accept(MediaTypeOCIManifest+", "+MediaTypeOCIIndex+";q=0.9"), index...),
		get("multi Accept OCI manifest only", multi, accept(MediaTypeOCIManifest),
			servedByTag(http.MethodGet, f.AMD64)...),
		get("multi Accept Docker list only", multi, accept(MediaTypeDockerList),
			jsonError(http.MethodGet, http.StatusNotAcceptable, catalog.ManifestUnknown)...),
		get("single Accept Docker v2 only", f.manifestPath(TagSingle), accept(MediaTypeDockerManifest),
			jsonError(http.MethodGet, http.StatusNotAcceptable, catalog.ManifestUnknown)...),
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
		// one without */* (serving-facts §3.7)
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

// errorCases: unknown content is a JSON 404 with the right code, and the
// registry is read-only.
func errorCases(f *Fixture) []testCase {
	unknown := digest.FromString("not in the fixture")
	cs := getAndHead("unknown blob", f.blobPath(unknown), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, catalog.BlobUnknown)
	})
	cs = append(cs, getAndHead("unknown manifest digest", f.manifestPath(unknown.String()), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, catalog.ManifestUnknown)
	})...)
	// v9.gz is a tag; MultiViews made v9 one too (serving-facts §3.6)
	cs = append(cs, getAndHead("unknown tag v9", f.manifestPath("v9"), nil, func(m string) []check {
		return jsonError(m, http.StatusNotFound, catalog.ManifestUnknown)
	})...)
	cs = append(cs,
		get("unknown repo manifest", "/v2/ns/nope/manifests/"+TagSingle, nil,
			jsonError(http.MethodGet, http.StatusNotFound, catalog.ManifestUnknown)...),
		get("unknown repo tags/list", "/v2/ns/nope/tags/list", nil,
			jsonError(http.MethodGet, http.StatusNotFound, catalog.NameUnknown)...),
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
			want: jsonError(r.method, http.StatusMethodNotAllowed, catalog.Unsupported)})
	}
	return cs
}

// hiddenCases: only API routes are addressable. Everything else in the
// tree (headers, type maps, the files behind digests, temporary files,
// directories, our own state) is a JSON 404 (serving-facts §3.13).
func hiddenCases(f *Fixture) []testCase {
	dg := f.AMD64.Digest.String()
	paths := []string{
		f.manifestPath(".htaccess"),
		f.manifestPath(dg + "/.htaccess"),
		f.manifestPath(dg + "/index.json"),
		f.manifestPath(dg + "/"),
		f.manifestPath(TagSingle + ".type-map"),
		"/v2/" + f.Repo + "/blobs/." + f.Layer.Digest.String() + "123456",
		f.blobPath(f.LegacyLayer.Digest) + ".gz",
		"/v2/" + f.Repo + "/blobs/",
		"/v2/" + f.Repo + "/blobs",
		"/v2/" + f.Repo + "/",
		"/v2/" + f.Repo + "/tags/",
		"/.image-serve/errors/" + catalog.ErrBlobUnknown.File(),
		"/_errors/" + catalog.ErrBlobUnknown.File(),
		"/v2/index.json",
		"/",
	}
	var cs []testCase
	for _, p := range paths {
		cs = append(cs, get("not served "+p, p, nil, jsonError(http.MethodGet, http.StatusNotFound, anyCode)...))
	}
	return cs
}
