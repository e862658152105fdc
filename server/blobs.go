package server

import (
	"net/http"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// routeBlob serves "/v2/<repo>/blobs/<digest>"; anything else below
// blobs/ is a 404, BLOB_UNKNOWN only where the template's blob
// LocationMatch applies.
func (h *handler) routeBlob(w http.ResponseWriter, r *http.Request, p string) {
	repo, d, ok := blobRef(p)
	if !ok {
		h.fail(w, r, notFound(p))
		return
	}
	if tree.ValidateRepo(repo) != nil {
		h.fail(w, r, distribution.ErrBlobUnknown)
		return
	}
	h.serveBlob(w, r, repo, d)
}

// serveBlob sends blob d as raw bytes: ServeContent on the file gives
// sendfile, Range (206, 416) and revalidation (304). Never any
// Content-Encoding, even for a legacy "<digest>.gz": Go clients would
// gunzip the layer and fail the digest check (serving-notes §3.7).
func (h *handler) serveBlob(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) {
	f, err := h.root.OpenBlob(repo, d)
	if err != nil {
		h.failOpen(w, r, err, distribution.ErrBlobUnknown)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errNotFile
	}
	if err != nil {
		h.failOpen(w, r, err, distribution.ErrBlobUnknown)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", blobType)
	hd.Set(digestHeader, d.String())
	hd.Set("Cache-Control", cacheImmutable)
	hd.Set("ETag", `"`+d.String()+`"`)
	serveContent(w, r, fi.ModTime(), f)
}
