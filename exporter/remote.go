package exporter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// RegistryOptions configure docker:// sources.
type RegistryOptions struct {
	Insecure  bool   // plain http and self-signed certificates (--src-tls-verify=false)
	Creds     string // USER[:PASS]
	AuthFile  string // a docker config.json or containers auth.json
	UserAgent string
	// Timeout bounds each wait on the registry: a connection, response
	// headers, the next byte of a body. 0 means DefaultSourceTimeout.
	Timeout time.Duration
	// CertDir is a certs.d directory (--src-cert-dir): its *.crt CAs are
	// trusted on top of the system's, its *.cert/*.key pairs offered as
	// client certificates. "" for none.
	CertDir string
	// Limits cap the requests in flight to the registry and their rate.
	// A run (a sync, an export batch) shares one limiter per registry
	// host among all its repositories: the first opened sets it.
	Limits RegistryLimits

	// pool, when set, is the connection pool every source of a batch
	// shares: one set of connections per registry, not one per image.
	pool *transportPool
	// retry is the retry policy; nil means defaultRetry. Tests shorten it.
	retry *retryPolicy
	// base, when set, replaces the network under every request (tests).
	// It must be comparable: it keys the pool.
	base http.RoundTripper
	// log receives a warning per retry; nil discards them.
	log *slog.Logger
	// requests, when set, counts every request sent to a registry, each
	// try of a retry, pings and token requests included (sync's report).
	requests *atomic.Int64
}

// transportPool hands out one transport per (insecure, timeout, base),
// shared by every registry source of a batch.
type transportPool struct {
	mu  sync.Mutex
	trs map[transportKey]http.RoundTripper
	// limiters are the run's, one per registry host (limiter).
	limiters map[string]*registryLimiter
	// schemes are the schemes registries answered on (https, or plain
	// http for an insecure one), so that a repository opened after the
	// first tries only that one.
	schemes map[string]string
	// discovery serialises finding a registry's scheme (discovering).
	discovery map[string]*sync.Mutex
	// clock, when set, replaces the real one under the limiters (tests).
	clock clock
}

