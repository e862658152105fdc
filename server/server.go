// Package server is the embedded registry server: it serves a static tree
// read-only and answers every request as the Apache template
// (templates/apache.conf.tmpl) does, so that a tree behaves the same
// whichever server is in front of it. The routing below follows the
// template's rewrite rules in their order, and the error bodies are the
// ones the template's ErrorDocuments send.
//
// Nothing of the URL is joined into a file path: the repository name, tag
// and digest are checked against their grammars first, and every path
// comes from catalog.
package server

import (
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Response header values shared by the handlers.
const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
	digestHeader     = "Docker-Content-Digest"

	jsonType = "application/json"
	blobType = "application/octet-stream"

	// Content addressed: the bytes behind a digest never change.
	cacheImmutable = "public, max-age=31536000, immutable"
	// Tags and listings change: caches must revalidate on every use.
	cacheRevalidate = "no-cache"
	// Errors: a 404 may become a 200 at the next publish.
	cacheNever = "no-store"
)

// handler serves one tree.
type handler struct {
	root  *tree.Root
	log   *slog.Logger
	cache *fileCache // parsed type maps and headers, by file identity
}

// New returns a handler serving root read-only, answering every request as
// the Apache template does. A nil log discards everything.
func New(root *tree.Root, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{root: root, log: log, cache: &fileCache{}}
}

// ServeHTTP sets the API version header on every response (Apache's
// "Header always set"), routes, and logs the outcome at Debug. A request
// whose framing cannot be trusted is answered and its connection closed
// (lastOnConnection).
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := newResponse(w)
	rw.Header().Set(apiVersionHeader, apiVersion)
	if lastOnConnection(r) {
		rw.Header().Set("Connection", "close")
		// Nothing more is read from this connection: not even the body Go
		// would otherwise discard after the handler, which a client that
		// announced one and never sends it would hold forever.
		_ = rw.rc.SetReadDeadline(time.Now())
	}
	h.route(rw, r)
	h.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", rw.Status()),
		slog.Int64("bytes", rw.bytes),
		slog.Duration("duration", time.Since(start)))
}

// route dispatches as the template's rewrite rules do, in their order.
func (h *handler) route(w http.ResponseWriter, r *http.Request) {
	// RewriteRule ^ - [R=405]: read-only, on every path.
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.fail(w, r, distribution.ErrUnsupported)
		return
	}
	if hasBody(r) {
		h.fail(w, r, errRequestBody)
		return
	}
	p, err := requestPath(r)
	if err != nil {
		h.fail(w, r, *err)
		return
	}
	switch {
	case hidden(p):
		h.fail(w, r, notFound(p))
	case p == "/v2/" || p == "/v2":
		h.servePing(w, r)
	case isManifestPath(p):
		h.routeManifest(w, r, p)
	case isBlobPath(p):
		h.routeBlob(w, r, p)
	case isReferrersPath(p):
		h.routeReferrers(w, r, p)
	case p == "/v2/_catalog":
		h.serveCatalog(w, r)
	default:
		if repo, ok := tagsListRepo(p); ok {
			h.serveTagsList(w, r, repo)
			return
		}
		h.fail(w, r, notFound(p))
	}
}

// hasBody reports a request that carries a body: a Transfer-Encoding, or
// a Content-Length other than 0. Go has dropped the Content-Length of a
// request with both.
func hasBody(r *http.Request) bool {
	return len(r.TransferEncoding) > 0 || r.ContentLength != 0
}

// lastOnConnection reports a request after which the connection must be
// closed, since where the next request starts is not certain (RFC 9112
// 6.1, 6.3): one with a body, which no read has, and any HTTP/1.0
// request, whose Transfer-Encoding Go drops before the handler can see it
// (RFC 9112 has the connection closed after an HTTP/1.0 message with
// one). Go's own answers come first: 501 and a close for a
// Transfer-Encoding other than chunked, 400 and a close for conflicting
// Content-Lengths.
func lastOnConnection(r *http.Request) bool {
	return hasBody(r) || !r.ProtoAtLeast(1, 1)
}

// hidden reports the paths the template refuses before any other rule:
// dot files (.htaccess, temporary files), type maps and the index.json
// files behind digests are never addressed directly (serving-notes §3.13).
func hidden(p string) bool {
	if strings.Contains(p, "/.") || strings.HasSuffix(p, ".type-map") {
		return true
	}
	_, rest, ok := cutRepo(p, "/index.json")
	return ok && rest == ""
}

// cutRepo splits "/v2/<repo>/<sep><rest>" at the last sep, as the
// template's greedy "^/v2/(.+)/<sep>" does. The repository is not yet
// validated.
func cutRepo(p, sep string) (repo, rest string, ok bool) {
	after, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", "", false
	}
	i := strings.LastIndex(after, sep)
	if i < 1 {
		return "", "", false
	}
	return after[:i], after[i+len(sep):], true
}

// isManifestPath matches the template's "^/v2/.+/manifests/": everything
// below it is a manifest or MANIFEST_UNKNOWN.
func isManifestPath(p string) bool {
	_, _, ok := cutRepo(p, "/manifests/")
	return ok
}

// isBlobPath matches "^/v2/.+/blobs/".
func isBlobPath(p string) bool {
	_, _, ok := cutRepo(p, "/blobs/")
	return ok
}

// blobRef matches the template's blob LocationMatch,
// "^/v2/.+/blobs/(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$", and returns
// the unvalidated repository and the digest.
func blobRef(p string) (repo string, d digest.Digest, ok bool) {
	repo, ref, ok := cutRepo(p, "/blobs/")
	if !ok || distribution.ValidateDigest(digest.Digest(ref)) != nil {
		return "", "", false
	}
	return repo, digest.Digest(ref), true
}

// tagsListRepo matches "^/v2/.+/tags/list$".
func tagsListRepo(p string) (string, bool) {
	repo, rest, ok := cutRepo(p, "/tags/")
	if !ok || rest != "list" {
		return "", false
	}
	return repo, true
}

// notFound is the 404 body Apache picks for p: its ErrorDocument depends
// on the LocationMatch the client's URI falls in, and the manifest block
// comes after the blob block, so it wins where both match.
func notFound(p string) distribution.Error {
	if isManifestPath(p) {
		return distribution.ErrManifestUnknown
	}
	if _, _, ok := blobRef(p); ok {
		return distribution.ErrBlobUnknown
	}
	return distribution.ErrNameUnknown
}
