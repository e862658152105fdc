package server

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// serveDigest serves manifest m.Digest: immutable, with the digest as a
// strong ETag, so a revalidation answers 304. A repository name the layout
// reserves is MANIFEST_UNKNOWN, as any name the grammar refuses.
func (h *handler) serveDigest(w http.ResponseWriter, r *http.Request, m tree.Match) {
	repo, d := m.Repo, m.Digest
	if tree.ValidateRepo(repo) != nil {
		h.fail(w, r, distribution.ErrManifestUnknown)
		return
	}
	f, fi, ok := h.openManifest(w, r, repo, d, cacheImmutable)
	if !ok {
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"`+d.String()+`"`)
	serveContent(oneWrite(w, fi.Size()), r, fi.ModTime(), f)
}

// openManifest opens manifest d and sets the headers every manifest
// response carries; on failure it has answered the request itself.
func (h *handler) openManifest(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest, cacheControl string) (*os.File, fs.FileInfo, bool) {
	f, fi, err := h.openFile(h.root.ManifestPath(repo, d))
	if err != nil {
		h.failOpen(w, r, err, distribution.ErrManifestUnknown)
		return nil, nil, false
	}
	mediaType, err := h.mediaType(repo, d)
	if err != nil {
		f.Close()
		h.internal(w, r, err)
		return nil, nil, false
	}
	hd := w.Header()
	hd.Set("Content-Type", mediaType)
	hd.Set(digestHeader, d.String())
	hd.Set("Cache-Control", cacheControl)
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
func (h *handler) serveTag(w http.ResponseWriter, r *http.Request, m tree.Match) {
	repo := m.Repo
	if tree.ValidateRepo(repo) != nil {
		h.fail(w, r, distribution.ErrManifestUnknown)
		return
	}
	// Apache reads repeated Accept fields as one, joined by ", ".
	accept := strings.Join(r.Header.Values("Accept"), ", ")
	res, err := tree.TagResolver{Root: h.root, Variants: h.tagVariants}.ResolveTag(repo, m.Tag, accept)
	if res.Vary {
		// mod_negotiation's spelling; it sets it on the 406 as well.
		w.Header().Set("Vary", "accept")
	}
	switch {
	case errors.Is(err, tree.ErrNotAcceptable):
		h.fail(w, r, distribution.ErrNotAcceptable)
		return
	case err != nil:
		h.failOpen(w, r, err, distribution.ErrManifestUnknown)
		return
	}
	f, fi, ok := h.openManifest(w, r, repo, res.Digest, cacheRevalidate)
	if !ok {
		return
	}
	defer f.Close()
	// Apache's RequestHeader unset on tag URIs; no modtime and no ETag
	// leave ServeContent nothing to compare the rest with.
	serveContent(oneWrite(w, fi.Size()), unconditional(r), time.Time{}, f)
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

// mediaType is the Content-Type manifest d is served with: its headers
// file's, as Apache applies the .htaccess next to the file. Without one,
// Apache types index.json by its extension.
func (h *handler) mediaType(repo string, d digest.Digest) (string, error) {
	v, err := h.cache.get(h.root.HeadersPath(repo, d), func() (any, error) { return h.root.ManifestMediaType(repo, d) })
	if missing(err) {
		return jsonType, nil
	}
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// tagVariants reads the variants tag offers, parsing its type map only
// when it changed since the last request.
func (h *handler) tagVariants(repo, tag string) ([]tree.TagVariant, error) {
	v, err := h.cache.get(h.root.TypeMapPath(repo, tag), func() (any, error) { return h.root.TagVariants(repo, tag) })
	if err != nil {
		return nil, err
	}
	return v.([]tree.TagVariant), nil
}

// openFile opens path, a regular file, as Apache's "-f" rewrite
// conditions insist: anything else there is tree.ErrNotRegular, opened
// without blocking and closed unread.
func (h *handler) openFile(path string) (*os.File, fs.FileInfo, error) {
	f, err := h.root.OpenInTree(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}