// limiter returns the registry's limiter for the run, made with l the
// first time, and naming registry in the warnings it logs to log. There is
// one even when l sets no limit: a 429 may set a rate (tooMany). A nil
// pool makes a new one each time.
func (p *transportPool) limiter(registry string, l RegistryLimits, log *slog.Logger) *registryLimiter {
	if p == nil {
		rl := newRegistryLimiter(l, realClock{})
		rl.registry, rl.log = registry, log
		return rl
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if rl, ok := p.limiters[registry]; ok {
		return rl
	}
	if p.limiters == nil {
		p.limiters = map[string]*registryLimiter{}
	}
	c := p.clock
	if c == nil {
		c = realClock{}
	}
	rl := newRegistryLimiter(l, c)
	rl.registry, rl.log = registry, log
	p.limiters[registry] = rl
	return rl
}

type transportKey struct {
	insecure bool
	timeout  time.Duration
	base     http.RoundTripper
	certDir  string
}

// get returns the pool's transport for insecure, timeout and base; a nil
// pool makes a new one each time.
func (p *transportPool) get(insecure bool, timeout time.Duration, base http.RoundTripper) http.RoundTripper {
	tr, _ := p.getWithCerts(insecure, timeout, base, "") // no certs.d to fail to load
	return tr
}

// getWithCerts is get with the CAs and client certificates of certs.d
// directory certDir ("" for none), which may fail to load.
func (p *transportPool) getWithCerts(insecure bool, timeout time.Duration, base http.RoundTripper, certDir string) (http.RoundTripper, error) {
	if p == nil {
		return newSourceTransport(transportKey{insecure, timeout, base, certDir})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := transportKey{insecure, timeout, base, certDir}
	if p.trs == nil {
		p.trs = map[transportKey]http.RoundTripper{}
	}
	if p.trs[k] == nil {
		tr, err := newSourceTransport(k)
		if err != nil {
			return nil, err
		}
		p.trs[k] = tr
	}
	return p.trs[k], nil
}

func newSourceTransport(k transportKey) (http.RoundTripper, error) {
	if k.certDir == "" || k.insecure {
		return sourceTransport(k.insecure, k.timeout, k.base), nil
	}
	conf, err := certDirTLS(k.certDir)
	if err != nil {
		return nil, err
	}
	return sourceTransportTLS(k.insecure, k.timeout, k.base, conf), nil
}

// registry reads one repository of a registry with plain HTTP requests
// through one authenticated client, made by the repository's first
// request (sourceConn, exporter/probe.go): that request's answer is the
// ping, and go-containerregistry's transport handles the token exchange
// it calls for; under it, retryTransport retries requests that fail before a
// body arrives and guardedTransport refuses plain HTTP unless insecure.
// The bodies are ours to bound — manifests to tree.MaxManifestSize, blobs
// to their declared size — and to resume when cut; each is read once,
// hashed once, by the tree.
type registry struct {
	ref  name.Reference
	repo name.Repository
	// conn is the repository's client, made by its first request
	// (sourceConn): no ping, no token before a request needs one.
	conn *sourceConn
	// scheme is "https" unless insecure; insecure, go-containerregistry
	// sets the scheme its ping found to every request to the registry.
	scheme string
	retry  *retryPolicy
	log    *slog.Logger
}

func openRegistry(ctx context.Context, src SourceRef, o RegistryOptions) (*registry, error) {
	ref := src.ref
	if o.Insecure {
		var err error
		if ref, err = name.ParseReference(src.Path, name.StrictValidation, name.Insecure); err != nil {
			return nil, fmt.Errorf("source %s: %v", src, err)
		}
	}
	keychain, err := keychainFor(o)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	auth, err := authn.Resolve(ctx, keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("source %s: credentials: %v", src, err)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultSourceTimeout
	}
	policy, log := o.retry, o.log
	if policy == nil {
		policy = defaultRetry
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inner, err := o.pool.getWithCerts(o.Insecure, timeout, o.base, o.CertDir)
	if err != nil {
		return nil, err
	}
	inner = &limitedTransport{inner: inner, lim: o.pool.limiter(repo.RegistryStr(), o.Limits, log)}
	if o.requests != nil {
		inner = &countingTransport{inner: inner, n: o.requests}
	}
	var tr http.RoundTripper = &retryTransport{inner: inner, policy: policy, log: log}
	if o.UserAgent != "" {
		tr = transport.NewUserAgent(tr, o.UserAgent)
	}
	scheme := "https"
	if o.Insecure {
		scheme = repo.Scheme()
	}
	conn := &sourceConn{bare: tr, reg: repo.Registry, auth: auth, scopes: []string{repo.Scope(transport.PullScope)}, insecure: o.Insecure, pool: o.pool}
	return &registry{ref: ref, repo: repo, conn: conn, scheme: scheme, retry: policy, log: log}, nil
}

func keychainFor(o RegistryOptions) (authn.Keychain, error) {
	switch {
	case o.Creds != "":
		user, pass, _ := strings.Cut(o.Creds, ":")
		if user == "" {
			return nil, errors.New("--src-creds: empty user name")
		}
		return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}, nil
	case o.AuthFile != "":
		return loadAuthFile(o.AuthFile)
	default:
		return authn.DefaultKeychain, nil
	}
}

type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }

// fileKeychain resolves credentials from one auth file, docker or
// containers format (they share the "auths" schema).
type fileKeychain struct {
	path string
}

func loadAuthFile(path string) (authn.Keychain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--src-authfile: %w", err)
	}
	defer f.Close()
	if _, err := config.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("--src-authfile %s: %v", path, err)
	}
	return fileKeychain{path}, nil
}

func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	f, err := os.Open(k.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", k.path, err)
	}
	key := target.RegistryStr()
	if key == name.DefaultRegistry {
		key = authn.DefaultAuthKey
	}
	c, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, err
	}
	if c.Username == "" && c.Password == "" && c.Auth == "" && c.IdentityToken == "" && c.RegistryToken == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{
		Username: c.Username, Password: c.Password, Auth: c.Auth,
		IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken,
	}), nil
}

// manifestAccept is every manifest type the exporter stores, as the
// registry's content negotiation needs to hear it.
var manifestAccept = func() string {
	var types []string
	for _, t := range distribution.ManifestTypes() {
		types = append(types, t.MediaType)
	}
	return strings.Join(types, ", ")
}()

func (r *registry) Root(ctx context.Context) ([]byte, string, error) {
	id := ""
	switch ref := r.ref.(type) {
	case name.Tag:
		id = ref.TagStr()
	case name.Digest:
		id = ref.DigestStr()
	}
	return r.manifest(ctx, r.ref.String(), id)
}

func (r *registry) Manifest(ctx context.Context, d Descriptor) ([]byte, error) {
	raw, _, err := r.manifest(ctx, fmt.Sprintf("manifest %s of %s", d.Digest, r.repo), d.Digest.String())
	return raw, err
}

