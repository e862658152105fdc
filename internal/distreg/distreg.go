// Package distreg runs the CNCF distribution registry — the registry
// most sites mirror from, pinned in bench/tools/go.mod and built into
// bin/registry by `make test-deps` — on 127.0.0.1 for a test, with its
// access log on, and reads that log back as requests: the registry's own
// count of what a client asked, not the client's.
//
// The registry writes one line per request in Apache's combined format
// to its stdout (gorilla's CombinedLoggingHandler, registry/registry.go),
// when the request's handler returns: for a small answer before the
// client has it, for a body larger than the server's write buffer just
// after the client may have read it all. Mark therefore sends a request
// of its own once the client is done and waits for that line: by then
// the lines of the requests answered before it have been written, each
// needing only the one write its goroutine makes next against a whole
// round trip for the marker. That is an ordering in practice, not a
// guarantee: a line still unwritten would show as a count one too low,
// never as a request that was not made.
package distreg

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testca"
)

// BinaryEnv names the environment variable that, when set, is the
// registry binary to run instead of bin/registry under the module root.
const BinaryEnv = "IMAGE_SERVE_DISTRIBUTION_REGISTRY"

// startTimeout bounds the wait for the registry to answer /v2/, and
// markTimeout the wait for a marker's log line: both take milliseconds
// on an idle machine and far less than these on a loaded one.
const (
	startTimeout = 30 * time.Second
	markTimeout  = 30 * time.Second
)

// Registry is a running distribution registry.
type Registry struct {
	// Host is HOST:PORT on 127.0.0.1, for references and sync files.
	Host string
	// CACertPEM is the CA that signed the registry's certificate, with
	// Options.TLS; nil otherwise.
	CACertPEM []byte

	scheme string
	client *http.Client

	logPath string
	mu      sync.Mutex
	marks   int
}

// Request is one line of the access log.
type Request struct {
	Method string
	Path   string // without the query
	Status int
}

// Binary is the registry binary: $IMAGE_SERVE_DISTRIBUTION_REGISTRY, or
// bin/registry under the module root. The test fails, never skips, when
// it is absent: the README's test command builds it.
func Binary(t testing.TB) string {
	t.Helper()
	path := os.Getenv(BinaryEnv)
	if path == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatalf("distribution registry: %v", err)
		}
		path = filepath.Join(root, "bin", "registry")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("distribution registry: %v: run `make test-deps` (it builds the pinned registry into bin/registry)", err)
	}
	return path
}

// moduleRoot is the nearest directory at or above the working directory
// whose go.mod declares the image-serve module (bench/tools has a go.mod
// of its own, which is not it).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/image-serve/image-serve\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no image-serve go.mod above the working directory")
		}
		dir = parent
	}
}

// Options are how a registry Start runs differs from the default: plain
// HTTP, no authentication.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost
	// signed by a CA made for the test (Registry.CACertPEM).
	TLS bool
	// Users, when set, are the only user:password pairs the registry
	// lets in (htpasswd, bcrypt: the registry's only basic-auth scheme;
	// it refuses it without TLS).
	Users map[string]string
}

