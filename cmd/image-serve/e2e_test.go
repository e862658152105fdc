package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// exported is an image the tree serves, with what its source served.
type exported struct {
	repo, tag string
	digest    string // the tag's manifest as the source has it
	raw       []byte
	mediaType string
	children  map[string]string // "linux/arm64" -> digest, for indexes
}

func (e exported) isIndex() bool { return len(e.children) > 0 }

// exportFixtures fills a registry with every kind of manifest, exports
// each through the binary, and also exports the bundled oci: layout and
// docker-archive.
func exportFixtures(t *testing.T, tree *tree.Root) []exported {
	root := tree.Dir()
	reg := testregistry.Start(t)
	amd := testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 4096, types.OCILayer))
	arm := testregistry.OCIImage(t, "arm64", testregistry.Layer(t, 4096, types.OCILayer))
	s1raw, s1layer := testregistry.Schema1(t, "ns/schema1", "v1")
	artRaw, artBlobs := testregistry.Artifact(t)
	dockerChild := func(arch string) v1.Image {
		return testregistry.DockerImageFor(t, arch, testregistry.Layer(t, 1000, types.DockerLayer))
	}
	pushed := map[string]testregistry.Pushed{
		"ns/docker":   reg.PushImage(t, "ns/docker:v1", testregistry.DockerImage(t, testregistry.Layer(t, 8192, types.DockerLayer))),
		"ns/oci":      reg.PushImage(t, "ns/oci:v1", amd),
		"ns/list":     reg.PushIndex(t, "ns/list:v1", types.DockerManifestList, map[string]v1.Image{"amd64": dockerChild("amd64"), "arm64": dockerChild("arm64")}),
		"ns/index":    reg.PushIndex(t, "ns/index:v1", types.OCIImageIndex, map[string]v1.Image{"amd64": amd, "arm64": arm}),
		"ns/schema1":  reg.PushRaw(t, "ns/schema1:v1", distribution.MediaTypeDockerSchema1, s1raw, s1layer),
		"ns/artifact": reg.PushRaw(t, "ns/artifact:v1", distribution.MediaTypeOCIManifest, artRaw, artBlobs...),
	}
	var out []exported
	for repo, p := range pushed {
		mustRun(t, "--root", root, "-q", "export", "--src-tls-verify=false", "docker://"+p.Ref)
		out = append(out, exported{repo: repo, tag: "v1", digest: p.Digest, raw: p.Raw, mediaType: p.MediaType, children: p.Children})
	}
	mustRun(t, "--root", root, "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello-oci:latest")
	mustRun(t, "--root", root, "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/hello-archive:v1")
	out = append(out, fromLayout(t, "demo/hello-oci", "latest"), fromArchive(t, tree, "demo/hello-archive", "v1"))
	return out
}

// fromLayout reads the bundled OCI layout's index as the expected result.
func fromLayout(t *testing.T, repo, tag string) exported {
	var idx struct {
		Manifests []v1.Descriptor `json:"manifests"`
	}
	readJSON(t, "../../testdata/hello-oci/index.json", &idx)
	top := idx.Manifests[0]
	raw := readFile(t, filepath.Join("../../testdata/hello-oci/blobs/sha256", top.Digest.Hex))
	var index v1.IndexManifest
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	children := map[string]string{}
	for _, m := range index.Manifests {
		children[m.Platform.OS+"/"+m.Platform.Architecture] = m.Digest.String()
	}
	return exported{repo: repo, tag: tag, digest: top.Digest.String(), raw: raw, mediaType: string(top.MediaType), children: children}
}

