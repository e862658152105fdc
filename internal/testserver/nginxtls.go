package testserver

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testca"

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
	ca := testca.New(t, "image-serve test CA")
	cert, key := ca.Server(t, 2)
	c := TestCA{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "server.crt"),
		KeyFile:  filepath.Join(dir, "server.key"),
	}
	for _, f := range []struct {
		path string
		pem  []byte
	}{{c.CAFile, ca.PEM}, {c.CertFile, cert}, {c.KeyFile, key}} {
		if err := os.WriteFile(f.path, f.pem, 0o644); err != nil {
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
