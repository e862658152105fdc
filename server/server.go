// Package server is the embedded registry server: it serves a static tree
// read-only and answers every request as the Apache template
// (templates/apache.conf.tmpl) does, so that a tree behaves the same
// whichever server is in front of it. The routing below follows the
// template's rewrite rules in their order — both come from one route
// table, tree.Routes — and the error bodies are the ones the template's
// ErrorDocuments send.
//
// Nothing of the URL is joined into a file path: the repository name, tag
// and digest are matched against their grammars first, and every file is
// a name the route table's templates expand to, opened through the tree's
// FS (files.go).
package server

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// Response header values shared by the handlers.
const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
	digestHeader     = "Docker-Content-Digest"

	jsonType = "application/json"
	blobType = "application/octet-stream"
)

// handler serves one tree.
type handler struct {
	root    tree.Reader
	log     *slog.Logger
	cache   *fileCache // parsed type maps and headers, by file identity
	access  *AccessLog // nil: no access log
	metrics *Metrics   // nil: no metrics
}

// New returns a handler serving root read-only, answering every request as
// the Apache template does. A nil log discards everything.
func New(root tree.Reader, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{root: root, log: log, cache: &fileCache{}}
}

// ServeHTTP sets the API version header on every response (Apache's
// "Header always set"), routes, and logs the outcome at Debug, to the
// access log and in the metrics, when they are set. A request
// whose framing cannot be trusted is answered and its connection closed
// (lastOnConnection).
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if h.metrics != nil {
		h.metrics.inFlight.Inc()
		defer h.metrics.inFlight.Dec()
	}
	rw := newResponse(w, r)
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
	if h.access != nil {
		h.access.log(r, rw.Status(), rw.bytes, start)
	}
	if h.metrics != nil {
		h.metrics.observe(r.Method, rw.route, rw.repo, rw.Status(), rw.bytes, time.Since(start))
	}
}

// A routeHandler serves the requests of one route of the table, rt, with
// what the route captured of the path: the files it sends are rt's
// (openRoute), opened and stat'ed through fsys, the tree's FS held for
// the request, with rt's cache class.
type routeHandler func(h *handler, w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match)

// handlers binds the routes of tree.Routes that serve files to the code
// that serves them. A route without a handler answers its NotFound (the
// catch-alls), or the 404 of the location the path falls in (what is never
// served). Adding a route is an entry in the table and one here.
var handlers = map[string]routeHandler{
	tree.RoutePing:             (*handler).servePing,
	tree.RouteManifestByDigest: (*handler).serveDigest,
	tree.RouteManifestByTag:    (*handler).serveTag,
	tree.RouteBlob:             (*handler).serveBlob,
	tree.RouteReferrers:        (*handler).routeReferrers,
	tree.RouteCatalog:          (*handler).serveCatalog,
	tree.RouteTagsList:         (*handler).serveTagsList,
	tree.RouteCatalogPage:      (*handler).serveCatalogPage,
}

// route dispatches on the route table, which is the template's rewrite
// rules in their order, and records in w the route and repository, for
// the metrics.
func (h *handler) route(w *response, r *http.Request) {
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
	rt, m := tree.MatchRoute(p)
	w.route, w.repo = rt.Name, m.Repo
	if serve := handlers[rt.Name]; serve != nil {
		// One descriptor of the root for all the stats and opens of this
		// request (a tag's type map, the manifests it weighs, the chosen
		// one, its headers), rather than an open and a close of the root,
		// each resolving its path from "/", for every one of them: that
		// cost 15 % of the requests a second on manifests. It is closed
		// with the request, so an idle server holds nothing of the tree
		// (umount works), and the next request opens the root by name
		// again, seeing a root directory moved into place meanwhile.
		fsys := h.root.FS().Hold()
		defer fsys.Close()
		serve(h, w, r, fsys, rt, m)
		return
	}
	if rt.NotFound.Name == "" {
		h.fail(w, r, tree.NotFoundAt(p))
		return
	}
	h.fail(w, r, rt.NotFound)
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
