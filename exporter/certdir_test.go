package exporter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed certificate and its key as
// dir/name.cert (or .crt) and dir/name.key.
func writePair(t *testing.T, dir, certName, keyName string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if certName != "" {
		os.WriteFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	}
	if keyName != "" {
		os.WriteFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	}
}

func TestCertDirTLS(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "ca.crt", "")
	writePair(t, dir, "client.cert", "client.key")
	conf, err := certDirTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(conf.Certificates) != 1 || conf.RootCAs == nil {
		t.Errorf("config: %d client certificates, roots %v", len(conf.Certificates), conf.RootCAs != nil)
	}

	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"empty", func(string) {}, "no *.crt CA and no *.cert/*.key client pair"},
		{"missing", func(dir string) { os.Remove(dir) }, "no such file or directory"},
		{"cert without key", func(dir string) { writePair(t, dir, "c.cert", "") }, "client certificate"},
		{"key without cert", func(dir string) { writePair(t, dir, "ca.crt", "k.key") }, "has no certificate k.cert"},
		{"garbage CA", func(dir string) { os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("nope"), 0o644) }, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			if _, err := certDirTLS(dir); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--src-cert-dir") {
				t.Errorf("error %v, want --src-cert-dir … %q", err, tc.want)
			}
		})
	}
}
