package server

import (
	"context"
	"io"
	"net/http"
	"time"
)

// writeIdleTimeout is how long one write to a client may block, as
// Apache's Timeout (60 s) bounds each I/O. http.Server.WriteTimeout would
// bound the whole response instead and cut every large blob download on a
// slow link; without any bound, a client that stops reading (a zero TCP
// window) would hold its connection and file forever. So the deadline is
// moved forward before every chunk written.
var writeIdleTimeout = 60 * time.Second

// copyChunk is how much of a file is sent under one deadline: a client
// must take it within writeIdleTimeout (about 4 KiB/s). Each chunk is
// still one sendfile(2) loop.
const copyChunk = 256 << 10

// response wraps the server's ResponseWriter to record the status, size,
// route and repository for the logs and metrics, and to keep the write
// deadline moving. It forwards ReadFrom,
// which http.ServeContent reaches through io.CopyN, so that files still go
// out by sendfile.
type response struct {
	http.ResponseWriter
	rc     *http.ResponseController
	status int
	bytes  int64
	route  string // the route table's name, "" before routing
	repo   string // the repository the route captured, if any
	ctx    context.Context
}

func newResponse(w http.ResponseWriter, r *http.Request) *response {
	rw := &response{ResponseWriter: w, rc: http.NewResponseController(w), ctx: r.Context()}
	// Headers-only answers (HEAD, 304) are flushed by the server after the
	// handler returns: give them a fresh deadline too, not the previous
	// request's.
	rw.extend()
	return rw
}

// extend moves the write deadline writeIdleTimeout ahead. Writers without
// deadlines (httptest.ResponseRecorder) just ignore it.
func (w *response) extend() {
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeIdleTimeout))
}

// Status is the status sent, 200 if the handler wrote nothing explicit.
func (w *response) Status() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

func (w *response) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *response) Write(p []byte) (int, error) {
	w.extend()
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom copies src in chunks of copyChunk, each under a fresh deadline,
// which a watchdog also moves forward while the client acknowledges
// bytes (progress.go). A chunk of an *io.LimitedReader over an *os.File is again a LimitedReader
// over that file, the one shape the kernel's sendfile path accepts.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	r, limit := src, int64(-1)
	if lr, ok := src.(*io.LimitedReader); ok {
		r, limit = lr.R, lr.N
	}
	var total int64
	defer watch(w.ctx, w).stop()
	defer func() {
		if lr, ok := src.(*io.LimitedReader); ok {
			lr.N -= total
		}
	}()
	for limit < 0 || total < limit {
		want := int64(copyChunk)
		if limit >= 0 {
			want = min(want, limit-total)
		}
		w.extend()
		// io.Copy hands the chunk to the server's own ReadFrom.
		n, err := io.Copy(w.ResponseWriter, &io.LimitedReader{R: r, N: want})
		total += n
		w.bytes += n
		if err != nil || n < want {
			return total, err
		}
	}
	return total, nil
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *response) Unwrap() http.ResponseWriter { return w.ResponseWriter }
