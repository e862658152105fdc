package testserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

// TestCA is a certificate authority made for one test, and a server
// certificate it signed for 127.0.0.1 and localhost.
type TestCA struct {
	// CAFile is the authority's certificate, PEM: what clients trust.
	CAFile string
	// CertFile and KeyFile are the server's certificate and key, PEM.
	CertFile, KeyFile string
}

// NewTestCA writes a fresh CA and a server certificate it signs, valid
// from an hour ago for a day, into a directory a server running as
// another user can read.
func NewTestCA(t testing.TB) TestCA {
	t.Helper()
	dir := SharedTempDir(t, "image-serve-ca-")
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "image-serve test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := TestCA{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	for _, f := range []struct {
		path, kind string
		der        []byte
	}{{c.CAFile, "CERTIFICATE", caDER}, {c.CertFile, "CERTIFICATE", leafDER}, {c.KeyFile, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// NginxTLS serves root with the standalone nginx Nginx starts, plus a
// second listener on another free 127.0.0.1 port that speaks TLS with
// ca's server certificate. It returns the plain-HTTP base URL and the TLS
// listener's "127.0.0.1:<port>". The TLS listener is a line added to the
// rendered server block — the image-serve nginx template has no TLS of
// its own — so every location is the template's; the plain one is what
// the start-up check polls.
func NginxTLS(t testing.TB, root *tree.Root, ca TestCA) (baseURL, tlsHost string) {
	t.Helper()
	account, group := serverAccount(t)
	render := func(t testing.TB, listen, runDir string) string {
		conf := writeNginxConfig(t, templates.Nginx{
			Listen: listen, Root: root, Standalone: true, RunDir: runDir, User: account, Group: group,
		})
		b, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		tlsHost = "127.0.0.1:" + strconv.Itoa(freePort(t))
		plain := "    listen " + listen + ";\n"
		if strings.Count(string(b), plain) != 1 {
			t.Fatalf("nginx config: want one %q line to add the TLS listener after", plain)
		}
		tls := fmt.Sprintf("    listen %s ssl;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n", tlsHost, ca.CertFile, ca.KeyFile)
		if err := os.WriteFile(conf, []byte(strings.Replace(string(b), plain, plain+tls, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}
	baseURL = Nginx(t, root, WithNginxConfig(render))
	return baseURL, tlsHost
}
