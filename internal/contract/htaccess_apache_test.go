package contract

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// TestPlantedHtaccessApache plants .htaccess files where Apache would
// read them under "AllowOverride FileInfo" on v2/ — v2/ itself, a
// repository, blobs/, tags/, manifests/, a manifest's own directory — with
// what an attacker who can write the tree would put there: a
// Content-Encoding on layers (clients gunzip them and fail the digest), a
// cookie, a redirect, a forced type, and mod_status's handler, which
// lists the live requests of every vhost (Apache runs here with
// mod_status loaded, as Debian's and RHEL's system httpd do). Each row
// gets a tree and an Apache of its own and checks every request of the
// tree: outside the manifests' own directories nothing planted has any
// effect, and a directive other than Header in a manifest's headers file
// is a 500 for that manifest alone, never obeyed. Every manifest keeps
// its Content-Type and Docker-Content-Digest from its headers file at
// repository depths 1, 2, 3, 4 and the deepest the grammar allows, and
// so do TripleO's three-line headers files; the fixture's per-repository
// manifests/.htaccess of TripleO's is ignored without a tag lost.
func TestPlantedHtaccessApache(t *testing.T) {
	setHandler := "SetHandler server-status\n"
	rows := []htRow{
		{name: "Content-Encoding in blobs", plant: func(h *htTree) []htManifest {
			h.plant(filepath.Dir(h.fx.BlobPath(h.f.Repo, h.f.Layer.Digest)), "Header set Content-Encoding gzip\n")
			return nil
		}},
		{name: "Set-Cookie in v2", plant: func(h *htTree) []htManifest {
			h.plant(h.fx.V2Dir(), "Header always set Set-Cookie x=1\nHeader set Set-Cookie y=1\n")
			return nil
		}},
		{name: "server-status in v2", plant: func(h *htTree) []htManifest {
			h.plant(h.fx.V2Dir(), setHandler)
			return nil
		}},
		{name: "server-status in a repository", plant: func(h *htTree) []htManifest {
			h.plant(h.fx.RepoDir(h.f.Repo), setHandler)
			return nil
		}},
		{name: "server-status in blobs", plant: func(h *htTree) []htManifest {
			h.plant(filepath.Dir(h.fx.BlobPath(h.f.Repo, h.f.Layer.Digest)), setHandler)
			return nil
		}},
		{name: "server-status in manifests", plant: func(h *htTree) []htManifest {
			h.plant(filepath.Dir(h.fx.TypeMapPath(h.f.Repo, TagSingle)), setHandler)
			return nil
		}},
		{name: "server-status in tags", plant: func(h *htTree) []htManifest {
			h.plant(filepath.Dir(h.fx.TagsListPath(h.f.Repo)), setHandler)
			return nil
		}},
		{name: "Redirect in tags", plant: func(h *htTree) []htManifest {
			h.plant(filepath.Dir(h.fx.TagsListPath(h.f.Repo)), "Redirect /v2/ http://evil.example/\n")
			return nil
		}},
		{name: "server-status everywhere in a depth 4 repository", plant: func(h *htTree) []htManifest {
			repo := h.byDepth(4).repo
			for dir := h.fx.RepoDir(repo); dir != h.fx.V2Dir(); dir = filepath.Dir(dir) {
				h.plant(dir, setHandler)
			}
			for _, dir := range []string{
				filepath.Dir(h.fx.BlobPath(repo, h.f.Layer.Digest)), filepath.Dir(h.fx.TypeMapPath(repo, "latest")),
				filepath.Dir(h.fx.TagsListPath(repo)), filepath.Dir(h.fx.ReferrersPath(repo, h.f.Layer.Digest)),
			} {
				h.plant(dir, setHandler)
			}
			return nil
		}},
		// a system httpd.conf that allows overrides everywhere: the tree's
		// <Directory> takes them back, the directive list too
		{name: "server-status in v2 under a server-wide AllowOverride", plant: func(h *htTree) []htManifest {
			h.plant(h.fx.V2Dir(), setHandler)
			h.plant(filepath.Dir(h.fx.BlobPath(h.f.Repo, h.f.Layer.Digest)), "SetHandler server-status\nHeader set Content-Encoding gzip\n")
			return nil
		}, apache: []testserver.ApacheOption{testserver.WithServerConfig(
			"<Directory />\n    AllowOverride FileInfo\n    AllowOverrideList SetHandler Header Redirect\n</Directory>")}},
		{name: "server-status in a manifest's headers", plant: func(h *htTree) []htManifest {
			return h.damage(h.docker(), setHandler)
		}},
		{name: "ForceType in a manifest's headers", plant: func(h *htTree) []htManifest {
			return h.damage(h.docker(), "ForceType text/html\n")
		}},
		{name: "Redirect in a manifest's headers", plant: func(h *htTree) []htManifest {
			return h.damage(h.docker(), "Redirect /v2/ http://evil.example/\n")
		}},
	}
	// a manifest's headers are read at every depth, and nothing but Header
	// is taken there
	for _, depth := range htDepths {
		rows = append(rows, htRow{name: fmt.Sprintf("ForceType in a manifest's headers at depth %d", depth), plant: func(h *htTree) []htManifest {
			return h.damage(h.byDepth(depth), "ForceType text/html\n")
		}})
	}
	runHtRows(t, rows)
}

