package server

import (
	"errors"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// serveDigest serves manifest m.Digest, the route's file: immutable, with
// the digest as a strong ETag, so a revalidation answers 304. A repository
// name the layout reserves is the route's NotFound (MANIFEST_UNKNOWN), as
// any name the grammar refuses.
func (h *handler) serveDigest(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	if tree.ValidateRepo(m.Repo) != nil {
		h.fail(w, r, rt.NotFound)
		return
	}
	f, fi, ok := h.openManifest(w, r, fsys, m, rt)
	if !ok {
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"`+m.Digest.String()+`"`)
	ow, content := oneWrite(w, f, fi)
	serveContent(ow, r, fi.ModTime(), content)
}

// openManifest opens manifest m.Digest of m.Repo — the manifest-by-digest
// route's file — and sets the headers every manifest response carries,
// with the cache class and the NotFound of the route served, rt; on
// failure it has answered the request itself.
func (h *handler) openManifest(w http.ResponseWriter, r *http.Request, fsys tree.FS, m tree.Match, rt *tree.Route) (file, fs.FileInfo, bool) {
	f, fi, err := h.openRoute(fsys, manifestByDigestRoute(), m)
	if err != nil {
		h.failOpen(w, r, err, rt.NotFound)
		return nil, nil, false
	}
	mediaType, err := h.mediaType(fsys, m)
	if err != nil {
		f.Close()
		h.internal(w, r, err)
		return nil, nil, false
	}
	hd := w.Header()
	hd.Set("Content-Type", mediaType)
	hd.Set(digestHeader, m.Digest.String())
	setCache(hd, rt)
	return f, fi, true
}

// serveTag serves the manifest tag names for this request's Accept, as
// Apache's type-map handler does. The tag file may be replaced at any
// instant: it is read once, the chosen manifest is opened once, and the
// digest header is the chosen variant's, so header and body always agree.
//
// A tag response has no validators and ignores conditional requests.
// Apache would otherwise send the validators of the digest file the tag
// names, and after a rollback to an older manifest it answered
// If-Modified-Since with 304, so a cache kept the newer body
// (serving-notes §3.12).
func (h *handler) serveTag(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	if tree.ValidateRepo(m.Repo) != nil {
		h.fail(w, r, rt.NotFound)
		return
	}
	// Apache reads repeated Accept fields as one, joined by ", ".
	accept := strings.Join(r.Header.Values("Accept"), ", ")
	variants := func(repo, tag string) ([]tree.TagVariant, error) { return h.tagVariants(fsys, rt, m) }
	res, err := tree.TagResolver{Root: h.root, Variants: variants, FS: fsys}.ResolveTag(m.Repo, m.Tag, accept)
	if res.Vary {
		// mod_negotiation's spelling; it sets it on the 406 as well.
		w.Header().Set("Vary", "accept")
	}
	switch {
	case errors.Is(err, tree.ErrNotAcceptable):
		h.fail(w, r, distribution.ErrNotAcceptable)
		return
	case err != nil:
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	f, fi, ok := h.openManifest(w, r, fsys, tree.Match{Repo: m.Repo, Digest: res.Digest}, rt)
	if !ok {
		return
	}
	defer f.Close()
	// Apache's RequestHeader unset on tag URIs; no modtime and no ETag
	// leave ServeContent nothing to compare the rest with.
	ow, content := oneWrite(w, f, fi)
	serveContent(ow, unconditional(r), time.Time{}, content)
}

// unconditional is r without the conditional headers the template drops on
// tag URIs.
func unconditional(r *http.Request) *http.Request {
	if r.Header.Get("If-Modified-Since") == "" && r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Range") == "" {
		return r // nothing to drop: no copy
	}
	r2 := r.Clone(r.Context())
	for _, k := range []string{"If-Modified-Since", "If-None-Match", "If-Range"} {
		r2.Header.Del(k)
	}
	return r2
}

// headersTemplate names a manifest's headers file as the route table's
// templates name files: beside the manifest-by-digest route's file.
var headersTemplate = sync.OnceValue(func() string {
	return path.Join(path.Dir(manifestByDigestRoute().Files[0]), tree.Names().HeadersFile)
})

// mediaType is the Content-Type manifest m.Digest is served with: its
// headers file's, as Apache applies the .htaccess next to the file (in
// the directory of the route's file, named as tree.Names says). Without
// one, Apache types index.json by its extension.
func (h *handler) mediaType(fsys tree.FS, m tree.Match) (string, error) {
	name := m.Expand(headersTemplate())
	v, err := h.cache.get(fsys, name, func() (any, error) { return h.root.ManifestMediaType(m.Repo, m.Digest) })
	if missing(err) {
		return jsonType, nil
	}
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// tagVariants reads the variants tag m.Tag offers, parsing its type map,
// the file of the manifest-by-tag route rt, only when it changed since
// the last request.
func (h *handler) tagVariants(fsys tree.FS, rt *tree.Route, m tree.Match) ([]tree.TagVariant, error) {
	v, err := h.cache.get(fsys, m.Expand(rt.Files[0]), func() (any, error) { return h.root.TagVariants(m.Repo, m.Tag) })
	if err != nil {
		return nil, err
	}
	return v.([]tree.TagVariant), nil
}
