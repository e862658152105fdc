package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// Certs is a certificate and key pair read from two files and read again
// when they change: every TLS handshake stats both files (two stat(2)
// calls, beside a handshake's cost), and a pair whose files differ from
// the ones loaded — another inode, size or modification time — is loaded
// for that handshake on. Reload does the same on demand (SIGHUP). A new
// pair that does not load (half written, a key that does not match) is
// logged once at ERROR and the pair loaded before keeps serving, until
// the files change again.
type Certs struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  certStamp  // the files cert was read from
	refused *certStamp // the last files that failed to load, if any
}

// certStamp identifies the contents of the two files without reading
// them.
type certStamp [2]fileStamp

type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	return s, nil
}

func (c *Certs) stamp() (certStamp, error) {
	var s certStamp
	var err error
	if s[0], err = stampOf(c.certFile); err != nil {
		return s, err
	}
	s[1], err = stampOf(c.keyFile)
	return s, err
}

// LoadCerts reads the PEM certificate chain in certFile and the key in
// keyFile; an error names the file and the cause, for a clear refusal at
// start. A nil log discards the reload messages.
func LoadCerts(certFile, keyFile string, log *slog.Logger) (*Certs, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certs{certFile: certFile, keyFile: keyFile, log: log}
	cert, err := c.load()
	if err != nil {
		return nil, err
	}
	s, err := c.stamp()
	if err != nil {
		return nil, err
	}
	c.cert, c.loaded = cert, s
	return c, nil
}

// load reads the pair, with errors that name the files.
func (c *Certs) load() (*tls.Certificate, error) {
	for _, f := range []string{c.certFile, c.keyFile} {
		if _, err := os.ReadFile(f); err != nil {
			return nil, err
		}
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s and key %s: %w", c.certFile, c.keyFile, err)
	}
	return &cert, nil
}

var errUnchangedCerts = errors.New("TLS certificate and key unchanged since they failed to load")

// Reload reads the pair again if its files changed, and reports whether
// it now serves a new pair; a pair that does not load is logged (once
// for the same files) and returned as the error, and the old one stays.
func (c *Certs) Reload() (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked()
}

func (c *Certs) reloadLocked() (bool, error) {
	// Where a stat fails, s holds what was read before it: the same
	// until the files change again, so a missing file is logged once too.
	s, err := c.stamp()
	if err == nil && s == c.loaded {
		return false, nil
	}
	if c.refused != nil && s == *c.refused {
		return false, errUnchangedCerts
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = c.load()
	}
	if err != nil {
		c.refused = &s
		c.log.Error("TLS certificate not reloaded: serving the previous one", "cert", c.certFile, "key", c.keyFile, "err", err)
		return false, err
	}
	c.cert, c.loaded, c.refused = cert, s, nil
	c.log.Info("TLS certificate reloaded", "cert", c.certFile, "serial", cert.Leaf.SerialNumber.String(), "not_after", cert.Leaf.NotAfter)
	return true, nil
}

// getCertificate is tls.Config.GetCertificate: the pair, reloaded first
// if its files changed.
func (c *Certs) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.reloadLocked() // a failure is logged, and the old pair serves
	return c.cert, nil
}

// TLSConfig is the server's TLS configuration: certs' pair, HTTP/2 and
// HTTP/1.1 by ALPN, TLS 1.2 at least, and with clientCAFile (a PEM
// bundle) mutual TLS: a client without a certificate those CAs signed is
// refused at the handshake.
func TLSConfig(certs *Certs, clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA %s: no PEM certificate in it", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
