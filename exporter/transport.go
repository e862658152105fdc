package exporter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Limits on a source registry's requests. A registry may be broken or
// hostile: every wait is bounded, so an export never hangs while it holds
// the tree lock that gc and delete wait for.
const (
	// DefaultSourceTimeout bounds each wait on a source: for a connection,
	// for response headers, and for the next byte of a body.
	DefaultSourceTimeout = 60 * time.Second
	// maxRedirects is Go's own default limit, which go-containerregistry's
	// redirect check leaves out.
	maxRedirects = 10
	// tlsHandshakeTimeout bounds a TLS handshake.
	tlsHandshakeTimeout = 10 * time.Second
)

// ErrStalled is wrapped by the error of a body read that got no byte for
// the source timeout: a stream cut in the middle, worth another try.
var ErrStalled = errors.New("stalled")

// maxIdlePerHost is how many idle connections a source keeps per
// registry: more than any --jobs anyone sets.
const maxIdlePerHost = 64

// sourceTransport is the HTTP transport under every request to a source
// registry, the ping, token requests and redirects included: connect, TLS
// handshake and response headers time out, a body fails when no byte
// arrives for timeout, redirects stop after maxRedirects whoever follows
// them, and unless insecure a request whose URL is not https is refused
// before anything is sent. Unless insecure, certificates are verified
// against the system's roots for every host, loopback and private
// addresses included. base, when not nil, replaces the network (tests).
func sourceTransport(insecure bool, timeout time.Duration, base http.RoundTripper) http.RoundTripper {
	return sourceTransportTLS(insecure, timeout, base, nil)
}

// sourceTransportTLS is sourceTransport verifying certificates with conf
// (a certs.d directory's CAs and client certificates), when not nil and
// not insecure, instead of the system's roots alone.
func sourceTransportTLS(insecure bool, timeout time.Duration, base http.RoundTripper, conf *tls.Config) http.RoundTripper {
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = min(timeout, tlsHandshakeTimeout)
		tr.ResponseHeaderTimeout = timeout
		// Keep a connection per transfer of a batch for the next one (the
		// default keeps two per host and dials again for the others).
		tr.MaxIdleConnsPerHost = maxIdlePerHost
		switch {
		case insecure:
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		case conf != nil:
			tr.TLSClientConfig = conf
		}
		base = tr
	}
	return &guardedTransport{inner: base, idle: timeout, insecure: insecure}
}

// guardedTransport enforces what every request to a source must respect,
// whoever makes it: go-containerregistry's ping (which tries http after
// https for loopback and private addresses), its token requests (whose
// realm the registry names), redirects, and our own requests.
type guardedTransport struct {
	inner    http.RoundTripper
	idle     time.Duration
	insecure bool
}

// plainHTTPError is a request refused because its URL is plain http while
// HTTPS is required.
type plainHTTPError struct{ url string }

func (e *plainHTTPError) Error() string {
	return fmt.Sprintf("refused to send a request to %s: HTTPS is required (--src-tls-verify=false allows plain HTTP)", e.url)
}

func (t *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if n := redirectsBefore(req); n >= maxRedirects {
		return nil, fmt.Errorf("%s %s: stopped after %d redirects", req.Method, req.URL.Redacted(), n)
	}
	if !t.insecure && req.URL.Scheme != "https" {
		return nil, &plainHTTPError{req.URL.Redacted()}
	}
	ctx, cancel := context.WithCancel(req.Context())
	resp, err := t.inner.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &idleBody{rc: resp.Body, idle: t.idle, cancel: cancel}
	return resp, nil
}

// redirectsBefore counts the redirect responses that led to req: an
// http.Client sets req.Response to the response that redirected it.
func redirectsBefore(req *http.Request) int {
	n := 0
	for r := req.Response; r != nil && r.Request != nil; r = r.Request.Response {
		n++
	}
	return n
}

// idleBody fails a read that gets no byte for idle, by cancelling the
// request. Only time spent waiting inside Read counts: a caller busy
// writing to a slow disk does not make the source look stalled.
type idleBody struct {
	rc      io.ReadCloser
	idle    time.Duration
	cancel  context.CancelFunc
	stalled atomic.Bool
}

func (b *idleBody) Read(p []byte) (int, error) {
	timer := time.AfterFunc(b.idle, func() {
		b.stalled.Store(true)
		b.cancel()
	})
	n, err := b.rc.Read(p)
	timer.Stop()
	if err != nil && err != io.EOF && b.stalled.Load() {
		err = fmt.Errorf("no data for %v: %w", b.idle, ErrStalled)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.cancel()
	return b.rc.Close()
}

// countingTransport counts the requests it sends.
type countingTransport struct {
	inner http.RoundTripper
	n     *atomic.Int64
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.inner.RoundTrip(req)
}
