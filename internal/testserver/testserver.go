// Package testserver starts real servers and clients' daemons for tests:
// the configurations we ship are only proven by serving with them. Apache
// and nginx run as child processes in their own process groups, on free
// loopback ports; the embedded server runs in-process on a real listener;
// containerd runs as its own process on a private socket. Each has the
// shape func X(t, root, opts...) (baseURL string) and stops when the test
// ends.
package testserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/tree"
)

// Setup is what a test tells the developer when a server is missing: the
// servers are part of the test environment, never a reason to skip.
const Setup = "run the project's test setup (make test-deps) to install apache2, nginx, skopeo, podman and containerd"

// Timeouts for a server to come up and to go away.
const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
)

// TempRoot makes an initialised, empty tree that a server running as
// another user can read, in a SharedTempDir.
func TempRoot(t testing.TB) *tree.Root {
	t.Helper()
	root, err := tree.Open(SharedTempDir(t, "image-serve-test-"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	return root
}

// SharedTempDir makes a directory, named with prefix, that a server
// running as another user can read, and removes it when the test ends:
// t.TempDir is 0700, so this one is 0755, and every parent must be
// searchable by others too.
func SharedTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkTraversable(dir); err != nil {
		t.Fatalf("%v: set TMPDIR to a directory every user can search", err)
	}
	return dir
}

// checkTraversable reports the first ancestor of dir that other users
// cannot search.
func checkTraversable(dir string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %v) is not searchable by the web server's user", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// freePort returns a loopback port nobody listens on right now. Another
// process may take it before the server binds it; start retries then.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// serverUser picks the account for a server started as root, which web
// servers refuse to run their workers as. Not root: "" (the server keeps
// our own account).
func serverUser() (string, error) {
	if os.Geteuid() != 0 {
		return "", nil
	}
	for _, name := range []string{"www-data", "apache", "nginx", "nobody"} {
		if _, err := user.Lookup(name); err == nil {
			return name, nil
		}
	}
	return "", errors.New("running as root, but there is no www-data, apache, nginx or nobody account for the server's workers")
}

// groupOf returns the primary group name of account name.
func groupOf(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		return "", err
	}
	return g.Name, nil
}

// process is a running server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd.Wait returns
	err  error         // cmd.Wait's result, valid after done
	logs []string      // files to show when the test fails: output first
}

// start runs cmd in its own process group, its output going to the file
// output, waits until baseURL+"/v2/" answers, and stops it when the test
// ends. It reports false, without failing t, when the server did not come
// up (a port taken meanwhile, for one); the caller may retry.
//
// The output is a file, not a pipe: cmd.Wait would otherwise also wait for
// every worker that inherited the pipe.
func start(t testing.TB, name string, cmd *exec.Cmd, baseURL, output string, logs ...string) bool {
	t.Helper()
	out, err := os.Create(output)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close() // the child has its own descriptor
	p := &process{cmd: cmd, done: make(chan struct{}), logs: append([]string{output}, logs...)}
	cmd.Stdout, cmd.Stderr = out, out
	// Pdeathsig: a test binary killed before its cleanups (a timeout, a
	// closed output pipe) takes the server with it instead of leaving an
	// orphan on the port.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	if err := p.waitReady(baseURL + "/v2/"); err != nil {
		p.stop()
		t.Logf("%s did not come up: %v\n%s", name, err, p.diagnostics())
		return false
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s diagnostics:\n%s", name, p.diagnostics())
		}
	})
	return true
}

// waitReady polls url until it answers 200, the process exits or
// startTimeout passes.
func (p *process) waitReady(url string) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer from %s after %v", url, startTimeout)
}

// stop ends the whole process group: SIGTERM, then SIGKILL if it lingers.
func (p *process) stop() {
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// diagnostics is the server's command line and the end of its output and
// log files, each headed by its path.
func (p *process) diagnostics() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s\n", strings.Join(p.cmd.Args, " "))
	for _, f := range p.logs {
		b.WriteString(tail(f))
	}
	return b.String()
}

func baseURLOf(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

// serverAccount is the user and group a server started as root runs its
// workers as ("" when we are not root).
func serverAccount(t testing.TB) (user, group string) {
	t.Helper()
	account, err := serverUser()
	if err != nil {
		t.Fatal(err)
	}
	if account == "" {
		return "", ""
	}
	if group, err = groupOf(account); err != nil {
		t.Fatal(err)
	}
	return account, group
}

// launcher prepares one attempt to start a server listening on listen with
// runDir as its run directory: the command, the file its output goes to,
// and the log files to show when a test fails.
type launcher func(listen, runDir string) (cmd *exec.Cmd, output string, logs []string)

// startOnFreePort starts a server on a free loopback port, retrying with
// another port when one is taken between our probe and the server's bind.
// It returns the base URL and the run directory of the attempt that came up.
func startOnFreePort(t testing.TB, name string, launch launcher) (baseURL, runDir string) {
	t.Helper()
	const attempts = 3
	for range attempts {
		runDir := keptDir(t)
		port := freePort(t)
		url := baseURLOf(port)
		cmd, output, logs := launch("127.0.0.1:"+strconv.Itoa(port), runDir)
		if start(t, name, cmd, url, output, logs...) {
			return url, runDir
		}
	}
	t.Fatalf("%s did not start in %d attempts (see the log above)", name, attempts)
	return "", ""
}
