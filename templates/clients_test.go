package templates

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

// testCAPEM is a self-signed CA certificate, and the PEM of its key.
func testCAPEM(t *testing.T) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// byPath is files keyed by their target path.
func byPath(t *testing.T, kind string, c Client) map[string]ClientFile {
	t.Helper()
	files, err := ClientFiles(kind, c)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ClientFile{}
	for _, f := range files {
		if !strings.HasPrefix(f.Path, "/etc/") {
			t.Errorf("%s: not under /etc/", f.Path)
		}
		m[f.Path] = f
	}
	return m
}

// hasLines says whether every line of want is a line of text, in order,
// the first ones adjacent as written.
func hasLines(text, want string) bool { return strings.Contains("\n"+text, "\n"+want) }

// TestClientPodman: one drop-in; with a CA, the CA under
// /etc/containers/certs.d/HOST:PORT/ and no insecure; without one,
// insecure = true for the registry and each mirror; each --mirror-of a
// registry of its own prefix whose first mirror is this registry, with
// pull-from-mirror = "digest-only" offered commented out.
func TestClientPodman(t *testing.T) {
	ca, _ := testCAPEM(t)
	const drop = "/etc/containers/registries.conf.d/50-image-serve-reg.example-5000.conf"
	files := byPath(t, "podman", Client{Registry: "reg.example:5000", CA: ca, MirrorOf: []string{"quay.io", "registry.redhat.io"}})
	if len(files) != 2 || string(files["/etc/containers/certs.d/reg.example:5000/ca.crt"].Content) != string(ca) {
		t.Fatalf("want the drop-in and the CA under certs.d/reg.example:5000, got %v", files)
	}
	conf := string(files[drop].Content)
	if strings.Contains(conf, "insecure") {
		t.Errorf("with a CA, the drop-in says insecure:\n%s", conf)
	}
	for _, want := range []string{
		"[[registry]]\nlocation = \"reg.example:5000\"\n",
		"[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n\n[[registry.mirror]]\nlocation = \"reg.example:5000\"\n",
		"[[registry]]\nprefix = \"registry.redhat.io\"\nlocation = \"registry.redhat.io\"\n\n[[registry.mirror]]\nlocation = \"reg.example:5000\"\n",
		"# pull-from-mirror = \"digest-only\"\n",
	} {
		if !hasLines(conf, want) {
			t.Errorf("drop-in lacks\n%s\nin\n%s", want, conf)
		}
	}

	files = byPath(t, "podman", Client{Registry: "reg.example:5000", MirrorOf: []string{"quay.io"}})
	conf = string(files[drop].Content)
	if len(files) != 1 || strings.Count(conf, "\ninsecure = true\n") != 2 {
		t.Errorf("without a CA: want the drop-in alone, insecure for the registry and its mirror use:\n%s", conf)
	}
}

// TestClientContainerd: hosts.toml for the registry (https with the CA
// beside it, named relative to the file; http without one), and for each
// upstream a hosts.toml whose server is the upstream and whose first host
// is this registry; Docker Hub by its API host.
func TestClientContainerd(t *testing.T) {
	ca, _ := testCAPEM(t)
	files := byPath(t, "containerd", Client{Registry: "10.0.0.1:8787", CA: ca, MirrorOf: []string{"quay.io", "index.docker.io"}})
	for path, want := range map[string]string{
		"/etc/containerd/certs.d/10.0.0.1:8787/hosts.toml": "server = \"https://10.0.0.1:8787\"\n\n[host.\"https://10.0.0.1:8787\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"ca.crt\"\n",
		"/etc/containerd/certs.d/quay.io/hosts.toml":       "server = \"https://quay.io\"\n\n[host.\"https://10.0.0.1:8787\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"../10.0.0.1:8787/ca.crt\"\n",
		"/etc/containerd/certs.d/docker.io/hosts.toml":     "server = \"https://registry-1.docker.io\"\n\n[host.\"https://10.0.0.1:8787\"]\n",
		"/etc/containerd/certs.d/10.0.0.1:8787/ca.crt":     string(ca),
	} {
		if f, ok := files[path]; !ok || !hasLines(string(f.Content), want) {
			t.Errorf("%s: want\n%s\ngot\n%s", path, want, f.Content)
		}
	}
	if len(files) != 4 {
		t.Errorf("%d files, want 4", len(files))
	}
	files = byPath(t, "containerd", Client{Registry: "10.0.0.1:8787"})
	want := "server = \"http://10.0.0.1:8787\"\n\n[host.\"http://10.0.0.1:8787\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if f := files["/etc/containerd/certs.d/10.0.0.1:8787/hosts.toml"]; len(files) != 1 || !hasLines(string(f.Content), want) || strings.Contains(string(f.Content), "ca =") {
		t.Errorf("without a CA: want one hosts.toml with\n%s\ngot %v", want, files)
	}
}