// TestPlantedHeaderApache shows what Header directives added to a
// manifest's headers file still do, since Apache takes that directive
// there: whatever they set is sent with that manifest, by digest and by
// tag, and with nothing else, not even the same manifest in another
// repository. An expression reading a file (which httpd before 2.4.68
// evaluated in .htaccess files with the server's privileges) is refused:
// a 500 for that manifest, and none of the file's bytes in any response.
func TestPlantedHeaderApache(t *testing.T) {
	secretFile := filepath.Join(testserver.SharedTempDir(t, "image-serve-outside-"), "secret")
	writeFile(t, secretFile, []byte(secret))
	runHtRows(t, []htRow{
		{name: "Set-Cookie in a manifest's headers", plant: func(h *htTree) []htManifest {
			return h.damage(h.docker(), "Header set Set-Cookie x=1\n")
		}, changed: func(served []check) []check {
			return append(served, header("Set-Cookie", "x=1"), noHeader("Content-Encoding"), noHeader("Location"), notStatusPage)
		}},
		{name: "a file read in a manifest's headers", plant: func(h *htTree) []htManifest {
			return h.damage(h.docker(), fmt.Sprintf("Header set X-Leak \"expr=%%{base64:%%{file:%s}}\"\n", secretFile))
		}},
	})
}

// htRow plants files into a tree (htTree) and returns the manifests whose
// own headers files it changed.
type htRow struct {
	name  string
	plant func(h *htTree) (changed []htManifest)
	// changed is what the requests of a changed manifest get, given what
	// they would get otherwise; nil is a 500, with nothing planted obeyed.
	changed func(served []check) []check
	// apache are options of the row's Apache beyond mod_status
	apache []testserver.ApacheOption
}

// runHtRows runs each row against a tree and an Apache of its own, with
// mod_status loaded: every request of the tree (htTree.requests).
func runHtRows(t *testing.T, rows []htRow) {
	for _, row := range rows {
		t.Run(strings.ReplaceAll(row.name, "/", "_"), func(t *testing.T) {
			h := buildHtTree(t)
			changed := row.plant(h)
			c := newClient(testserver.Apache(t, h.root, append(row.apache, testserver.WithServerStatus())...))
			for _, tc := range h.requests(changed, row.changed) {
				t.Run(strings.ReplaceAll(tc.name, "/", "_"), func(t *testing.T) {
					r, err := c.do(tc.req)
					if err != nil {
						t.Fatalf("%s: %v", tc.req, err)
					}
					for _, want := range append(tc.want, noSecret, noSecretBase64) {
						if err := want(r); err != nil {
							t.Errorf("%s: %v", tc.req, err)
						}
					}
				})
			}
		})
	}
}

// htDepths are the repository depths the test serves a manifest at: the
// fixture's repository is ns/app, depth 2.
var htDepths = []int{1, 2, 3, 4, distribution.MaxRepoDepth}

// htTree is the contract's fixture with a repository at each of htDepths,
// and TripleO's three-line headers file on one manifest.
type htTree struct {
	t    *testing.T
	root *tree.Root
	fx   *tree.Fixtures // root's: the rows plant their files by its paths
	f    *Fixture
	deep []htManifest // one per htDepths, in order
}

