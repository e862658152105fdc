package server

import (
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"syscall"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// Error responses catalog has no body for. Apache answers these cases with
// its built-in HTML pages; the embedded server keeps every error JSON.
var (
	// errForbidden is Apache's 403 for a file it may not read, sent with
	// the template's "ErrorDocument 403" body, NAME_UNKNOWN.
	errForbidden = withStatus(distribution.ErrNameUnknown, http.StatusForbidden)
	// errBadPath is a ".." above the root, which Apache refuses with 400.
	errBadPath = distribution.Error{Status: http.StatusBadRequest, Code: "NAME_INVALID", Message: "invalid path"}
	// errPagination is distribution's answer to an n that is not a
	// non-negative integer.
	errPagination = distribution.Error{Status: http.StatusBadRequest, Code: "PAGINATION_NUMBER_INVALID", Message: "invalid number of results requested"}
	// errRequestBody is a GET or HEAD that carries a body or a
	// Transfer-Encoding. Registry reads have neither, and a front proxy
	// that frames such a request otherwise than Go does (Go drops
	// Content-Length when Transfer-Encoding is present) would pass a
	// second request hidden in it (request smuggling).
	errRequestBody = distribution.Error{Status: http.StatusBadRequest, Code: distribution.Unsupported, Message: "a GET or HEAD request carries no body and no Transfer-Encoding"}
	// errInternal is a tree the server cannot read as it should: a broken
	// type map, an I/O error. Apache answers 500 too.
	errInternal = distribution.Error{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: "unknown error"}
)

func withStatus(e distribution.Error, status int) distribution.Error {
	e.Status = status
	return e
}

// fail sends the error response e, as the template's ErrorDocuments do:
// JSON, never stored by a cache (a 404 may be a 200 at the next publish),
// and without the validators or digest of whatever was being served.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, e distribution.Error) {
	hd := w.Header()
	for _, k := range []string{"ETag", "Last-Modified", "Accept-Ranges", digestHeader} {
		hd.Del(k)
	}
	body := e.Body()
	hd.Set("Content-Type", jsonType)
	hd.Set("Cache-Control", string(tree.CacheNever))
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// missing reports an error of the tree that a server answers as a missing
// file: nothing there, a path through a file (as
// /v2/index.json/tags/list), no regular file there — a directory, a
// FIFO, a socket, a device, which Apache's "-f" tests and nginx send to
// the 404 too (the tree never opens one blocking: tree.ErrNotRegular) —
// or a path leading out of the root (tree.ErrOutsideRoot): what lies
// outside the tree is not in it. This is the one place the server maps
// tree.ErrOutsideRoot to a 404: it is not fs.ErrNotExist, so it is named.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot) ||
		errors.Is(err, syscall.ENOTDIR) || errors.Is(err, tree.ErrNotRegular)
}

// failOpen answers a failure to open or read what the URL names: a missing
// file is the location's 404 (notFound), an unreadable one Apache's 403,
// anything else a logged 500.
func (h *handler) failOpen(w http.ResponseWriter, r *http.Request, err error, notFound distribution.Error) {
	switch {
	case missing(err):
		h.fail(w, r, notFound)
	case errors.Is(err, fs.ErrPermission):
		h.log.Warn("unreadable file in the tree", "path", r.URL.Path, "err", err)
		h.fail(w, r, errForbidden)
	default:
		h.internal(w, r, err)
	}
}

// internal logs err and answers 500.
func (h *handler) internal(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Error("serving from the tree failed", "method", r.Method, "path", r.URL.Path, "err", err)
	h.fail(w, r, errInternal)
}