// fromArchive takes the synthesised manifest as the tree has it: a
// docker-archive has no manifest of its own.
func fromArchive(t *testing.T, root *tree.Root, repo, tag string) exported {
	r := mustRun(t, "--root", root.Dir(), "list", repo)
	if strings.TrimSpace(r.stdout) != tag {
		t.Fatalf("list %s: %q, want %q", repo, r.stdout, tag)
	}
	vs, err := tree.Fixture(root).TagVariants(repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, tree.Fixture(root).ManifestPath(repo, vs[0].Digest))
	return exported{repo: repo, tag: tag, digest: vs[0].Digest.String(), raw: raw, mediaType: distribution.MediaTypeDockerManifest}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// TestEndToEnd exports every kind of image and pulls each, by tag and by
// digest, with the skopeo binary and go-containerregistry, through real
// Apache, nginx and the embedded server.
func TestEndToEnd(t *testing.T) {
	root := testserver.TempRoot(t)
	images := exportFixtures(t, root)
	servers := threeServers(t, root)
	for srvName, base := range servers {
		host := strings.TrimPrefix(base, "http://")
		t.Run(srvName, func(t *testing.T) {
			for _, img := range images {
				t.Run(img.repo, func(t *testing.T) {
					checkSkopeo(t, host, img)
					checkGGCR(t, host, img)
					checkHeads(t, base, img)
				})
			}
			checkCatalog(t, host, images)
		})
	}
}

// threeServers serves root with Apache and nginx, configured as the CLI
// renders their configurations, and the embedded server: their base
// URLs by name.
func threeServers(t *testing.T, root *tree.Root) map[string]string {
	t.Helper()
	return map[string]string{
		"apache":   testserver.Apache(t, root, testserver.WithConfig(apacheConfigFromCLI(root))),
		"embedded": testserver.Embedded(t, root),
		"nginx":    testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root))),
	}
}

// apacheConfigFromCLI renders the standalone httpd.conf with
// `image-serve config apache --standalone`, as the README tells operators.
func apacheConfigFromCLI(root *tree.Root) testserver.ConfigRenderer {
	return func(t testing.TB, listen, runDir string) string {
		r := mustRun(t, "--root", root.Dir(), "config", "apache", "--standalone", "--listen", listen, "--run-dir", runDir)
		conf := filepath.Join(runDir, "httpd.conf")
		if err := os.WriteFile(conf, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}
}

// skopeo runs the skopeo binary against our plain-HTTP server.
func skopeo(t *testing.T, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatalf("skopeo is not installed: %s", testserver.Setup)
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func checkSkopeo(t *testing.T, host string, img exported) {
	ref := "docker://" + host + "/" + img.repo + ":" + img.tag
	byDigest := "docker://" + host + "/" + img.repo + "@" + img.digest

	for _, r := range []string{ref, byDigest} {
		if raw := skopeo(t, "inspect", "--tls-verify=false", "--raw", r); !bytes.Equal(raw, img.raw) {
			t.Errorf("skopeo inspect --raw %s: bytes differ from the source's (digest %s, want %s)", r, sha256Digest(raw), img.digest)
		}
	}
	if img.mediaType != distribution.MediaTypeOCIManifest || !strings.Contains(string(img.raw), "artifactType") {
		var info struct {
			Digest       string
			Architecture string
			RepoTags     []string
		}
		if err := json.Unmarshal(skopeo(t, "inspect", "--tls-verify=false", ref), &info); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(info.RepoTags, img.tag) {
			t.Errorf("skopeo inspect %s: RepoTags %v lack %s", ref, info.RepoTags, img.tag)
		}
	}

	dir := t.TempDir()
	skopeo(t, "copy", "--all", "--insecure-policy", "--src-tls-verify=false", ref, "dir:"+dir)
	if got := sha256Digest(readFile(t, filepath.Join(dir, "manifest.json"))); got != img.digest {
		t.Errorf("skopeo copy --all %s: manifest %s, want %s", ref, got, img.digest)
	}
	for plat, child := range img.children {
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(child, "sha256:")+".manifest.json")); err != nil {
			t.Errorf("skopeo copy --all %s: child %s (%s) missing: %v", ref, plat, child, err)
		}
	}

	if arm, ok := img.children["linux/arm64"]; ok {
		dir := t.TempDir()
		skopeo(t, "--override-arch", "arm64", "copy", "--insecure-policy", "--src-tls-verify=false", ref, "dir:"+dir)
		if got := sha256Digest(readFile(t, filepath.Join(dir, "manifest.json"))); got != arm {
			t.Errorf("skopeo --override-arch arm64 copy %s: got manifest %s, want the arm64 child %s", ref, got, arm)
		}
	}

	var tags struct{ Tags []string }
	if err := json.Unmarshal(skopeo(t, "list-tags", "--tls-verify=false", "docker://"+host+"/"+img.repo), &tags); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tags.Tags, img.tag) {
		t.Errorf("skopeo list-tags %s: %v lacks %s", img.repo, tags.Tags, img.tag)
	}
}

