package server

import (
	"errors"
	"io"
	"io/fs"
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
	ow, content := oneWrite(w, f, fi)
	serveContent(ow, r, fi.ModTime(), content)
}

// smallBody is the largest file sent through the connection's buffer
// rather than sendfile: what fits in net/http's 4 KiB write buffer beside
// the headers.
const smallBody = 3 << 10

// oneWrite returns what to hand serveContent for f, a file of fi.Size()
// bytes: for a small one, w without its sendfile path, so that the body
// leaves with the headers in one write — with sendfile it is two system
// calls, the headers and the first 512 bytes, then the rest (measured
// with strace) — and f read at offsets (sizedFile), so that
// ServeContent's two seeks cost no lseek(2). A large file is sent by
// sendfile, which wants the *os.File itself.
func oneWrite(w http.ResponseWriter, f file, fi fs.FileInfo) (http.ResponseWriter, io.ReadSeeker) {
	if size := fi.Size(); size <= smallBody {
		if ra, ok := f.(io.ReaderAt); ok {
			// One allocation for both, as bufferedOnly{w} alone was.
			s := &smallFile{bufferedOnly{w}, sizedFile{f: ra, size: size}}
			return &s.bufferedOnly, &s.sizedFile
		}
		return bufferedOnly{w}, f
	}
	return w, f
}

// bufferedOnly hides the ResponseWriter's ReadFrom, so that copying a
// file into it goes through its buffer instead of sendfile.
type bufferedOnly struct{ http.ResponseWriter }

// smallFile is what oneWrite returns for a small file, allocated at once.
type smallFile struct {
	bufferedOnly
	sizedFile
}

// sizedFile reads a file of known size from its own offset with pread(2).
// http.ServeContent seeks to the end to learn the size and back to the
// start before it copies: on the file itself that is two lseek(2) per
// request, here two assignments. The size is the one the descriptor's
// fstat gave when it was opened; the tree's writers replace files by
// rename and never change one in place, so it is the file's size.
type sizedFile struct {
	f         io.ReaderAt
	size, off int64
}

func (s *sizedFile) Read(p []byte) (int, error) {
	if s.off >= s.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.size-s.off)]
	n, err := s.f.ReadAt(p, s.off)
	s.off += int64(n)
	if n == len(p) {
		err = nil // ReadAt may say EOF with the last byte
	}
	return n, err
}

func (s *sizedFile) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += s.off
	case io.SeekEnd:
		offset += s.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.off = offset
	return offset, nil
}
