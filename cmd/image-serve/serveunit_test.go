package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
)

// TestServeAsUnitUser runs serve as the unit from `config serve-service`
// runs it, as far as a test without systemd as PID 1 can: as an
// unprivileged user (the unit's DynamicUser; here nobody) that can write
// nothing in the tree, which root owns. It serves an exported tree — a
// tag, a blob, the catalog — and an existing empty directory as an empty
// registry, and leaves the empty directory empty. Guards: the unit's
// premise, that serve needs no write access and the tree's files are
// readable by any user.
func TestServeAsUnitUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to run serve as nobody; the test setup runs as root")
	}
	t.Run("tree", func(t *testing.T) {
		root := testserver.TempRoot(t)
		mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello:latest")
		img := fromLayout(t, "demo/hello", "latest")
		base := serveAsNobody(t, root.Dir())
		req, err := http.NewRequest(http.MethodGet, base+"/v2/demo/hello/manifests/latest", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", img.mediaType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != img.digest {
			t.Errorf("GET the tag as nobody: %s, digest %q; want 200, %s", resp.Status, resp.Header.Get("Docker-Content-Digest"), img.digest)
		}
		// A child manifest, and its config blob.
		var child string
		for _, d := range img.children {
			child = d
			break
		}
		req, err = http.NewRequest(http.MethodGet, base+"/v2/demo/hello/manifests/"+child, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ Config struct{ Digest string } }
		err = json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET child manifest %s as nobody: %s, %v", child, resp.Status, err)
		}
		resp, err = http.Get(base + "/v2/demo/hello/blobs/" + m.Config.Digest)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET blob %s as nobody: %s", m.Config.Digest, resp.Status)
		}
	})
	t.Run("empty", func(t *testing.T) {
		dir := testserver.SharedTempDir(t, "image-serve-empty-")
		base := serveAsNobody(t, dir)
		for path, want := range map[string]int{"/v2/": http.StatusOK, "/v2/_catalog": http.StatusOK, "/v2/demo/hello/manifests/latest": http.StatusNotFound} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s on an empty root: %s, want %d", path, resp.Status, want)
			}
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
			t.Errorf("serve wrote into the empty root: %v %v", entries, err)
		}
	})
}

// serveAsNobody runs `image-serve serve` on root as uid and gid 65534, on
// a free loopback port, until the test ends, and returns its base URL.
func serveAsNobody(t *testing.T, root string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var stderr strings.Builder
	cmd := exec.Command(binary, "--root", root, "serve", "--listen", addr)
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
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
		if t.Failed() {
			t.Logf("serve's log:\n%s", stderr.String())
		}
	})
	waitFor(t, "http://"+addr+"/v2/")
	return "http://" + addr
}