// Start runs the registry over plain HTTP on a free port of 127.0.0.1,
// storing in a temporary directory, until the test ends; it returns once
// /v2/ answers.
func Start(t testing.TB) *Registry {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, o Options) *Registry {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	r := &Registry{Host: host, logPath: filepath.Join(dir, "access.log"), scheme: "http", client: &http.Client{Timeout: markTimeout}}
	// log.level error keeps the application's own log (stderr) to what
	// goes wrong; the access log (stdout) is on, as it is by default.
	text := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
	if o.TLS {
		cert, key := r.makeCerts(t, dir)
		text += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	if len(o.Users) > 0 {
		text += fmt.Sprintf("auth:\n  htpasswd:\n    realm: distreg\n    path: %s\n", htpasswdFile(t, dir, o.Users))
	}
	conf := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr := &lockedWriter{}
	cmd := exec.Command(bin, "serve", conf)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "OTEL_TRACES_EXPORTER=none"}
	if err := cmd.Start(); err != nil {
		t.Fatalf("distribution registry: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// Up is /v2/ answering at all: 401 when it wants users.
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := r.client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("distribution registry exited before answering: %v\n%s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("distribution registry at %s: /v2/ not answering after %v (last: %v)\n%s", host, startTimeout, err, stderr.String())
		}
	}
}

// URL is the registry's base URL: http:// or https:// and Host.
func (r *Registry) URL() string { return r.scheme + "://" + r.Host }

// Client is an HTTP client that trusts the registry's CA.
func (r *Registry) Client() *http.Client { return r.client }

// makeCerts writes a CA and a certificate it signs for 127.0.0.1 and
// localhost, and the key, into dir; the CA becomes r.CACertPEM and the
// one r.client trusts.
func (r *Registry) makeCerts(t testing.TB, dir string) (cert, key string) {
	t.Helper()
	ca := testca.New(t, "distreg test CA")
	certPEM, keyPEM := ca.Server(t, 2)
	r.CACertPEM = ca.PEM
	cert, key = filepath.Join(dir, "registry.crt"), filepath.Join(dir, "registry.key")
	if err := os.WriteFile(cert, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r.scheme = "https"
	r.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}
	return cert, key
}

// htpasswdFile writes users as an htpasswd file of bcrypt hashes, made
// by Apache's htpasswd (apache2-utils, which apache2 depends on: make
// test-deps installs it).
func htpasswdFile(t testing.TB, dir string, users map[string]string) string {
	t.Helper()
	bin, err := exec.LookPath("htpasswd")
	if err != nil {
		t.Fatalf("htpasswd: %v: run `make test-deps` (it installs apache2, whose apache2-utils has htpasswd)", err)
	}
	var b strings.Builder
	for user, pass := range users {
		out, err := exec.Command(bin, "-nbB", user, pass).Output()
		if err != nil {
			t.Fatalf("htpasswd -nbB %s: %v", user, err)
		}
		b.WriteString(strings.TrimSpace(string(out)) + "\n")
	}
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// lockedWriter lets the test read the registry's stderr while the
// process may still write it.
type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// Mark is a point in the access log: the requests after it are what a
// test's next step asked.
type Mark int

// Mark returns the point in the log after every request answered so
// far: it GETs /v2/?image-serve-mark=N and waits for that line.
func (r *Registry) Mark(t testing.TB) Mark {
	t.Helper()
	r.mu.Lock()
	r.marks++
	n := r.marks
	r.mu.Unlock()
	query := "image-serve-mark=" + strconv.Itoa(n)
	resp, err := r.client.Get(r.URL() + "/v2/?" + query)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(markTimeout)
	for {
		lines := r.lines(t)
		for i, l := range lines {
			if strings.Contains(l, " /v2/?"+query+" ") {
				return Mark(i + 1)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("distribution registry: marker %s not in its access log after %v", query, markTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Since returns the requests answered between m and now, markers left
// out.
func (r *Registry) Since(t testing.TB, m Mark) Log {
	t.Helper()
	end := r.Mark(t)
	lines := r.lines(t)
	var out Log
	for _, l := range lines[m:end] {
		req, ok := parse(l)
		if !ok {
			t.Fatalf("distribution registry: access log line not understood: %q", l)
		}
		if req.Path == "/v2/" && strings.Contains(l, "image-serve-mark=") {
			continue
		}
		out = append(out, req)
	}
	return out
}

func (r *Registry) lines(t testing.TB) []string {
	t.Helper()
	f, err := os.Open(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		// Only complete lines: the last may be half written.
		lines = append(lines, s.Text())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// combined is the request and status of a combined-format line:
// HOST - USER [TIME] "METHOD URI PROTO" STATUS SIZE "REFERER" "AGENT".
var combined = regexp.MustCompile(`^\S+ \S+ \S+ \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) `)

func parse(line string) (Request, bool) {
	m := combined.FindStringSubmatch(line)
	if m == nil {
		return Request{}, false
	}
	path, _, _ := strings.Cut(m[2], "?")
	status, _ := strconv.Atoi(m[3])
	return Request{Method: m[1], Path: path, Status: status}, true
}

// Log is requests, in the order the registry finished them.
type Log []Request

// Counts is how many requests of each "METHOD PATH" the log holds.
func (l Log) Counts() map[string]int {
	out := map[string]int{}
	for _, r := range l {
		out[r.Method+" "+r.Path]++
	}
	return out
}

// Kind is what a registry path asks for: "manifests", "blobs", "tags",
// "base" (/v2/) or "other".
func (r Request) Kind() string {
	if r.Path == "/v2/" {
		return "base"
	}
	_, kind, _ := r.split()
	return kind
}

// Repo is the repository a path names, or "" for /v2/ and the catalog.
func (r Request) Repo() string {
	repo, _, _ := r.split()
	return repo
}

// Ref is the tag or digest after /manifests/ or /blobs/, or "".
func (r Request) Ref() string {
	_, kind, ref := r.split()
	if kind == "tags" {
		return ""
	}
	return ref
}

// split cuts /v2/REPO/KIND/REF at the last /manifests/, /blobs/ or
// /tags/: a repository name may hold those words, a tag or digest never
// holds a slash.
func (r Request) split() (repo, kind, ref string) {
	p := strings.TrimPrefix(r.Path, "/v2/")
	at := -1
	for _, k := range []string{"/manifests/", "/blobs/", "/tags/"} {
		if i := strings.LastIndex(p, k); i > at {
			at, kind = i, strings.Trim(k, "/")
		}
	}
	if at < 0 {
		return "", "other", ""
	}
	return p[:at], kind, p[at+len(kind)+2:]
}