// manifest GETs manifest id (a tag or a digest), at most
// tree.MaxManifestSize bytes of it, and its Content-Type. A body cut short
// is fetched again whole, a try of the same count as its requests.
func (r *registry) manifest(ctx context.Context, what, id string) ([]byte, string, error) {
	ctx, tr := withTries(ctx)
	for {
		resp, err := r.get(ctx, "manifests/"+id, manifestAccept, "")
		if err != nil {
			return nil, "", registryError(what, err)
		}
		if resp.ContentLength > tree.MaxManifestSize {
			resp.Body.Close()
			// Refused unread: too big to hash, so named by its reference.
			return nil, "", fmt.Errorf("%s: a manifest of %d bytes, over the %d byte limit", what, resp.ContentLength, tree.MaxManifestSize)
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, tree.MaxManifestSize+1))
		resp.Body.Close()
		if err == nil {
			if len(raw) > tree.MaxManifestSize {
				return nil, "", fmt.Errorf("%s: over the %d byte limit", what, tree.MaxManifestSize)
			}
			mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
			return raw, strings.TrimSpace(mt), nil
		}
		if ctx.Err() != nil {
			return nil, "", registryError(what, err)
		}
		wait, ok := r.retry.next(tr, what, oneLine(err.Error()), 0)
		if !ok {
			return nil, "", registryError(what, giveUp(nil, err, tr.count()))
		}
		r.log.Warn("retrying", "manifest", what, "cause", oneLine(err.Error()), "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return nil, "", err
		}
	}
}

// Blob opens blob d as the registry sends it, refusing at once a body
// longer than the manifest declares. A body cut before its end — reset,
// truncated, or stalled for the source timeout — is resumed from the byte
// it stopped at, with a ranged request, as a try of the same count as
// the blob's requests (see retryPolicy); the reader hands out one
// unbroken stream. It does not verify the bytes: the tree hashes them
// once while writing them, and bounds the read to the declared size.
func (r *registry) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	ctx, tr := withTries(ctx)
	b := &blobReader{r: r, ctx: ctx, cancel: cancel, tries: tr, d: d}
	if err := b.open(fmt.Sprintf("blob %s of %s", d.Digest, r.repo)); err != nil {
		cancel()
		return nil, err
	}
	return b, nil
}

// get GETs path below the repository, asking for byte range rng unless it
// is "", and returns a 200 response, or a 206 one to a range; any other
// status is a *transport.Error, read from at most 64 KiB of body.
func (r *registry) get(ctx context.Context, path, accept, rng string) (*http.Response, error) {
	return r.do(ctx, http.MethodGet, r.url(path), accept, rng)
}

// url is the URL of path below the repository.
func (r *registry) url(path string) *url.URL {
	return &url.URL{Scheme: r.scheme, Host: r.repo.RegistryStr(), Path: "/v2/" + r.repo.RepositoryStr() + "/" + path}
}

// do sends a request of method for u as get does, with its answers.
func (r *registry) do(ctx context.Context, method string, u *url.URL, accept, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := r.conn.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && (rng == "" || resp.StatusCode != http.StatusPartialContent) {
		defer resp.Body.Close()
		resp.Body = io.NopCloser(io.LimitReader(resp.Body, 64<<10))
		return nil, transport.CheckError(resp, http.StatusOK)
	}
	return resp, nil
}

func (r *registry) Close() error {
	r.conn.closeIdle()
	return nil
}

// registryError turns go-containerregistry's errors into one line naming
// the object and the cause: no response bodies (JSON, HTML, several
// lines), no URL per scheme tried, and how many tries it took when there
// were several. The original error stays in the chain for errors.As.
func registryError(what string, err error) error {
	msg := registryMessage(what, err)
	if n := triedTimes(err); n > 1 {
		// Once, at the end, wherever the causes quoted said it.
		msg = strings.ReplaceAll(msg, triedSuffix(n), "") + triedSuffix(n)
	}
	return &sourceError{msg, err}
}