// htManifest is a manifest of the tree and the tags that name it.
type htManifest struct {
	repo string
	m    Manifest
	tags []string
}

func buildHtTree(t *testing.T) *htTree {
	t.Helper()
	root := testserver.TempRoot(t)
	h := &htTree{t: t, root: root, fx: tree.Fixture(root), f: Build(t, root)}
	for _, depth := range htDepths {
		repo := map[int]string{1: "app", 2: h.f.Repo, 3: "a/b/c", 4: "a/b/c/d"}[depth]
		if repo == "" {
			repo = strings.Repeat("z/", depth-1) + "z"
		}
		if repo == h.f.Repo {
			h.deep = append(h.deep, htManifest{repo, h.f.AMD64, []string{TagSingle}})
			continue
		}
		// a type of its own at each depth, so that a header file read at
		// the wrong depth would show
		mt, ct := MediaTypeOCIManifest, MediaTypeOCIConfig
		if depth%2 == 0 {
			mt, ct = MediaTypeDockerManifest, MediaTypeDockerConfig
		}
		putBlob(t, root, repo, h.f.Layer)
		cfg := putBlob(t, root, repo, blob(mustJSON(t, map[string]any{"architecture": "amd64", "os": "linux", "repo": repo})))
		m := manifest(t, mt, imageManifest(mt, descriptor(ct, cfg), descriptor(MediaTypeOCILayer, h.f.Layer)))
		if err := h.fx.PutManifest(repo, m.Digest, m.MediaType, m.Data); err != nil {
			t.Fatal(err)
		}
		if depth == distribution.MaxRepoDepth {
			// by digest only: a name this long cannot be tagged, as its
			// lock file's name (repo-<name>) is over NAME_MAX
			h.deep = append(h.deep, htManifest{repo, m, nil})
			continue
		}
		putTag(t, root, repo, "latest", tree.TagVariant{Digest: m.Digest, MediaType: m.MediaType})
		h.deep = append(h.deep, htManifest{repo, m, []string{"latest"}})
	}
	// TripleO's headers: a third line, an ETag (docs/legacy-trees.md)
	arm := h.f.ARM64
	writeFile(t, h.fx.HeadersPath(h.f.Repo, arm.Digest), fmt.Appendf(nil,
		"Header set Content-Type %q\nHeader set Docker-Content-Digest %q\nHeader set ETag %q\n", arm.MediaType, arm.Digest, arm.Digest))
	backdate(t, root.Dir())
	return h
}

func (h *htTree) byDepth(depth int) htManifest {
	for i, d := range htDepths {
		if d == depth {
			return h.deep[i]
		}
	}
	h.t.Fatalf("no repository of depth %d", depth)
	return htManifest{}
}

// docker is the fixture's Docker manifest, which only its own tags name.
func (h *htTree) docker() htManifest {
	return htManifest{h.f.Repo, h.f.Docker, []string{TagDocker, TagV9GZ}}
}

// plant writes an .htaccess holding content into dir.
func (h *htTree) plant(dir, content string) {
	h.t.Helper()
	writeFile(h.t, filepath.Join(dir, tree.Names().HeadersFile), []byte(content))
}

// damage adds directives to the headers file of m, and returns m as the
// manifest whose requests fail.
func (h *htTree) damage(m htManifest, directives string) []htManifest {
	h.t.Helper()
	p := h.fx.HeadersPath(m.repo, m.m.Digest)
	old, err := os.ReadFile(p)
	if err != nil {
		h.t.Fatal(err)
	}
	writeFile(h.t, p, append(old, directives...))
	return []htManifest{m}
}

