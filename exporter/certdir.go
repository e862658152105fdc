package exporter

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// certDirTLS is the TLS configuration a certs.d directory asks for, as
// containers tools read one (containers/image's tlsclientconfig): every
// *.crt is a CA trusted on top of the system's roots, and every *.cert
// with the *.key of the same name is a client certificate offered to the
// registry. A *.cert without its *.key, or a key without its
// certificate, is an error, as is a file that does not parse; a
// directory with none of them is one too (a mistyped path would
// otherwise be trusted to mean something).
func certDirTLS(dir string) (*tls.Config, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("--src-cert-dir: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	conf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	found := false
	for _, n := range names {
		path := filepath.Join(dir, n)
		switch filepath.Ext(n) {
		case ".crt":
			pem, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("--src-cert-dir: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--src-cert-dir: %s: no PEM certificate in it", path)
			}
			found = true
		case ".cert":
			key := strings.TrimSuffix(path, ".cert") + ".key"
			pair, err := tls.LoadX509KeyPair(path, key)
			if err != nil {
				return nil, fmt.Errorf("--src-cert-dir: client certificate %s with key %s: %v", path, key, err)
			}
			conf.Certificates = append(conf.Certificates, pair)
			found = true
		case ".key":
			if _, err := os.Stat(strings.TrimSuffix(path, ".key") + ".cert"); err != nil {
				return nil, fmt.Errorf("--src-cert-dir: key %s has no certificate %s", path, strings.TrimSuffix(n, ".key")+".cert")
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("--src-cert-dir %s: no *.crt CA and no *.cert/*.key client pair in it", dir)
	}
	return conf, nil
}
