package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// TestInstallBeforeFirstExport follows README's order for a new host —
// configure the web server and the units on an empty directory, start
// them, then export — with each server: Apache and nginx from the
// configuration `config apache|nginx --standalone` prints on the empty
// root, and `image-serve serve`. Before the export each answers as an
// empty registry; after it, each serves the tag with its media type and
// digest, with no reload or restart, and the watcher started on the empty
// root follows the new tree. Guards: config, serve and watch refused an
// empty directory ("no registry tree here"), so none of them could be
// installed before the first export, and the shipped watch unit restarted
// in a loop until then.
func TestInstallBeforeFirstExport(t *testing.T) {
	for _, srv := range []struct {
		name  string
		start func(t *testing.T, root *tree.Root) (base string)
	}{
		{"apache", func(t *testing.T, root *tree.Root) string {
			return testserver.Apache(t, root, testserver.WithConfig(apacheConfigFromCLI(root)))
		}},
		{"nginx", func(t *testing.T, root *tree.Root) string {
			return testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root)))
		}},
		{"embedded", startServe},
	} {
		t.Run(srv.name, func(t *testing.T) {
			root, err := tree.Open(testserver.SharedTempDir(t, "image-serve-install-"))
			if err != nil {
				t.Fatal(err)
			}
			base := srv.start(t, root)
			// On the skeleton config wrote, watch finds a tree of no
			// repository; on the root serve leaves empty, it waits.
			watch := launchWatch(t, root, nil)
			watch.waitRecord(t, "watch's first pass", func(r map[string]any) bool {
				return r["msg"] == "checked" && r["full"] == true ||
					r["msg"] == "no tree at the root yet; waiting for the first export" && r["level"] == "INFO"
			})

			// An empty registry.
			resp, body := httpGet(t, base+"/v2/")
			if resp.StatusCode != http.StatusOK || string(body) != "{}" {
				t.Errorf("GET /v2/ before the first export: %s %q, want 200 {}", resp.Status, body)
			}
			resp, body = httpGet(t, base+"/v2/_catalog")
			if resp.StatusCode != http.StatusOK || string(body) != `{"repositories":[]}` || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("GET /v2/_catalog before the first export: %s %q (%s), want 200 and no repository", resp.Status, body, resp.Header.Get("Content-Type"))
			}
			for path, code := range map[string]string{"/v2/hello/tags/list": "NAME_UNKNOWN", "/v2/hello/manifests/latest": "MANIFEST_UNKNOWN"} {
				resp, body = httpGet(t, base+path)
				if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"code":"`+code+`"`) {
					t.Errorf("GET %s before the first export: %s %q, want 404 %s", path, resp.Status, body, code)
				}
			}

			mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
			img := fromLayout(t, "hello", "latest")
			wantManifest(t, base+"/v2/hello/manifests/latest", img.digest, img.mediaType)
			resp, body = httpGet(t, base+"/v2/_catalog")
			var cat struct{ Repositories []string }
			if err := json.Unmarshal(body, &cat); resp.StatusCode != http.StatusOK || err != nil || !slices.Equal(cat.Repositories, []string{"hello"}) {
				t.Errorf("GET /v2/_catalog after the export: %s %q", resp.Status, body)
			}
			pullEveryTag(t, strings.TrimPrefix(base, "http://"), "hello")
			watch.waitRecord(t, "watch following the exported repository", func(r map[string]any) bool {
				n, _ := r["repositories"].(float64)
				return r["msg"] == "checked" && n >= 1
			})
			if warns := watch.records(func(r map[string]any) bool { return r["level"] != "INFO" && r["level"] != "DEBUG" }); len(warns) > 0 {
				t.Errorf("watch warned about a root awaiting its first export: %v", warns)
			}
		})
	}
}

// startServe runs `image-serve serve` on root, on a free loopback port, as
// its unit would, until the test ends.
func startServe(t *testing.T, root *tree.Root) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(binary, "--root", root.Dir(), "serve", "--listen", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
		}
	})
	waitFor(t, "http://"+addr+"/v2/")
	return "http://" + addr
}
