package exporter

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// A repository's client is made at its first request, not before: that
// request goes out without credentials, and its answer serves as the ping
// go-containerregistry would otherwise send (GET /v2/) — a 401 carries
// the challenge the token exchange needs, any other answer says none is
// needed. A registry that needs no credentials is never pinged, so a sync
// rerun costs one request per tag and nothing more; one that does is sent
// no more than a ping would have cost (the 401, the token, the request
// again with it).

// maxProbeDrain bounds what is read of a 401's body before the request
// is sent again, so that its connection can be reused.
const maxProbeDrain = 64 << 10

// sourceConn is one repository's client, made by its first request and
// shared by every copy of the registry reading it (registry.at).
type sourceConn struct {
	mu     sync.Mutex
	client *http.Client // nil until the first answer

	bare   http.RoundTripper // below authentication: retries, limits, TLS rules
	reg    name.Registry
	auth   authn.Authenticator
	scopes []string
	// insecure: the first request tries https and then plain http, as
	// go-containerregistry's ping does for an insecure registry.
	insecure bool
	pool     *transportPool // remembers the scheme a registry answered on
}

// do sends req through the repository's client, making it first when
// none is made yet. The first requests of a repository wait for the one
// that makes it.
func (c *sourceConn) do(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if cl := c.client; cl != nil {
		c.mu.Unlock()
		return cl.Do(req)
	}
	defer c.mu.Unlock()
	return c.first(req)
}

// first sends req bare on each scheme to try until one answers, makes the
// client from that answer (seeding the ping go-containerregistry asks
// for), and returns the answer — or, for a 401, the answer to req sent
// again through the authenticated client.
func (c *sourceConn) first(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	seeds := &pingCache{}
	schemes := c.schemes()
	found := func() {}
	if len(schemes) > 1 {
		// The first repositories of a batch start together: one finds the
		// scheme, the others wait for it instead of each sending its own
		// TLS hello to a registry that may speak plain http.
		found = sync.OnceFunc(c.pool.discovering(c.reg.RegistryStr()))
		defer found()
		schemes = c.schemes()
	}
	if len(schemes) == 1 && schemes[0] == "http" {
		// Found earlier in the run: https is not asked again.
		seeds.seed(c.reg, "https", &pingAnswer{err: errors.New(c.reg.RegistryStr() + " answers plain http")})
	}
	var errs []error
	for i, scheme := range schemes {
		pctx := ctx
		if i < len(schemes)-1 {
			pctx = tryOnce(ctx) // the next scheme is the retry
		}
		probe := req.Clone(pctx)
		u := *req.URL
		u.Scheme = scheme
		probe.URL = &u
		resp, err := (&http.Client{Transport: c.bare}).Do(probe)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			seeds.seed(c.reg, scheme, &pingAnswer{err: err})
			errs = append(errs, err)
			if scheme == "https" && answersPlainHTTP(err) {
				// Settled: the others go straight to http, alongside
				// this request's own try.
				c.pool.rememberScheme(c.reg.RegistryStr(), "http")
				found()
			}
			continue
		}
		answer := &pingAnswer{status: http.StatusOK}
		if resp.StatusCode == http.StatusUnauthorized {
			answer.status, answer.header = resp.StatusCode, resp.Header.Clone()
		}
		seeds.seed(c.reg, scheme, answer)
		rt, err := transport.NewWithContext(ctx, c.reg, c.auth, &pingTransport{inner: c.bare, cache: seeds}, c.scopes)
		if err != nil {
			resp.Body.Close()
			return nil, err
		}
		c.client = &http.Client{Transport: rt}
		c.pool.rememberScheme(c.reg.RegistryStr(), scheme)
		if answer.status != http.StatusUnauthorized {
			return resp, nil
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeDrain))
		resp.Body.Close()
		return c.client.Do(req)
	}
	// The last scheme's error is the one to report: an insecure
	// registry's https failed because it speaks plain http.
	return nil, errs[len(errs)-1]
}

// answersPlainHTTP reports whether err is a TLS client's on meeting a
// server that answered its hello with something other than TLS — a
// plain-HTTP registry's 400 — rather than a refusal or a timeout, which
// say nothing of the scheme.
func answersPlainHTTP(err error) bool {
	var rec tls.RecordHeaderError
	return errors.Is(err, http.ErrSchemeMismatch) || errors.As(err, &rec)
}

// schemes are the schemes the first request tries, in order: https, then
// plain http for an insecure registry — unless the run already found
// which one the registry answers on.
func (c *sourceConn) schemes() []string {
	if s := c.pool.scheme(c.reg.RegistryStr()); s != "" {
		return []string{s}
	}
	if c.insecure {
		return []string{"https", "http"}
	}
	return []string{"https"}
}

// closeIdle releases the client's idle connections.
func (c *sourceConn) closeIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		c.client.CloseIdleConnections()
	}
}

// rememberScheme records the scheme registry answered on, for the
// repositories of the run opened after. A nil pool remembers nothing.
func (p *transportPool) rememberScheme(registry, scheme string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.schemes == nil {
		p.schemes = map[string]string{}
	}
	p.schemes[registry] = scheme
}

// discovering holds the run's lock on finding registry's scheme until the
// returned function is called. A nil pool holds nothing.
func (p *transportPool) discovering(registry string) (unlock func()) {
	if p == nil {
		return func() {}
	}
	p.mu.Lock()
	if p.discovery == nil {
		p.discovery = map[string]*sync.Mutex{}
	}
	m := p.discovery[registry]
	if m == nil {
		m = &sync.Mutex{}
		p.discovery[registry] = m
	}
	p.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// scheme is the scheme registry answered on earlier in the run, "" when
// none is known.
func (p *transportPool) scheme(registry string) string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.schemes[registry]
}

// pingCache holds the answers a repository's first request gave, one per
// scheme tried, for go-containerregistry's ping (GET /v2/ on each scheme
// it tries) to read instead of asking the registry.
type pingCache struct {
	mu      sync.Mutex
	answers map[string]*pingAnswer
}

// pingAnswer is what a ping of one scheme reads: a status (200, or 401
// with its challenge headers), or the error the scheme failed with.
type pingAnswer struct {
	status int
	header http.Header
	err    error
}

func pingKey(scheme, host string) string { return scheme + "://" + host + "/v2/" }

func (c *pingCache) seed(reg name.Registry, scheme string, a *pingAnswer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.answers == nil {
		c.answers = map[string]*pingAnswer{}
	}
	c.answers[pingKey(scheme, reg.RegistryStr())] = a
}

func (c *pingCache) answer(key string) *pingAnswer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.answers[key]
}

// pingTransport answers go-containerregistry's pings from the cache and
// sends every other request — and a ping of a scheme not in the cache —
// through inner.
type pingTransport struct {
	inner http.RoundTripper
	cache *pingCache
}

func isPing(req *http.Request) bool {
	return req.Method == http.MethodGet && req.URL.Path == "/v2/" && req.URL.RawQuery == "" && req.Header.Get("Authorization") == ""
}

func (t *pingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isPing(req) {
		return t.inner.RoundTrip(req)
	}
	a := t.cache.answer(pingKey(req.URL.Scheme, req.URL.Host))
	if a == nil {
		return t.inner.RoundTrip(req)
	}
	if a.err != nil {
		return nil, a.err
	}
	return &http.Response{
		Status:     fmt.Sprintf("%d %s", a.status, http.StatusText(a.status)),
		StatusCode: a.status,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  a.header.Clone(),
		Body:    http.NoBody,
		Request: req,
	}, nil
}
