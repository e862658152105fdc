package server

import (
	"net/http"

	"github.com/image-serve/image-serve/tree"
)

// serveBlob sends blob m.Digest as raw bytes, the route's file or its
// fallback (TripleO's "<digest>.gz"): ServeContent on the file gives
// sendfile, Range (206, 416) and revalidation (304). Never any
// Content-Encoding, even for a legacy "<digest>.gz": Go clients would
// gunzip the layer and fail the digest check (serving-notes §3.7).
//
// A repository name the layout reserves is the route's NotFound
// (BLOB_UNKNOWN), as any name the grammar refuses.
func (h *handler) serveBlob(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	if tree.ValidateRepo(m.Repo) != nil {
		h.fail(w, r, rt.NotFound)
		return
	}
	f, fi, err := h.openRoute(fsys, rt, m)
	if err != nil {
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	defer f.Close()
	d := m.Digest
	hd := w.Header()
	hd.Set("Content-Type", blobType)
	hd.Set(digestHeader, d.String())
	setCache(hd, rt)
	hd.Set("ETag", `"`+d.String()+`"`)
	serveContent(oneWrite(w, fi.Size()), r, fi.ModTime(), f)
}

// smallBody is the largest file sent through the connection's buffer
// rather than sendfile: what fits in net/http's 4 KiB write buffer beside
// the headers.
const smallBody = 3 << 10

// oneWrite returns w for a file of size bytes: for a small one, w without
// its sendfile path, so that the body leaves with the headers in one
// write — with sendfile it is two system calls, the headers and the first
// 512 bytes, then the rest (measured with strace).
func oneWrite(w http.ResponseWriter, size int64) http.ResponseWriter {
	if size <= smallBody {
		return bufferedOnly{w}
	}
	return w
}

// bufferedOnly hides the ResponseWriter's ReadFrom, so that copying a
// file into it goes through its buffer instead of sendfile.
type bufferedOnly struct{ http.ResponseWriter }
