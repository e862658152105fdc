package exporter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

// RegistryOptions configure docker:// sources.
type RegistryOptions struct {
	Insecure  bool   // plain http and self-signed certificates (--src-tls-verify=false)
	Creds     string // USER[:PASS]
	AuthFile  string // a docker config.json or containers auth.json
	UserAgent string
}

// registry reads one reference from a registry with go-containerregistry,
// which handles auth, token exchange and retries.
type registry struct {
	ref  name.Reference
	repo name.Repository
	opts []remote.Option
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
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	if o.Insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(keychain),
		remote.WithTransport(tr),
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	return &registry{ref: ref, repo: ref.Context(), opts: opts}, nil
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

func (r *registry) Root(ctx context.Context) ([]byte, string, error) {
	desc, err := remote.Get(r.ref, append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, "", registryError(r.ref.String(), err)
	}
	return desc.Manifest, string(desc.MediaType), nil
}

func (r *registry) Manifest(ctx context.Context, d Descriptor) ([]byte, error) {
	ref := r.repo.Digest(d.Digest.String())
	desc, err := remote.Get(ref, append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, registryError(fmt.Sprintf("manifest %s of %s", d.Digest, r.repo), err)
	}
	return desc.Manifest, nil
}

func (r *registry) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	ref := r.repo.Digest(d.Digest.String())
	what := fmt.Sprintf("blob %s of %s", d.Digest, r.repo)
	l, err := remote.Layer(ref, append(r.opts, remote.WithContext(ctx))...)
	if err != nil {
		return nil, registryError(what, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, registryError(what, err)
	}
	return newBlobReader(rc, d), nil
}

func (r *registry) Close() error { return nil }

// registryError turns go-containerregistry's errors into one line naming
// the object and the cause: no response bodies (JSON, HTML, several
// lines), no URL per scheme tried. The original error stays in the chain
// for errors.As.
func registryError(what string, err error) error {
	var te *transport.Error
	var oe *net.OpError
	switch {
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
	}
	if m := manifestDigestMismatch.FindStringSubmatch(err.Error()); m != nil {
		return &sourceError{fmt.Sprintf("%s: content does not match its digest (got %s)", what, m[1]), err}
	}
	return &sourceError{fmt.Sprintf("%s: %s", what, oneLine(err.Error())), err}
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

// blobReader words the ways a blob stream fails: cut short, or bytes that
// are not those the digest names (go-containerregistry verifies too, and
// says so in its own terms). It hashes what passes to name what came.
type blobReader struct {
	rc       io.ReadCloser
	d        Descriptor
	n        int64
	digester digest.Digester // nil: algorithm not available
}

func newBlobReader(rc io.ReadCloser, d Descriptor) *blobReader {
	b := &blobReader{rc: rc, d: d}
	if d.Digest.Algorithm().Available() {
		b.digester = d.Digest.Algorithm().Digester()
	}
	return b
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if b.digester != nil {
		b.digester.Hash().Write(p[:n])
	}
	switch {
	case err == nil || err == io.EOF:
	case errors.Is(err, io.ErrUnexpectedEOF) && b.d.Size >= 0:
		err = fmt.Errorf("stream truncated after %d of %d bytes: %w", b.n, b.d.Size, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("stream truncated after %d bytes: %w", b.n, err)
	case b.digester != nil && (b.d.Size < 0 || b.n == b.d.Size):
		// Everything arrived and the stream still failed: the verifier
		// refused the bytes, if they are not the digest's.
		if got := b.digester.Digest(); got != b.d.Digest {
			err = &sourceError{fmt.Sprintf("content does not match its digest (got %s)", got), err}
		}
	}
	return n, err
}

func (b *blobReader) Close() error { return b.rc.Close() }