// TestClientDocker: daemon.json keys — insecure-registries without a CA,
// registry-mirrors for Docker Hub whatever it is called — and the CA
// under /etc/docker/certs.d/; a mirror of anything else is refused, since
// Docker would ignore it.
func TestClientDocker(t *testing.T) {
	ca, _ := testCAPEM(t)
	daemon := func(files map[string]ClientFile) map[string][]string {
		var keys map[string][]string
		if err := json.Unmarshal(files["/etc/docker/daemon.json"].Content, &keys); err != nil {
			t.Fatalf("daemon.json: %v", err)
		}
		return keys
	}
	keys := daemon(byPath(t, "docker", Client{Registry: "r:5000", MirrorOf: []string{"registry-1.docker.io"}}))
	if strings.Join(keys["insecure-registries"], " ") != "r:5000" || strings.Join(keys["registry-mirrors"], " ") != "http://r:5000" || len(keys) != 2 {
		t.Errorf("no CA, mirror of Docker Hub: %v", keys)
	}
	files := byPath(t, "docker", Client{Registry: "r:5000", CA: ca, MirrorOf: []string{"docker.io"}})
	if keys := daemon(files); strings.Join(keys["registry-mirrors"], " ") != "https://r:5000" || len(keys) != 1 {
		t.Errorf("CA, mirror of Docker Hub: %v", keys)
	}
	if string(files["/etc/docker/certs.d/r:5000/ca.crt"].Content) != string(ca) {
		t.Errorf("no CA under /etc/docker/certs.d/r:5000/: %v", files)
	}
	if files := byPath(t, "docker", Client{Registry: "r:5000", CA: ca}); len(files) != 1 {
		t.Errorf("a CA and no mirror: want the CA alone, got %v", files)
	}
	var ce *ClientError
	if _, err := ClientFiles("docker", Client{Registry: "r:5000", MirrorOf: []string{"quay.io"}}); !errors.As(err, &ce) || ce.Flag != "--mirror-of" {
		t.Errorf("docker --mirror-of quay.io: %v, want a --mirror-of *ClientError", err)
	}
}

// TestClientRefuses: what is not a registry host, a mirror host, or PEM
// certificates is a *ClientError naming the flag. Guards: a URL or a
// path as --mirror-of would render a prefix that matches nothing, and a
// private key as --ca would be copied to a world-readable file.
func TestClientRefuses(t *testing.T) {
	ca, key := testCAPEM(t)
	for _, tc := range []struct {
		c    Client
		flag string
	}{
		{Client{}, "--registry"},
		{Client{Registry: "http://r:5000"}, "--registry"},
		{Client{Registry: "r:5000/ns"}, "--registry"},
		{Client{Registry: "r:0"}, "--registry"},
		{Client{Registry: "r:99999"}, "--registry"},
		{Client{Registry: "r\"x"}, "--registry"},
		{Client{Registry: "r:5000", MirrorOf: []string{"https://quay.io"}}, "--mirror-of"},
		{Client{Registry: "r:5000", MirrorOf: []string{"quay.io/ns"}}, "--mirror-of"},
		{Client{Registry: "r:5000", MirrorOf: []string{""}}, "--mirror-of"},
		{Client{Registry: "r:5000", MirrorOf: []string{"quay io"}}, "--mirror-of"},
		{Client{Registry: "r:5000", MirrorOf: []string{"r:5000"}}, "--mirror-of"},
		{Client{Registry: "r:5000", CA: []byte("not pem\n")}, "--ca"},
		{Client{Registry: "r:5000", CA: key}, "--ca"},
		{Client{Registry: "r:5000", CA: append(append([]byte{}, ca...), "trailing junk\n"...)}, "--ca"},
		{Client{Registry: "r:5000", CA: []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}, "--ca"},
	} {
		for _, kind := range ClientKinds {
			var ce *ClientError
			if _, err := ClientFiles(kind, tc.c); !errors.As(err, &ce) || ce.Flag != tc.flag {
				t.Errorf("%s %+v: %v, want a %s *ClientError", kind, tc.c, err, tc.flag)
			}
		}
	}
	for _, ok := range []string{"r", "r:5000", "10.0.0.1:8787", "[fd00::1]:8787", "undercloud.ctlplane.example"} {
		if _, err := ClientFiles("podman", Client{Registry: ok, MirrorOf: []string{"quay.io:443"}}); err != nil {
			t.Errorf("--registry %s: %v", ok, err)
		}
	}
	if _, err := ClientFiles("cri-o", Client{Registry: "r:5000"}); err == nil {
		t.Error("an unknown client was taken")
	}
}
