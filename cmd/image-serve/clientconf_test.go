package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
)

// clientSetup is a tree served by nginx over TLS, with a certificate a
// test CA signed, and over plain HTTP: demo/hello:latest and x/y:tag are
// the bundled multi-arch image, x/y standing for quay.io/x/y in the
// mirror cases (quay.io does not resolve in the test sandbox, so only
// the mirror can answer).
type clientSetup struct {
	ca        testserver.TestCA
	tlsHost   string // 127.0.0.1:PORT, TLS
	plainHost string // 127.0.0.1:PORT, plain HTTP
	digest    string // the image's index digest
}

func newClientSetup(t *testing.T) clientSetup {
	t.Helper()
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello:latest")
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "x/y:tag")
	ca := testserver.NewTestCA(t)
	base, tlsHost := testserver.NginxTLS(t, root, ca)
	return clientSetup{ca: ca, tlsHost: tlsHost, plainHost: strings.TrimPrefix(base, "http://"),
		digest: fromLayout(t, "x/y", "tag").digest}
}

// clientFiles runs `image-serve config client KIND ARGS... --output-dir
// DIR` into a new directory and returns it. It also checks that the
// command without --output-dir prints the same files, each after a
// comment naming its target path.
func clientFiles(t *testing.T, kind string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	printed := mustRun(t, append([]string{"config", "client", kind}, args...)...).stdout
	written := mustRun(t, append([]string{"config", "client", kind, "--output-dir", dir}, args...)...).stdout
	var want strings.Builder
	for i, p := range strings.Split(strings.TrimSpace(written), "\n") {
		rel, err := filepath.Rel(dir, p)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("config client --output-dir %s wrote %s, outside it", dir, p)
		}
		if i > 0 {
			want.WriteString("\n")
		}
		want.WriteString("# /" + rel)
		if strings.HasSuffix(rel, ".crt") {
			want.WriteString(" (the --ca certificate)")
		}
		want.WriteString("\n")
		want.Write(readFile(t, p))
	}
	if printed != want.String() {
		t.Errorf("config client %s %s printed\n%s\nbut wrote (each after its path)\n%s", kind, strings.Join(args, " "), printed, want.String())
	}
	return dir
}

