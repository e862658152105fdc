package contract_test

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// TestEmbedded holds the embedded Go server to the contract Apache meets.
func TestEmbedded(t *testing.T) {
	root := testserver.TempRoot(t)
	f := contract.Build(t, root)
	contract.Run(t, testserver.Embedded(t, root), f, contract.Embedded)
}

// TestEmbeddedMatchesApache sends the same raw requests to Apache (with our
// template) and to the embedded server over one tree, and wants the same
// status, headers and body from both, beyond what the contract pins down:
// path normalisation, odd methods, error bodies by location, broken type
// maps. Validators are compared by presence only: Apache's ETag is
// "<size>-<mtime>", ours the digest on content-addressed responses.
//
// Known divergences, deliberately left out: pagination (Apache ignores
// ?n=) and referrers filtering (Apache ignores ?artifactType=), 416, 400 and 500 bodies (Apache's are HTML, ours JSON or Go's
// text), multipart range boundaries, the headers Go drops on 304 and 412
// (Last-Modified, Accept-Ranges), a manifest without its .htaccess (we
// still send the digest), and a type map with no variant (Apache 406, us
// 500).
func TestEmbeddedMatchesApache(t *testing.T) {
	root := testserver.TempRoot(t)
	f := contract.Build(t, root)
	broken := buildBroken(t, root, f)
	apache := testserver.Apache(t, root)
	embedded := testserver.Embedded(t, root)

	m := "/v2/" + f.Repo + "/manifests/"
	b := "/v2/" + f.Repo + "/blobs/"
	ref := "/v2/" + f.Repo + "/referrers/"
	layer := b + f.Layer.Digest.String()
	accept := func(v string) string { return "Accept: " + v }
	type request struct{ line, header string }
	requests := []request{
		{"GET /v2/", ""}, {"HEAD /v2", ""}, {"GET /v2/?x=1", ""},
		{"GET " + m + contract.TagMulti, ""},
		{"GET " + m + contract.TagMulti, accept(contract.MediaTypeDockerList)},
		{"HEAD " + m + contract.TagMulti, accept(contract.MediaTypeDockerList)},
		{"GET " + m + contract.TagMulti, accept(contract.MediaTypeOCIManifest)},
		{"GET " + m + contract.TagSingle, accept(contract.MediaTypeDockerManifest)},
		{"GET " + m + contract.TagSingle, "Range: bytes=0-9"},
		{"GET " + m + contract.TagSingle, "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"},
		{"GET " + m + f.AMD64.Digest.String(), ""},
		{"GET " + m + f.AMD64.Digest.String(), "Range: bytes=0-9"},
		{"GET " + m + f.AMD64.Digest.String() + "/", ""},
		{"GET " + m + f.AMD64.Digest.String() + "/index.json", ""},
		{"GET " + m + "sha256:abc", ""}, {"GET " + m + "v9", ""}, {"GET " + m + contract.TagV9GZ, ""},
		{"GET " + m, ""}, {"GET /v2/" + f.Repo + "/manifests", ""},
		{"GET /v2/NS/app/manifests/" + contract.TagSingle, ""},
		{"GET " + layer, ""}, {"HEAD " + layer, ""},
		{"GET " + layer, "Range: bytes=5-"},
		{"GET " + layer + "x", ""}, {"GET " + b + "sha256:abc", ""},
		{"GET /v2/NS/app/blobs/" + f.Layer.Digest.String(), ""},
		{"GET " + m + "x/blobs/" + f.Layer.Digest.String(), ""},
		{"GET /v2/" + f.Repo + "/tags/list", ""}, {"HEAD /v2/" + f.Repo + "/tags/list", ""},
		{"GET /v2/" + f.Repo + "/tags/list/", ""}, {"GET /v2/ns/tags/list", ""},
		{"GET /v2/_catalog", ""}, {"GET /v2/_catalog/", ""},
		{"GET /v2//ns//app/tags/list", ""}, {"GET /v2/ns/x/../app/./tags/list", ""},
		{"GET /v2/ns/app%2ftags/list", ""}, {"GET /v2/ns/app/tags/%6cist", ""},
		{"GET /v2/index.json/tags/list", ""}, {"GET /v2/index.json", ""},
		{"GET " + ref + f.AMD64.Digest.String(), ""}, {"HEAD " + ref + f.AMD64.Digest.String(), ""},
		{"GET " + ref + f.ARM64.Digest.String(), ""}, {"GET " + ref + f.AMD64.Digest.String(), "Range: bytes=0-9"},
		{"GET " + ref + f.AMD64.Digest.String(), "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT"},
		{"GET " + ref + "sha256:abc", ""}, {"HEAD " + ref + "sha256:abc", ""}, {"GET " + ref, ""},
		{"GET " + ref + f.AMD64.Digest.String() + "/", ""}, {"GET /v2/" + f.Repo + "/referrers", ""},
		{"GET /v2/ns/nope/referrers/" + f.AMD64.Digest.String(), ""}, {"GET /v2/NS/app/referrers/" + f.AMD64.Digest.String(), ""},
		{"GET " + ref + "." + f.AMD64.Digest.String() + "123456", ""},
		{"OPTIONS *", ""}, {"OPTIONS /v2/", ""}, {"PUT /foo", ""}, {"TRACE /v2/", ""}, {"DELETE " + layer, ""},
		{"GET /foo", ""}, {"GET /", ""}, {"GET /_errors/" + tree.ErrorFile(distribution.ErrBlobUnknown), ""},
	}
	for _, tag := range []string{"missing", "same", "tie", "legacy"} {
		requests = append(requests,
			request{"GET " + broken + tag, ""},
			request{"GET " + broken + tag, accept(contract.MediaTypeOCIManifest)})
	}
	requests = append(requests, request{"GET /v2/ns/broken/blobs/" + f.Layer.Digest.String(), ""})

	for _, r := range requests {
		t.Run(r.line+" "+r.header, func(t *testing.T) {
			want, err := rawRequest(apache, r.line, r.header)
			if err != nil {
				t.Fatalf("Apache: %v", err)
			}
			got, err := rawRequest(embedded, r.line, r.header)
			if err != nil {
				t.Fatalf("embedded: %v", err)
			}
			if got != want {
				t.Errorf("embedded server:\n%s\nApache:\n%s", got, want)
			}
		})
	}
}