func registryMessage(what string, err error) string {
	var te *transport.Error
	var oe *net.OpError
	var ue *url.Error
	var ce *tls.CertificateVerificationError
	var pe *plainHTTPError
	switch {
	case answeredPlainHTTP(err):
		return what + ": the registry answered plain HTTP where HTTPS is required (--src-tls-verify=false allows it)"
	case errors.As(err, &ce):
		return fmt.Sprintf("%s: the registry's certificate is not trusted: %s (--src-tls-verify=false skips the check)", what, oneLine(ce.Err.Error()))
	case errors.As(err, &te):
		status := fmt.Sprintf("HTTP %d", te.StatusCode)
		if len(te.Errors) > 0 {
			status += " " + string(te.Errors[0].Code)
			if m := oneLine(te.Errors[0].Message); m != "" {
				status += ": " + m
			}
		}
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Sprintf("%s: authentication failed (%s)", what, status)
		case http.StatusNotFound:
			return fmt.Sprintf("%s: not found (%s)", what, status)
		}
		return fmt.Sprintf("%s: the registry answered %s", what, status)
	case errors.As(err, &oe):
		return fmt.Sprintf("%s: cannot reach the registry: %v", what, oe)
	case errors.As(err, &ue) && ue.Timeout():
		return fmt.Sprintf("%s: the registry did not answer in time (%s)", what, oneLine(ue.Err.Error()))
	case errors.As(err, &pe):
		return what + ": " + pe.Error()
	case strings.Contains(err.Error(), `realm scheme "http" not allowed`):
		return what + ": the registry's token realm is plain HTTP where HTTPS is required (--src-tls-verify=false allows it)"
	}
	if m := manifestDigestMismatch.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Sprintf("%s: content does not match its digest (got %s)", what, m[1])
	}
	return fmt.Sprintf("%s: %s", what, oneLine(err.Error()))
}

// answeredPlainHTTP reports a server that answered plain HTTP to a TLS
// handshake: Go's client says so with http.ErrSchemeMismatch, its
// transport with a TLS record header that reads "HTTP/".
func answeredPlainHTTP(err error) bool {
	var rh tls.RecordHeaderError
	return errors.Is(err, http.ErrSchemeMismatch) || (errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/")
}

// manifestDigestMismatch is go-containerregistry's complaint about a
// manifest fetched by digest whose bytes hash to another.
var manifestDigestMismatch = regexp.MustCompile(`^manifest digest: "([^"]+)" does not match requested digest`)

// sourceError is an error reworded for people, wrapping the original.
type sourceError struct {
	msg string
	err error
}

func (e *sourceError) Error() string { return e.msg }
func (e *sourceError) Unwrap() error { return e.err }

// oneLine joins the lines of s, so one error stays one line of output.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// blobReader is the body of a blob, resumed where it was cut: a body that
// fails or ends before the declared size is closed, and after the
// policy's wait the rest is asked for with a Range request. A 206 answer
// must start at the byte asked for; a 200 answer (a source that ignores
// ranges) or a 416 (one that refuses them, asked again without a range)
// is the whole blob again, whose bytes already handed out are skipped. It
// counts, it does not hash: the tree hashes the one stream it reads.
//
// Close may be called while a Read is in progress in another goroutine
// (the tree's read-ahead): it closes the current body and cancels a wait
// or request of a resumption, which then ends that Read.
type blobReader struct {
	r      *registry
	ctx    context.Context // carries tries; cancelled by Close
	cancel context.CancelFunc
	tries  *tries
	d      Descriptor
	n      int64 // bytes handed out
	start  int64 // n when the current body began
	cut    error // why the last body ended early

	mu     sync.Mutex
	rc     io.ReadCloser // the current body; nil after a cut
	closed bool
}

// errBlobClosed is what a Read after Close returns.
var errBlobClosed = errors.New("read after close")

// body is the current body, nil after a cut, or errBlobClosed.
func (b *blobReader) body() (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errBlobClosed
	}
	return b.rc, nil
}

// setBody makes rc the current body; after Close it closes rc instead.
func (b *blobReader) setBody(rc io.ReadCloser) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		rc.Close()
		return errBlobClosed
	}
	b.rc = rc
	return nil
}

// dropBody closes rc, the body just cut, and forgets it.
func (b *blobReader) dropBody(rc io.ReadCloser) {
	b.mu.Lock()
	if b.rc == rc {
		b.rc = nil
	}
	b.mu.Unlock()
	rc.Close()
}

