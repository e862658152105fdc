package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/server"
	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

// TestServeStopsOnSIGTERM runs `image-serve serve` as systemd would: it
// serves the tree, and on SIGTERM — or SIGINT, from a terminal — stops
// accepting and exits 0, a service's clean stop (README: "Embedded
// server"), not the 143 or 130 of an interrupted command.
func TestServeStopsOnSIGTERM(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) { serveUntilSignal(t, root.Dir(), sig) })
	}
}

func serveUntilSignal(t *testing.T, root string, sig syscall.Signal) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	var stderr bytes.Buffer
	cmd := exec.Command(binary, "--root", root, "--log-format", "json", "serve", "--listen", addr)
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
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after %v, want exit 0\n%s", err, sig, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("serve still running a minute after %v\n%s", sig, stderr.String())
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

// TestServeRefusesUnreadableRoot: serve checks at start that it can read
// the tree, and says what is wrong, rather than answering every request
// with 403. Guards: it started and served nothing.
func TestServeRefusesUnreadableRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to run the command as nobody; the test setup runs as root")
	}
	root := testserver.TempRoot(t)
	if err := os.Chmod(tree.Fixture(root).V2Dir(), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--root", root.Dir(), "serve", "--listen", "127.0.0.1:0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	r := runCmd(t, cmd)
	if r.code != 1 || !strings.Contains(r.stderr, "cannot read the tree") || !strings.Contains(r.stderr, "permission denied") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d, want 1 and one line saying the tree cannot be read:\n%s", r.code, r.stderr)
	}
}

// TestRefusesUnreadableEmptyRoot: an empty directory the user cannot
// list is no empty registry — it may hold a tree — so the commands that
// accept an empty root refuse it in one line naming it and the cause, and
// write nothing there. Guards: a root nobody could read answered as an
// empty registry.
func TestRefusesUnreadableEmptyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to run the commands as nobody; the test setup runs as root")
	}
	// 0700: nothing in it can be looked up; 0711: a name can, but the
	// directory cannot be listed.
	for _, mode := range []os.FileMode{0o700, 0o711} {
		dir := testserver.SharedTempDir(t, "image-serve-unreadable-")
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"serve", "--listen", "127.0.0.1:0"},
			{"watch"},
			{"config", "apache"},
			{"config", "nginx"},
			{"list"},
			{"gc"},
		} {
			testUnreadable(t, dir, mode, args)
		}
	}
}

func testUnreadable(t *testing.T, dir string, mode os.FileMode, args []string) {
	t.Run(fmt.Sprintf("%#o %s", mode, strings.Join(args, " ")), func(t *testing.T) {
		cmd := exec.Command(binary, append([]string{"--root", dir}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		r := runCmd(t, cmd)
		want := "image-serve: root " + dir + ": cannot read the directory: permission denied\n"
		if r.code != 1 || r.stderr != want || r.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", r.code, r.stdout, r.stderr, want)
		}
		if entries, err := os.ReadDir(dir); err != nil || len(entries) > 0 {
			t.Errorf("the root is no longer empty: %v %v", entries, err)
		}
	})
}

// TestDemo runs the README's first command, make demo, as a newcomer
// would: it must serve on a free port it prints (Guards: it hard-coded
// 8787, which Apache holds on an undercloud), print the podman command
// first, serve a pullable image, and remove its temporary tree when
// interrupted (Guards: it left the tree behind).
func TestDemo(t *testing.T) {
	cmd := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "demo")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout := waitForStdout(t, cmd, "podman pull --tls-verify=false ")
	var root, addr string
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[0] == "serving" {
			root = f[1]
		}
		if rest, ok := strings.CutPrefix(line, "pull it with:  podman pull --tls-verify=false "); ok {
			addr = strings.TrimSuffix(rest, "/hello:latest")
		}
	}
	if root == "" || addr == "" || strings.Contains(addr, ":8787") {
		t.Fatalf("make demo printed no tree, or no free-port address:\n%s", stdout)
	}
	if first := strings.Index(stdout, "podman pull"); first > strings.Index(stdout, "skopeo") {
		t.Errorf("the podman command is not printed first:\n%s", stdout)
	}
	pullEveryTag(t, addr, "hello")
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("make demo still running a minute after SIGINT")
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("make demo left its tree %s behind (%v)", root, err)
	}
}

// waitForStdout starts cmd and collects its stdout until it holds want,
// with a deadline (make demo builds the binary first).
func waitForStdout(t *testing.T, cmd *exec.Cmd, want string) string {
	t.Helper()
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var (
		mu  sync.Mutex
		out strings.Builder
	)
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pipe)
		once := false
		for sc.Scan() {
			mu.Lock()
			out.WriteString(sc.Text() + "\n")
			has := strings.Contains(out.String(), want) && strings.Contains(out.String(), "skopeo")
			mu.Unlock()
			if has && !once {
				once = true
				close(found)
			}
		}
	}()
	select {
	case <-found:
	case <-time.After(3 * time.Minute):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no line saying %q within 3 minutes:\n%s", want, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	return out.String()
}

// TestInstall: make install puts the binary, its manual page and the
// completions under PREFIX, and the installed binary names the commit it
// was built from.
func TestInstall(t *testing.T) {
	prefix := t.TempDir()
	out, err := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "install", "PREFIX="+prefix).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{
		"bin/image-serve",
		"share/man/man1/image-serve.1",
		"share/bash-completion/completions/image-serve",
		"share/zsh/site-functions/_image-serve",
		"share/fish/vendor_completions.d/image-serve.fish",
	} {
		if fi, err := os.Stat(filepath.Join(prefix, f)); err != nil || fi.Size() == 0 {
			t.Errorf("make install: %s missing or empty (%v)", f, err)
		}
	}
	version, err := exec.Command(filepath.Join(prefix, "bin", "image-serve"), "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v (the tests run in a checkout)", err)
	}
	if !strings.Contains(string(version), "commit "+strings.TrimSpace(string(head))) {
		t.Errorf("installed --version %q does not name commit %s", version, head)
	}
	if man := readFile(t, filepath.Join(prefix, "share/man/man1/image-serve.1")); !bytes.HasPrefix(bytes.TrimPrefix(man, []byte(".nh\n")), []byte(".TH image-serve 1")) {
		t.Errorf("the manual page does not start with .TH image-serve 1:\n%.200s", man)
	}
}

// TestServeIdleTimeoutMatchesTemplates: the embedded server closes an idle
// kept-alive connection when Apache and nginx do. Guards: it kept them 2
// minutes, so a client hoarding idle connections held them eight times
// longer than on the other servers.
func TestServeIdleTimeoutMatchesTemplates(t *testing.T) {
	root := testserver.TempRoot(t)
	if got, want := server.NewHTTPServer(root, nil).IdleTimeout, templates.DefaultTimeouts.Idle; got != want {
		t.Errorf("embedded server idle timeout %v, templates %v", got, want)
	}
}