// buildBroken writes ns/broken, a repository of the damage old trees and
// hand edits leave, and returns its manifests URL prefix.
func buildBroken(t *testing.T, root *tree.Root, f *contract.Fixture) string {
	t.Helper()
	const repo = "ns/broken"
	fx := tree.Fixture(root)
	for _, m := range []contract.Manifest{f.AMD64, f.Index} {
		if err := fx.PutManifest(repo, m.Digest, m.MediaType, m.Data); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Dir(fx.ManifestDir(repo, f.AMD64.Digest))
	record := func(m contract.Manifest) string {
		return "Content-Type: " + m.MediaType + "\nURI: " + m.Digest.String() + "/index.json\n\n"
	}
	maps := map[string]string{
		// the manifest a map names is gone
		"missing": "Content-Type: " + contract.MediaTypeOCIManifest + "\nURI: sha256:" + strings.Repeat("0", 64) + "/index.json\n\n",
		// two variants of one type: no Vary
		"same": record(f.AMD64) + strings.Replace(record(f.Index), contract.MediaTypeOCIIndex, contract.MediaTypeOCIManifest, 1),
		// TripleO's maps have no qs: the smaller file wins (serving-notes §3.1)
		"tie": "URI: tie\n\n" + record(f.Index) + record(f.AMD64),
	}
	for tag, data := range maps {
		if err := os.WriteFile(filepath.Join(dir, tag+".type-map"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// a legacy tag symlink, dangling as in a moved tree; never followed
	if err := os.Symlink("/var/lib/image-serve/v2/"+repo+"/manifests/"+f.AMD64.Digest.String(), filepath.Join(dir, "legacy")); err != nil {
		t.Fatal(err)
	}
	// a directory where a blob should be
	if err := os.MkdirAll(fx.BlobPath(repo, f.Layer.Digest), 0o755); err != nil {
		t.Fatal(err)
	}
	return "/v2/" + repo + "/manifests/"
}

// rawRequest sends "METHOD target" with an optional header line exactly as
// written (no client cleans the path) and renders the answer for
// comparison: status, sorted headers without the per-server ones, and the
// body.
func rawRequest(baseURL, line, header string) (string, error) {
	host := strings.TrimPrefix(baseURL, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if header != "" {
		header += "\r\n"
	}
	if _, err := fmt.Fprintf(c, "%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n", line, host, header); err != nil {
		return "", err
	}
	method, _, _ := strings.Cut(line, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d\n", resp.StatusCode)
	for _, k := range slices.Sorted(maps.Keys(resp.Header)) {
		v := strings.Join(resp.Header[k], ", ")
		switch k {
		case "Date", "Server", "Connection", "Keep-Alive":
			continue
		case "Etag", "Last-Modified":
			v = "(present)"
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	fmt.Fprintf(&b, "body %q", body)
	return b.String(), nil
}
