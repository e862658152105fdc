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
	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// routeManifest serves "/v2/<repo>/manifests/<ref>": a digest, then a tag,
// and MANIFEST_UNKNOWN for anything else below manifests/, as the
// template's three manifest rules do.
func (h *handler) routeManifest(w http.ResponseWriter, r *http.Request, p string) {
	repo, ref, _ := cutRepo(p, "/manifests/")
	if tree.ValidateRepo(repo) != nil {
		h.fail(w, r, distribution.ErrManifestUnknown)
		return
	}
	if d := digest.Digest(ref); distribution.ValidateDigest(d) == nil {
		h.serveDigest(w, r, repo, d)
		return
	}
	if distribution.ValidateTag(ref) == nil {
		h.serveTag(w, r, repo, ref)
		return
	}
	h.fail(w, r, distribution.ErrManifestUnknown)
}

// serveDigest serves manifest d: immutable, with the digest as a strong
// ETag, so a revalidation answers 304.
func (h *handler) serveDigest(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) {
	f, fi, ok := h.openManifest(w, r, repo, d, cacheImmutable)
	if !ok {
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"`+d.String()+`"`)
	serveContent(w, r, fi.ModTime(), f)
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
func (h *handler) serveTag(w http.ResponseWriter, r *http.Request, repo, tag string) {
	variants, err := h.tagVariants(repo, tag)
	if err != nil {
		h.failOpen(w, r, err, distribution.ErrManifestUnknown)
		return
	}
	if varyByType(variants) {
		// mod_negotiation's spelling; it sets it on the 406 as well.
		w.Header().Set("Vary", "accept")
	}
	d, ok, err := h.negotiate(r, repo, variants)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	if !ok {
		h.fail(w, r, distribution.ErrNotAcceptable)
		return
	}
	f, _, ok := h.openManifest(w, r, repo, d, cacheRevalidate)
	if !ok {
		return
	}
	defer f.Close()
	// Apache's RequestHeader unset on tag URIs; no modtime and no ETag
	// leave ServeContent nothing to compare the rest with.
	serveContent(w, unconditional(r), time.Time{}, f)
}

// negotiate picks the variant Apache would serve for r, breaking ties by
// the smaller file as Apache does, and returns its digest.
func (h *handler) negotiate(r *http.Request, repo string, variants []tree.TagVariant) (digest.Digest, bool, error) {
	vs := make([]typemap.Variant, len(variants))
	for i, v := range variants {
		vs[i] = tree.TypeMapVariant(v)
	}
	length := func(v typemap.Variant) int64 {
		d, err := tree.VariantDigest(v)
		if err != nil {
			return -1
		}
		fi, err := h.root.StatInTree(h.root.ManifestPath(repo, d))
		if err != nil {
			return -1 // as Apache's failed stat
		}
		return fi.Size()
	}
	// Apache reads repeated Accept fields as one, joined by ", ".
	chosen, ok := typemap.Negotiate(vs, strings.Join(r.Header.Values("Accept"), ", "), length)
	if !ok {
		return "", false, nil
	}
	d, err := tree.VariantDigest(chosen)
	return d, true, err
}

// varyByType reports whether the variants differ in media type, when
// mod_negotiation adds "Vary: accept" to the response.
func varyByType(variants []tree.TagVariant) bool {
	for _, v := range variants[1:] {
		if !strings.EqualFold(v.MediaType, variants[0].MediaType) {
			return true
		}
	}
	return false
}

// unconditional is r without the conditional headers the template drops on
// tag URIs.
func unconditional(r *http.Request) *http.Request {
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
	if errors.Is(err, fs.ErrNotExist) {
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

// openFile opens path and insists on a regular file, as Apache's "-f"
// rewrite conditions do.
func (h *handler) openFile(path string) (*os.File, fs.FileInfo, error) {
	f, err := h.root.OpenInTree(path)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errNotFile
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}
