package exporter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
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

	// pool, when set, is the connection pool every source of a batch
	// shares: one set of connections per registry, not one per image.
	pool *transportPool
	// base, when set, replaces the network under every request (tests).
	// It must be comparable: it keys the pool.
	base http.RoundTripper
}

// transportPool hands out one transport per (insecure, timeout, base),
// shared by every registry source of a batch.
type transportPool struct {
	mu  sync.Mutex
	trs map[transportKey]http.RoundTripper
}

type transportKey struct {
	insecure bool
	timeout  time.Duration
	base     http.RoundTripper
}

// get returns the pool's transport for insecure, timeout and base; a nil
// pool makes a new one each time.
func (p *transportPool) get(insecure bool, timeout time.Duration, base http.RoundTripper) http.RoundTripper {
	if p == nil {
		return sourceTransport(insecure, timeout, base)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := transportKey{insecure, timeout, base}
	if p.trs == nil {
		p.trs = map[transportKey]http.RoundTripper{}
	}
	if p.trs[k] == nil {
		p.trs[k] = sourceTransport(insecure, timeout, base)
	}
	return p.trs[k]
}

// registry reads one repository of a registry over plain HTTP requests
// through one authenticated client: go-containerregistry's transport
// handles the ping (once per export, not once per request), the token
// exchange, and retries of requests that fail before a body arrives;
// under it guardedTransport refuses plain HTTP unless insecure. The
// bodies are ours to bound: manifests to tree.MaxManifestSize, blobs to
// their declared size (catalog counts while it writes), and each is read
// once, hashed once, by the tree.
type registry struct {
	ref    name.Reference
	repo   name.Repository
	client *http.Client
	// scheme is "https" unless insecure; insecure, go-containerregistry
	// sets the scheme its ping found to every request to the registry.
	scheme string
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
	tr := transport.NewRetry(o.pool.get(o.Insecure, timeout, o.base))
	if o.UserAgent != "" {
		tr = transport.NewUserAgent(tr, o.UserAgent)
	}
	w, err := transport.NewWithContext(ctx, repo.Registry, auth, tr, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, registryError("source "+ref.String(), err)
	}
	scheme := "https"
	if o.Insecure {
		scheme = repo.Scheme()
	}
	return &registry{ref: ref, repo: repo, client: &http.Client{Transport: w}, scheme: scheme}, nil
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
var manifestAccept = strings.Join([]string{
	distribution.MediaTypeOCIIndex, distribution.MediaTypeOCIManifest, distribution.MediaTypeDockerList, distribution.MediaTypeDockerManifest,
	distribution.MediaTypeDockerSchema1JWS, distribution.MediaTypeDockerSchema1,
}, ", ")

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
// tree.MaxManifestSize bytes of it, and its Content-Type.
func (r *registry) manifest(ctx context.Context, what, id string) ([]byte, string, error) {
	resp, err := r.get(ctx, "manifests/"+id, manifestAccept)
	if err != nil {
		return nil, "", registryError(what, err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > tree.MaxManifestSize {
		// Refused unread: too big to hash, so named by its reference.
		return nil, "", fmt.Errorf("%s: a manifest of %d bytes, over the %d byte limit", what, resp.ContentLength, tree.MaxManifestSize)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, tree.MaxManifestSize+1))
	if err != nil {
		return nil, "", registryError(what, err)
	}
	if len(raw) > tree.MaxManifestSize {
		return nil, "", fmt.Errorf("%s: over the %d byte limit", what, tree.MaxManifestSize)
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return raw, strings.TrimSpace(mt), nil
}

// Blob opens blob d as the registry sends it, refusing at once a body
// longer than the manifest declares. It does not verify the bytes: the
// tree hashes them once while writing them, and bounds the read to the
// declared size.
func (r *registry) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	what := fmt.Sprintf("blob %s of %s", d.Digest, r.repo)
	resp, err := r.get(ctx, "blobs/"+d.Digest.String(), "")
	if err != nil {
		return nil, registryError(what, err)
	}
	if d.Size >= 0 && resp.ContentLength > d.Size {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: the registry sends %d bytes, the manifest declares %d", what, resp.ContentLength, d.Size)
	}
	return &blobReader{rc: resp.Body, d: d}, nil
}

// get GETs path below the repository and returns a 200 response; any
// other status is a *transport.Error, read from at most 64 KiB of body.
func (r *registry) get(ctx context.Context, path, accept string) (*http.Response, error) {
	u := url.URL{Scheme: r.scheme, Host: r.repo.RegistryStr(), Path: "/v2/" + r.repo.RepositoryStr() + "/" + path}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		resp.Body = io.NopCloser(io.LimitReader(resp.Body, 64<<10))
		return nil, transport.CheckError(resp, http.StatusOK)
	}
	return resp, nil
}

func (r *registry) Close() error {
	r.client.CloseIdleConnections()
	return nil
}

// registryError turns go-containerregistry's errors into one line naming
// the object and the cause: no response bodies (JSON, HTML, several
// lines), no URL per scheme tried. The original error stays in the chain
// for errors.As.
func registryError(what string, err error) error {
	var te *transport.Error
	var oe *net.OpError
	var ue *url.Error
	var ce *tls.CertificateVerificationError
	var pe *plainHTTPError
	switch {
	case answeredPlainHTTP(err):
		return &sourceError{what + ": the registry answered plain HTTP where HTTPS is required (--src-tls-verify=false allows it)", err}
	case errors.As(err, &ce):
		return &sourceError{fmt.Sprintf("%s: the registry's certificate is not trusted: %s (--src-tls-verify=false skips the check)", what, oneLine(ce.Err.Error())), err}
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
			return &sourceError{fmt.Sprintf("%s: authentication failed (%s)", what, status), err}
		case http.StatusNotFound:
			return &sourceError{fmt.Sprintf("%s: not found (%s)", what, status), err}
		}
		return &sourceError{fmt.Sprintf("%s: the registry answered %s", what, status), err}
	case errors.As(err, &oe):
		return &sourceError{fmt.Sprintf("%s: cannot reach the registry: %v", what, oe), err}
	case errors.As(err, &ue) && ue.Timeout():
		return &sourceError{fmt.Sprintf("%s: the registry did not answer in time (%s)", what, oneLine(ue.Err.Error())), err}
	case errors.As(err, &pe):
		return &sourceError{what + ": " + pe.Error(), err}
	case strings.Contains(err.Error(), `realm scheme "http" not allowed`):
		return &sourceError{what + ": the registry's token realm is plain HTTP where HTTPS is required (--src-tls-verify=false allows it)", err}
	}
	if m := manifestDigestMismatch.FindStringSubmatch(err.Error()); m != nil {
		return &sourceError{fmt.Sprintf("%s: content does not match its digest (got %s)", what, m[1]), err}
	}
	return &sourceError{fmt.Sprintf("%s: %s", what, oneLine(err.Error())), err}
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

// blobReader words a blob stream cut short. It counts, it does not hash:
// the tree hashes the bytes once, as it writes them.
type blobReader struct {
	rc io.ReadCloser
	d  Descriptor
	n  int64
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, io.ErrUnexpectedEOF) && b.d.Size >= 0:
		err = fmt.Errorf("stream truncated after %d of %d bytes: %w", b.n, b.d.Size, err)
	case b.d.Size >= 0:
		err = fmt.Errorf("stream cut after %d of %d bytes: %w", b.n, b.d.Size, err)
	default:
		err = fmt.Errorf("stream cut after %d bytes: %w", b.n, err)
	}
	return n, err
}

func (b *blobReader) Close() error { return b.rc.Close() }