// requests are every kind of request of the tree, each as the contract
// answers it with nothing planted obeyed (untouched); those of the changed
// manifests get what change makes of that, and a 500 if change is nil.
func (h *htTree) requests(changed []htManifest, change func(served []check) []check) []testCase {
	f := h.f
	var cs []testCase
	if change == nil {
		change = func([]check) []check { return append([]check{status(http.StatusInternalServerError)}, untouched...) }
	}
	serve := func(m htManifest) {
		want := func(served []check) []check { return append(served, untouched...) }
		name := m.repo
		if isChanged(m, changed) {
			want, name = change, "changed "+name
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			p := "/v2/" + m.repo + "/manifests/"
			cs = append(cs, testCase{name: name + " by digest " + method, req: request{method: method, path: p + m.m.Digest.String()},
				want: want(servedByDigest(method, m.m))})
			for _, tag := range m.tags {
				cs = append(cs, testCase{name: name + ":" + tag + " " + method, req: request{method: method, path: p + tag},
					want: want(servedByTag(method, m.m))})
			}
		}
	}
	manifests := append([]htManifest{
		{f.Repo, f.ARM64, nil}, // TripleO's headers
		{f.Repo, f.Index, []string{TagMulti}},
		h.docker(),
		// the same manifest in another directory: damage is per directory
		{f.Repos[1], f.Docker, []string{"latest"}},
	}, h.deep...)
	var other []testCase
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		other = append(other,
			testCase{name: "blob " + method, req: request{method: method, path: f.blobPath(f.Layer.Digest)}, want: servedBlob(method, f.Layer)},
			testCase{name: "legacy blob " + method, req: request{method: method, path: f.blobPath(f.LegacyLayer.Digest)},
				want: servedBlob(method, f.LegacyLayer)},
			testCase{name: "depth 4 blob " + method, req: request{method: method, path: "/v2/" + h.byDepth(4).repo + "/blobs/" + f.Layer.Digest.String()},
				want: servedBlob(method, f.Layer)},
		)
	}
	other = append(other,
		get("ping", "/v2/", nil, status(http.StatusOK), header("Content-Type", "application/json"), body([]byte("{}"))),
		get("tags/list", "/v2/"+f.Repo+"/tags/list", nil, status(http.StatusOK), header("Content-Type", "application/json"), tagsList(f.Repo, f.Tags)),
		get("depth 4 tags/list", "/v2/"+h.byDepth(4).repo+"/tags/list", nil, status(http.StatusOK), tagsList(h.byDepth(4).repo, []string{"latest"})),
		get("_catalog", "/v2/_catalog", nil, status(http.StatusOK), header("Content-Type", "application/json"), catalogHas(h.byDepth(4).repo)),
		get("referrers", f.referrersPath(f.AMD64.Digest.String()), nil, servedReferrers(http.MethodGet, f.Referrers)...),
		get("unknown blob", f.blobPath(blob([]byte("none")).Digest), nil, jsonError(http.MethodGet, http.StatusNotFound, distribution.ErrBlobUnknown.Code)...),
		get("headers file", "/v2/"+f.Repo+"/manifests/"+f.Docker.Digest.String()+"/.htaccess", nil,
			jsonError(http.MethodGet, http.StatusNotFound, anyCode)...),
	)
	for _, tc := range other {
		tc.want = append(tc.want, untouched...)
		cs = append(cs, tc)
	}
	for _, m := range manifests {
		serve(m)
	}
	return cs
}

func isChanged(m htManifest, changed []htManifest) bool {
	for _, d := range changed {
		if d.repo == m.repo && d.m.Digest == m.m.Digest {
			return true
		}
	}
	return false
}

// untouched are what the planted files would add to a response, and it
// must not carry.
var untouched = []check{noHeader("Set-Cookie"), noHeader("Content-Encoding"), noHeader("Location"), notStatusPage}

// notStatusPage fails on mod_status's page, and on any other forced
// text/html answer of 200.
func notStatusPage(r *response) error {
	if bytes.Contains(r.body, []byte("Server Status")) || r.status == http.StatusOK && strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		return fmt.Errorf("served mod_status's page (or a forced text/html): %s, %.200q", r.header.Get("Content-Type"), r.body)
	}
	return nil
}

// noSecretBase64 checks that no header carries the secret file's bytes
// (noSecret checks the body) in the base64 of a planted expression.
func noSecretBase64(r *response) error {
	enc := base64.StdEncoding.EncodeToString([]byte(secret))
	for k, vs := range r.header {
		for _, v := range vs {
			if strings.Contains(v, enc) || strings.Contains(v, "SECRET") {
				return fmt.Errorf("%s: %q carries a file outside the tree", k, v)
			}
		}
	}
	return nil
}
