package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// nginxConfigFromCLI renders the standalone nginx.conf with
// `image-serve config nginx --standalone`, as the README tells operators.
func nginxConfigFromCLI(root *tree.Root) testserver.ConfigRenderer {
	return func(t testing.TB, listen, runDir string) string {
		r := mustRun(t, "--root", root.Dir(), "config", "nginx", "--standalone", "--listen", listen, "--run-dir", runDir)
		conf := filepath.Join(runDir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}
}

// TestNginxSeesEveryChange: nginx, started once, serves what export and
// delete do to the tree at the next request, with no reload: a new tag, a
// retag to another image, and a deleted tag.
func TestNginxSeesEveryChange(t *testing.T) {
	root := testserver.TempRoot(t)
	base := testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root)))
	const tag = "/v2/demo/app/manifests/live"

	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/app:live")
	index := fromLayout(t, "demo/app", "live")
	wantManifest(t, base+tag, index.digest, index.mediaType)

	mustRun(t, "--root", root.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/app:live")
	archive := fromArchive(t, root, "demo/app", "live")
	wantManifest(t, base+tag, archive.digest, archive.mediaType)

	mustRun(t, "--root", root.Dir(), "-q", "delete", "demo/app:live")
	resp, body := httpGet(t, base+tag)
	var e struct{ Errors []struct{ Code string } }
	if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || len(e.Errors) == 0 || e.Errors[0].Code != "MANIFEST_UNKNOWN" {
		t.Errorf("GET %s after delete: %s %q, want 404 MANIFEST_UNKNOWN", tag, resp.Status, body)
	}
}

// TestConfigNginxLinksOldTrees: `config nginx` gives a tree written
// without nginx's links (here: removed) what nginx needs, before printing
// the config that serves it.
func TestConfigNginxLinksOldTrees(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/app:live")
	index := fromLayout(t, "demo/app", "live")
	tagLinks := filepath.Dir(tree.Fixture(root).TagLinkPath("demo/app", "live"))
	for _, p := range []string{tagLinks, filepath.Dir(tree.Fixture(root).FallbackLinkPath("demo/app", "live"))} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	typed, _ := filepath.Glob(filepath.Join(filepath.Dir(tagLinks), "sha256:*", "manifest.*"))
	if len(typed) != 3 {
		t.Fatalf("typed links %q, want 3 (the index and its two images)", typed)
	}
	for _, p := range typed {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	base := testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root)))
	wantManifest(t, base+"/v2/demo/app/manifests/live", index.digest, index.mediaType)
	for _, child := range index.children {
		wantManifest(t, base+"/v2/demo/app/manifests/"+child, child, "application/vnd.oci.image.manifest.v1+json")
	}
}

// wantManifest GETs url as skopeo asks (one Accept line per type) and
// wants exactly the manifest digest, of mediaType.
func wantManifest(t *testing.T, url, digest, mediaType string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header["Accept"] = strings.Split(allManifests, ", ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || sha256Digest(body) != digest ||
		resp.Header.Get("Docker-Content-Digest") != digest || resp.Header.Get("Content-Type") != mediaType {
		t.Fatalf("GET %s: %s, body %s, digest %q, type %q; want 200 %s %s at once",
			url, resp.Status, sha256Digest(body), resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Type"), digest, mediaType)
	}
}

func httpGet(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
