package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
)

// TestServeStopsOnSIGTERM runs `image-serve serve` as systemd would: it
// serves the tree, and on SIGTERM stops accepting and exits 0.
func TestServeStopsOnSIGTERM(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var stderr bytes.Buffer
	cmd := exec.Command(binary, "--root", root.Dir(), "--log-format", "json", "serve", "--listen", addr)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	resp := waitFor(t, "http://"+addr+"/v2/hello/manifests/latest")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") == "" {
		t.Fatalf("GET tag: %s, digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve still running 10s after SIGTERM\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no JSON record of the stop in the log:\n%s", stderr.String())
	}
	if _, err := http.Get("http://" + addr + "/v2/"); err == nil {
		t.Error("still answering after exit")
	}
}

// waitFor GETs url until the server answers.
func waitFor(t *testing.T, url string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return resp
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || time.Now().After(deadline) {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