// open GETs the blob from byte b.n on, naming what in its errors.
func (b *blobReader) open(what string) error {
	rng := ""
	if b.n > 0 {
		rng = fmt.Sprintf("bytes=%d-", b.n)
		if b.d.Size >= 0 {
			// The last byte too: some registries (go-containerregistry's
			// own) refuse a range without an end.
			rng += strconv.FormatInt(b.d.Size-1, 10)
		}
	}
	path := "blobs/" + b.d.Digest.String()
	resp, err := b.r.get(b.ctx, path, "", rng)
	var te *transport.Error
	if rng != "" && errors.As(err, &te) && te.StatusCode == http.StatusRequestedRangeNotSatisfiable {
		// A source that refuses ranges: the whole blob again.
		resp, err = b.r.get(b.ctx, path, "", "")
	}
	if err != nil {
		return registryError(what, err)
	}
	skip, want := int64(0), b.d.Size
	if resp.StatusCode == http.StatusPartialContent {
		if err := checkContentRange(resp.Header.Get("Content-Range"), b.n, b.d.Size); err != nil {
			resp.Body.Close()
			return &sourceError{fmt.Sprintf("%s: %v", what, err), err}
		}
		if want >= 0 {
			want -= b.n
		}
	} else {
		skip = b.n
	}
	if want >= 0 && resp.ContentLength > want {
		resp.Body.Close()
		if resp.StatusCode == http.StatusPartialContent {
			return fmt.Errorf("%s: the registry sends %d bytes from byte %d on, the manifest declares %d in all", what, resp.ContentLength, b.n, b.d.Size)
		}
		return fmt.Errorf("%s: the registry sends %d bytes, the manifest declares %d", what, resp.ContentLength, b.d.Size)
	}
	b.start = b.n
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			resp.Body.Close()
			b.cut = err
			return nil // another cut, without progress
		}
	}
	return b.setBody(resp.Body)
}

// checkContentRange checks that a 206 answer to a request for the bytes
// from from on (to the end of a blob of size, -1 when unknown) starts
// there and, when size is known, ends at the blob's end.
func checkContentRange(v string, from, size int64) error {
	bad := fmt.Errorf("the registry answered Content-Range %q to a request for bytes %d-", v, from)
	unit, rest, _ := strings.Cut(v, " ")
	rng, total, ok := strings.Cut(rest, "/")
	first, last, ok2 := strings.Cut(rng, "-")
	if unit != "bytes" || !ok || !ok2 {
		return bad
	}
	start, err1 := strconv.ParseInt(first, 10, 64)
	end, err2 := strconv.ParseInt(last, 10, 64)
	if err1 != nil || err2 != nil || start != from {
		return bad
	}
	if size >= 0 && (end != size-1 || (total != "*" && total != strconv.FormatInt(size, 10))) {
		return bad
	}
	return nil
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		rc, err := b.body()
		if err != nil {
			return 0, err
		}
		if rc == nil {
			if err := b.resume(); err != nil {
				return 0, err
			}
			continue
		}
		n, err := rc.Read(p)
		b.n += int64(n)
		if err == nil || (err == io.EOF && (b.d.Size < 0 || b.n >= b.d.Size)) {
			return n, err
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if b.ctx.Err() != nil {
			return n, b.cutError(err)
		}
		b.dropBody(rc)
		b.cut = err
		if n > 0 {
			return n, nil
		}
	}
}

// resume asks for the rest of the blob after a cut, when the policy
// allows another try.
func (b *blobReader) resume() error {
	if b.n-b.start >= resumeProgress {
		b.tries.progress()
	}
	cause := oneLine(b.cut.Error())
	wait, ok := b.r.retry.next(b.tries, fmt.Sprintf("blob %s from byte %d", b.d.Digest, b.n), cause, 0)
	if !ok {
		return giveUp(nil, b.cutError(b.cut), b.tries.count())
	}
	b.r.log.Warn("retrying", "blob", b.d.Digest, "from_byte", b.n, "cause", cause, "wait", wait)
	if err := sleep(b.ctx, wait); err != nil {
		return err
	}
	what := fmt.Sprintf("resuming after %d bytes", b.n)
	if b.d.Size >= 0 {
		what = fmt.Sprintf("resuming after %d of %d bytes", b.n, b.d.Size)
	}
	return b.open(what)
}

// cutError words a body cut after b.n bytes.
func (b *blobReader) cutError(err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) && b.d.Size >= 0:
		return fmt.Errorf("stream truncated after %d of %d bytes: %w", b.n, b.d.Size, err)
	case b.d.Size >= 0:
		return fmt.Errorf("stream cut after %d of %d bytes: %w", b.n, b.d.Size, err)
	}
	return fmt.Errorf("stream cut after %d bytes: %w", b.n, err)
}

func (b *blobReader) Close() error {
	b.mu.Lock()
	rc := b.rc
	b.rc, b.closed = nil, true
	b.mu.Unlock()
	b.cancel()
	if rc == nil {
		return nil
	}
	return rc.Close()
}