// TestClientConfigPodman: podman and skopeo configured only through the
// files `config client podman` writes — the registries.conf.d drop-in
// given as CONTAINERS_REGISTRIES_CONF (skopeo: --registries-conf), the
// CA's certs.d directory as --cert-dir — pull over TLS verified against
// the test CA, pull quay.io/x/y through the mirror stanza, and, with the
// offered pull-from-mirror = "digest-only" uncommented, pull it by
// digest from the mirror and not by tag. Without --ca, the drop-in's
// insecure = true reaches the plain-HTTP listener with no TLS flag.
// Nothing under /etc/containers is read for the registry or written.
func TestClientConfigPodman(t *testing.T) {
	s := newClientSetup(t)
	dir := clientFiles(t, "podman", "--registry", s.tlsHost, "--ca", s.ca.CAFile, "--mirror-of", "quay.io")
	conf := filepath.Join(dir, "etc/containers/registries.conf.d/50-image-serve-127.0.0.1-"+strings.TrimPrefix(s.tlsHost, "127.0.0.1:")+".conf")
	certDir := filepath.Join(dir, "etc/containers/certs.d", s.tlsHost)
	if got, want := readFile(t, filepath.Join(certDir, "ca.crt")), readFile(t, s.ca.CAFile); !bytes.Equal(got, want) {
		t.Fatalf("certs.d/%s/ca.crt is not the --ca file", s.tlsHost)
	}
	p := newPodmanStore(t)
	pull := func(conf string, args ...string) (string, error) {
		return p.podmanEnv([]string{"CONTAINERS_REGISTRIES_CONF=" + conf}, append([]string{"pull", "--quiet"}, args...)...)
	}
	for _, ref := range []string{s.tlsHost + "/demo/hello:latest", "quay.io/x/y:tag"} {
		t.Run(ref, func(t *testing.T) {
			if _, err := pull(conf, "--cert-dir", certDir, ref); err != nil {
				t.Fatal(err)
			}
			if got := p.podman("image", "inspect", "--format", "{{.Digest}}", ref); got != s.digest {
				t.Errorf("podman stored %s as %s, want %s", ref, got, s.digest)
			}
			p.podman("rmi", "--force", ref)
			// The CA is what makes it work: without it, TLS is verified
			// against the system's roots and fails.
			if _, err := pull(conf, ref); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("pull %s without --cert-dir: %v, want a certificate error", ref, err)
			}
		})
	}

	t.Run("skopeo", func(t *testing.T) {
		for _, ref := range []string{"docker://" + s.tlsHost + "/demo/hello:latest", "docker://quay.io/x/y:tag"} {
			raw := skopeo(t, "--registries-conf", conf, "inspect", "--raw", "--cert-dir", certDir, ref)
			if got := sha256Digest(raw); got != s.digest {
				t.Errorf("skopeo inspect --raw %s: %s, want %s", ref, got, s.digest)
			}
		}
	})

	t.Run("digest-only", func(t *testing.T) {
		text := string(readFile(t, conf))
		const offered = "# pull-from-mirror = \"digest-only\"\n"
		if strings.Count(text, offered) != 1 {
			t.Fatalf("the drop-in does not offer %q once:\n%s", offered, text)
		}
		digestOnly := filepath.Join(t.TempDir(), "digest-only.conf")
		if err := os.WriteFile(digestOnly, []byte(strings.Replace(text, offered, strings.TrimPrefix(offered, "# "), 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		ref := "quay.io/x/y@" + s.digest
		if _, err := pull(digestOnly, "--cert-dir", certDir, ref); err != nil {
			t.Fatalf("by digest: %v", err)
		}
		p.podman("rmi", "--force", ref)
		if _, err := pull(digestOnly, "--cert-dir", certDir, "quay.io/x/y:tag"); err == nil {
			t.Errorf("pull quay.io/x/y:tag with pull-from-mirror = \"digest-only\" succeeded: it can only have come from the mirror")
		}
	})

	t.Run("insecure", func(t *testing.T) {
		dir := clientFiles(t, "podman", "--registry", s.plainHost)
		conf := filepath.Join(dir, "etc/containers/registries.conf.d/50-image-serve-127.0.0.1-"+strings.TrimPrefix(s.plainHost, "127.0.0.1:")+".conf")
		ref := s.plainHost + "/demo/hello:latest"
		if _, err := pull(conf, ref); err != nil {
			t.Fatal(err)
		}
		p.podman("rmi", "--force", ref)
		if _, err := os.Stat(filepath.Join(dir, "etc/containers/certs.d")); !os.IsNotExist(err) {
			t.Errorf("no --ca, yet a certs.d was written (%v)", err)
		}
	})
}

// podmanEnv runs podman against the store with env added to the
// environment; the error carries podman's stderr.
func (p *podmanStore) podmanEnv(env []string, args ...string) (string, error) {
	p.t.Helper()
	all := append([]string{"--root", p.root, "--runroot", p.run, "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}, args...)
	cmd := exec.Command(p.binaryPath, all...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return "", &podmanError{args, err, stderr.String()}
		}
	case <-time.After(podmanTimeout):
		_ = cmd.Process.Kill()
		<-done
		p.t.Fatalf("podman %s: no answer in %v\n%s", strings.Join(args, " "), podmanTimeout, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

type podmanError struct {
	args   []string
	err    error
	stderr string
}

func (e *podmanError) Error() string {
	return "podman " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.stderr
}

// TestClientConfigContainerd: containerd's ctr, configured only through
// the files `config client containerd` writes (given as --hosts-dir,
// containerd's config_path for ctr), pulls over TLS verified against the
// test CA, named by the hosts.toml by a relative path; pulls
// quay.io/x/y:tag through the mirror's hosts.toml, which names this
// registry as its first host; and, without --ca, pulls over plain HTTP
// with no --plain-http flag. The same files without their ca lines fail
// on the certificate: the CA they name is what makes TLS verify.
func TestClientConfigContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("ctr images pull unpacks layers by mounting, which needs root: run the tests as root, as make test does")
	}
	s := newClientSetup(t)
	ctrd := testserver.Containerd(t)
	dir := clientFiles(t, "containerd", "--registry", s.tlsHost, "--ca", s.ca.CAFile, "--mirror-of", "quay.io")
	hostsDir := filepath.Join(dir, "etc/containerd/certs.d")
	for i, ref := range []string{s.tlsHost + "/demo/hello:latest", "quay.io/x/y:tag"} {
		t.Run(ref, func(t *testing.T) {
			ns := "clientconf-tls-" + string(rune('a'+i))
			if _, err := ctrd.Ctr(ns, "images", "pull", "--hosts-dir", hostsDir, ref); err != nil {
				t.Fatal(err)
			}
			out, err := ctrd.Ctr(ns, "images", "ls")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), ref) || !strings.Contains(string(out), s.digest) {
				t.Errorf("ctr images ls: want %s at %s:\n%s", ref, s.digest, out)
			}
			// Without the hosts directory: no CA, no mirror.
			if _, err := ctrd.Ctr(ns+"-bare", "images", "pull", ref); err == nil {
				t.Errorf("ctr images pull %s without --hosts-dir succeeded", ref)
			}
			// The same files without their ca lines: the CA is what
			// makes TLS verify.
			noCA := withoutCALines(t, hostsDir)
			if _, err := ctrd.Ctr(ns+"-noca", "images", "pull", "--hosts-dir", noCA, ref); err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("ctr images pull %s with hosts.toml files naming no CA: %v, want a certificate error", ref, err)
			}
		})
	}
	t.Run("plain", func(t *testing.T) {
		dir := clientFiles(t, "containerd", "--registry", s.plainHost)
		if _, err := ctrd.Ctr("clientconf-plain", "images", "pull", "--hosts-dir", filepath.Join(dir, "etc/containerd/certs.d"), s.plainHost+"/demo/hello:latest"); err != nil {
			t.Fatal(err)
		}
	})
}

// withoutCALines copies the hosts.toml files of hostsDir, each without
// its "ca = …" line, into a new directory and returns it.
func withoutCALines(t *testing.T, hostsDir string) string {
	t.Helper()
	out := t.TempDir()
	files, err := filepath.Glob(filepath.Join(hostsDir, "*", "hosts.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no hosts.toml under %s (%v)", hostsDir, err)
	}
	for _, f := range files {
		var kept []string
		for _, line := range strings.Split(string(readFile(t, f)), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "ca = ") {
				kept = append(kept, line)
			}
		}
		dir := filepath.Join(out, filepath.Base(filepath.Dir(f)))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(strings.Join(kept, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
