package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/image-serve/image-serve/internal/testca"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// lockedBuffer is a process's output, read while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// served is a running `image-serve serve`.
type served struct {
	cmd            *exec.Cmd
	addr           string
	stdout, stderr *lockedBuffer
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runServe runs image-serve with args (global flags, then serve's,
// --listen included) and waits until it accepts connections on addr.
// It is stopped with SIGTERM at the test's end.
func runServe(t *testing.T, addr string, args ...string) *served {
	t.Helper()
	s := &served{addr: addr, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	s.cmd = exec.Command(binary, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			s.cmd.Process.Kill()
		}
	})
	eventually(t, "serve accepting on "+addr, func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("serve exited: %v\n%s", err, s.stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, fmt.Sprintf("%v\n%s", err, s.stderr.String())
		}
		c.Close()
		return true, ""
	})
	return s
}

func fileLines(path string) []string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func getClosed(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// accessLine is README's access log line: the Combined Log Format and the
// request's duration in seconds.
var accessLine = regexp.MustCompile(`^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET (\S+) HTTP/1\.1" (\d{3}) (\d+) "-" "([^"]*)" \d+\.\d{3}$`)

// TestServeAccessLog: serve logs each request to stdout by default, in
// the combined format with the duration; --log-format json makes it JSON
// lines; --access-log off logs none.
func TestServeAccessLog(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")

	addr := freeAddr(t)
	s := runServe(t, addr, "--root", root.Dir(), "serve", "--listen", addr)
	getClosed(t, http.DefaultClient, "http://"+addr+"/v2/hello/manifests/latest")
	eventually(t, "a line on stdout", func() (bool, string) { return s.stdout.String() != "", "" })
	line := strings.TrimSuffix(s.stdout.String(), "\n")
	if m := accessLine.FindStringSubmatch(line); m == nil || m[1] != "/v2/hello/manifests/latest" || m[2] != "200" || m[4] != "Go-http-client/1.1" {
		t.Errorf("stdout %q: want one combined-format line for the GET", line)
	}

	addr = freeAddr(t)
	s = runServe(t, addr, "--root", root.Dir(), "--log-format", "json", "serve", "--listen", addr)
	getClosed(t, http.DefaultClient, "http://"+addr+"/v2/")
	eventually(t, "a JSON line on stdout", func() (bool, string) { return s.stdout.String() != "", "" })
	var rec struct {
		URI    string `json:"uri"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal([]byte(s.stdout.String()), &rec); err != nil || rec.URI != "/v2/" || rec.Status != 200 {
		t.Errorf("stdout %q: want a JSON record of GET /v2/ 200 (%v)", s.stdout.String(), err)
	}

	addr = freeAddr(t)
	s = runServe(t, addr, "--root", root.Dir(), "serve", "--listen", addr, "--access-log", "off")
	getClosed(t, http.DefaultClient, "http://"+addr+"/v2/")
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	if s.stdout.String() != "" {
		t.Errorf("--access-log off: stdout %q", s.stdout.String())
	}
}

// TestServeAccessLogRotate is logrotate's rename and SIGHUP against the
// real process: the lines before the rename stay in the renamed file, and
// after SIGHUP a request is logged in a new file by the configured name.
func TestServeAccessLogRotate(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	log := filepath.Join(t.TempDir(), "access.log")
	addr := freeAddr(t)
	s := runServe(t, addr, "--root", root.Dir(), "serve", "--listen", addr, "--access-log", log)
	getClosed(t, http.DefaultClient, "http://"+addr+"/v2/hello/tags/list")
	eventually(t, "the request in the access log", func() (bool, string) { return len(fileLines(log)) == 1, "" })

	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The signal is handled asynchronously: a request before the reopen
	// goes to the renamed file, which is as logrotate wants it.
	eventually(t, "a request logged in a new file after SIGHUP", func() (bool, string) {
		getClosed(t, http.DefaultClient, "http://"+addr+"/v2/?after-hup")
		lines := fileLines(log)
		return len(lines) > 0 && strings.Contains(lines[len(lines)-1], "/v2/?after-hup"), fmt.Sprintf("%d lines", len(lines))
	})
	old := fileLines(log + ".1")
	if len(old) == 0 || !strings.Contains(old[0], "/v2/hello/tags/list") {
		t.Errorf("the renamed file: %q, want the request before the rename first", old)
	}
	if s.cmd.ProcessState != nil {
		t.Fatalf("SIGHUP ended the server:\n%s", s.stderr.String())
	}
}

// tlsFiles writes a server pair of serial and the CA into dir.
func tlsFiles(t *testing.T, ca *testca.CA, dir string, serial int64) (cert, key string) {
	t.Helper()
	c, k := ca.Server(t, serial)
	cert, key = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	testca.Replace(t, cert, c)
	testca.Replace(t, key, k)
	return cert, key
}

// TestServeTLS: with --tls-cert and --tls-key, skopeo (a certs.d with the
// CA), podman (--cert-dir), go-containerregistry and containerd's ctr
// (--tlscacert) pull through the embedded server, verifying its
// certificate; the metrics address speaks TLS too and its text parses
// with the Prometheus parser; a renewed pair is served at the next
// handshake, without a restart; a broken pair keeps the old one serving
// with one log line; SIGHUP keeps the server up.
func TestServeTLS(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello:latest")
	ca := testca.New(t, "image-serve test CA")
	dir := t.TempDir()
	cert, key := tlsFiles(t, ca, dir, 10)
	certsd := filepath.Join(dir, "certs.d")
	if err := os.MkdirAll(certsd, 0o755); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(certsd, "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	addr, maddr := freeAddr(t), freeAddr(t)
	s := runServe(t, addr, "--root", root.Dir(), "serve", "--listen", addr,
		"--tls-cert", cert, "--tls-key", key, "--metrics-listen", maddr, "--access-log", "off")
	ref := addr + "/demo/hello:latest"

	t.Run("skopeo", func(t *testing.T) {
		out := t.TempDir()
		skopeo(t, "copy", "--insecure-policy", "--src-cert-dir", certsd, "docker://"+ref, "dir:"+out)
		if _, err := os.Stat(filepath.Join(out, "manifest.json")); err != nil {
			t.Error(err)
		}
	})
	t.Run("podman", func(t *testing.T) {
		p := newPodmanStore(t)
		id := p.podman("pull", "--quiet", "--cert-dir", certsd, ref)
		if got := p.podman("image", "inspect", "--format", "{{.Architecture}}", id); got != runtime.GOARCH {
			t.Errorf("podman pulled a %s image, want %s", got, runtime.GOARCH)
		}
	})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}}
	t.Run("go-containerregistry", func(t *testing.T) {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(r, remote.WithTransport(client.Transport))
		if err != nil {
			t.Fatal(err)
		}
		if m, err := idx.IndexManifest(); err != nil || len(m.Manifests) == 0 {
			t.Errorf("index: %v, %v", m, err)
		}
		resp := getClosed(t, client, "https://"+addr+"/v2/")
		if resp.Proto != "HTTP/2.0" {
			t.Errorf("a Go client negotiated %s, want HTTP/2.0", resp.Proto)
		}
	})
	t.Run("containerd", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Fatal("ctr images pull needs root: run the tests as root, as make test does")
		}
		// A hosts.toml, as a node is configured: with --tlscacert alone,
		// ctr takes a loopback registry for plain HTTP.
		hosts := filepath.Join(t.TempDir(), "certs.d")
		hostDir := filepath.Join(hosts, addr)
		if err := os.MkdirAll(hostDir, 0o755); err != nil {
			t.Fatal(err)
		}
		toml := "server = \"https://" + addr + "\"\n\n[host.\"https://" + addr + "\"]\n  ca = \"" + caFile + "\"\n"
		if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
			t.Fatal(err)
		}
		ctrd := testserver.Containerd(t)
		if _, err := ctrd.Ctr("image-serve-tls", "images", "pull", "--hosts-dir", hosts, ref); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp, err := client.Get("https://" + maddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		mf, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var blobs float64
		for _, m := range mf["registry_http_requests_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "handler" && l.GetValue() == "blob" {
					blobs += m.GetCounter().GetValue()
				}
			}
		}
		if blobs == 0 {
			t.Error("no blob request counted after the pulls")
		}
		if g := mf["image_serve_tree_tags"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != 1 {
			t.Errorf("image_serve_tree_tags %v, want 1", g)
		}
		// du's total, which the metric measured in the background since
		// the start, long done by now.
		var du struct {
			Total float64 `json:"total_bytes"`
		}
		if err := json.Unmarshal([]byte(mustRun(t, "--root", root.Dir(), "du", "--json").stdout), &du); err != nil {
			t.Fatal(err)
		}
		if g := mf["image_serve_tree_bytes"].GetMetric(); len(g) != 1 || g[0].GetGauge().GetValue() != du.Total || du.Total == 0 {
			t.Errorf("image_serve_tree_bytes %v, want du's total %v", g, du.Total)
		}
	})

	serial := func() int64 {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 10 {
		t.Fatalf("serial %d, want 10", got)
	}
	tlsFiles(t, ca, dir, 11)
	if got := serial(); got != 11 {
		t.Errorf("after renewal: serial %d, want 11 at the next handshake", got)
	}
	if err := os.WriteFile(key, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := serial(); got != 11 {
			t.Errorf("with a broken key on disk: serial %d, want the old 11", got)
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SIGHUP handled", func() (bool, string) { return strings.Contains(s.stderr.String(), "SIGHUP handled"), "" })
	if got := serial(); got != 11 {
		t.Errorf("after SIGHUP with a broken key: serial %d, want the old 11", got)
	}
	if n := strings.Count(s.stderr.String(), "TLS certificate not reloaded"); n != 1 {
		t.Errorf("%d log lines about the broken pair, want 1:\n%s", n, s.stderr.String())
	}
	if _, err := http.Get("http://" + addr + "/v2/"); err == nil {
		resp := getClosed(t, http.DefaultClient, "http://"+addr+"/v2/")
		if resp.Header.Get("Docker-Distribution-API-Version") != "" {
			t.Error("plain HTTP got a registry answer on the TLS address")
		}
	}
}

// TestServeMutualTLS: with --tls-client-ca, a client without a
// certificate is refused at the handshake and one with a certificate of
// that CA is served.
func TestServeMutualTLS(t *testing.T) {
	root := testserver.TempRoot(t)
	ca, clients := testca.New(t, "server CA"), testca.New(t, "client CA")
	dir := t.TempDir()
	cert, key := tlsFiles(t, ca, dir, 1)
	clientCA := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(clientCA, clients.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	runServe(t, addr, "--root", root.Dir(), "serve", "--listen", addr, "--tls-cert", cert, "--tls-key", key, "--tls-client-ca", clientCA)
	get := func(certs ...tls.Certificate) error {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("https://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err == nil {
		t.Error("a client without a certificate was served")
	}
	c, k := clients.Client(t, 5)
	if err := get(testca.TLSCert(t, testca.Pair{Cert: c, Key: k})); err != nil {
		t.Errorf("a client with a certificate of --tls-client-ca: %v", err)
	}
}

// TestServeBadStart: what serve cannot use at start is one line naming
// the flag and the cause, exit 1, and nothing served.
func TestServeBadStart(t *testing.T) {
	root := testserver.TempRoot(t)
	ca := testca.New(t, "CA")
	dir := t.TempDir()
	cert, key := tlsFiles(t, ca, dir, 1)
	_, otherKey := ca.Server(t, 2)
	mismatched := filepath.Join(dir, "other.key")
	if err := os.WriteFile(mismatched, otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"missing cert", []string{"--tls-cert", filepath.Join(dir, "none.crt"), "--tls-key", key}, "--tls-cert/--tls-key: open " + filepath.Join(dir, "none.crt") + ": no such file or directory"},
		{"cert is a directory", []string{"--tls-cert", dir, "--tls-key", key}, "--tls-cert/--tls-key: read " + dir + ": is a directory"},
		{"mismatched key", []string{"--tls-cert", cert, "--tls-key", mismatched}, "private key does not match public key"},
		{"client CA without PEM", []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", mismatched}, "--tls-client-ca: TLS client CA " + mismatched + ": no PEM certificate in it"},
		{"metrics address taken", []string{"--metrics-listen", taken.Addr().String()}, "--metrics-listen: listen tcp " + taken.Addr().String() + ": bind: address already in use"},
		{"access log in no directory", []string{"--access-log", filepath.Join(dir, "no", "access.log")}, "--access-log: open " + filepath.Join(dir, "no", "access.log") + ": no such file or directory"},
		{"access log is a directory", []string{"--access-log", dir}, "--access-log: open " + dir + ": is a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--root", root.Dir(), "serve", "--listen", freeAddr(t)}, c.args...)
			r := run(t, args...)
			if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.want) || !strings.HasPrefix(r.stderr, "image-serve: ") {
				t.Errorf("serve %s: exit %d, stderr %q; want exit 1 and one line containing %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
			}
		})
	}
	r := run(t, "--root", root.Dir(), "serve", "--tls-cert", cert)
	if r.code != 2 || !strings.Contains(r.stderr, "--tls-cert and --tls-key go together") {
		t.Errorf("--tls-cert alone: exit %d, %q; want a usage error", r.code, r.stderr)
	}
}