func checkGGCR(t *testing.T, host string, img exported) {
	tag, err := name.ParseReference(host+"/"+img.repo+":"+img.tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(tag)
	if err != nil {
		t.Fatalf("ggcr get %s: %v", tag, err)
	}
	if desc.Digest.String() != img.digest || !bytes.Equal(desc.Manifest, img.raw) || string(desc.MediaType) != img.mediaType {
		t.Errorf("ggcr get %s: %s %s, want %s %s", tag, desc.Digest, desc.MediaType, img.digest, img.mediaType)
	}
	head, err := remote.Head(tag)
	if err != nil || head.Digest.String() != img.digest || head.Size != int64(len(img.raw)) {
		t.Errorf("ggcr head %s: %+v %v", tag, head, err)
	}
	switch {
	case img.isIndex():
		idx, err := remote.Index(tag)
		if err == nil {
			err = validate.Index(idx)
		}
		if err != nil {
			t.Errorf("ggcr validate index %s: %v", tag, err)
		}
		// crane digest --platform: the child for that platform.
		arm, err := remote.Image(tag, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
		if err == nil {
			var d v1.Hash
			if d, err = arm.Digest(); err == nil && d.String() != img.children["linux/arm64"] {
				t.Errorf("ggcr image %s for linux/arm64: %s, want %s", tag, d, img.children["linux/arm64"])
			}
		}
		if err != nil {
			t.Errorf("ggcr image %s for linux/arm64: %v", tag, err)
		}
	case img.mediaType == distribution.MediaTypeDockerSchema1:
		// go-containerregistry reads schema1 only as raw bytes (above).
	default:
		im, err := remote.Image(tag)
		if err == nil && !strings.Contains(string(img.raw), "artifactType") {
			err = validate.Image(im)
		}
		if err != nil {
			t.Errorf("ggcr validate image %s: %v", tag, err)
		}
	}
	// Errors are registry JSON a client can read.
	_, err = remote.Get(tag.Context().Tag("no-such-tag"))
	var te *transport.Error
	if !asTransportError(err, &te) || te.StatusCode != http.StatusNotFound || len(te.Errors) == 0 || te.Errors[0].Code != transport.ManifestUnknownErrorCode {
		t.Errorf("ggcr get of a missing tag: %v, want 404 MANIFEST_UNKNOWN", err)
	}
}

func asTransportError(err error, te **transport.Error) bool {
	if err == nil {
		return false
	}
	e, ok := err.(*transport.Error)
	if ok {
		*te = e
	}
	return ok
}

// checkHeads asserts the headers containerd relies on: HEAD by tag and by
// digest carries Content-Type, Content-Length and Docker-Content-Digest.
func checkHeads(t *testing.T, base string, img exported) {
	accept := strings.Join([]string{
		string(types.OCIManifestSchema1), string(types.DockerManifestSchema2), string(types.DockerManifestSchema1),
		string(types.DockerManifestSchema1Signed), string(types.DockerManifestList), string(types.OCIImageIndex),
	}, ", ")
	for _, ref := range []string{img.tag, img.digest} {
		req, _ := http.NewRequest(http.MethodHead, base+"/v2/"+img.repo+"/manifests/"+ref, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != img.mediaType ||
			resp.Header.Get("Docker-Content-Digest") != img.digest || resp.ContentLength != int64(len(img.raw)) {
			t.Errorf("HEAD %s: %s type %q digest %q length %d; want 200 %q %q %d", req.URL, resp.Status,
				resp.Header.Get("Content-Type"), resp.Header.Get("Docker-Content-Digest"), resp.ContentLength,
				img.mediaType, img.digest, len(img.raw))
		}
	}
}

func checkCatalog(t *testing.T, host string, images []exported) {
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	repos, err := remote.Catalog(t.Context(), reg)
	if err != nil {
		t.Fatalf("ggcr catalog: %v", err)
	}
	for _, img := range images {
		if !slices.Contains(repos, img.repo) {
			t.Errorf("catalog %v lacks %s", repos, img.repo)
		}
		tags, err := remote.List(reg.Repo(img.repo))
		if err != nil || !slices.Contains(tags, img.tag) {
			t.Errorf("ggcr ls %s: %v %v", img.repo, tags, err)
		}
	}
}
