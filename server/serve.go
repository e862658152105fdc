package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/image-serve/image-serve/tree"
)

// Server limits. There is deliberately no ReadTimeout or WriteTimeout:
// ReadTimeout's deadline stays armed while the response is written, and
// WriteTimeout bounds the whole response, so either would cut a large blob
// download on a slow link. A stalled reader is bounded per write instead
// (writeIdleTimeout), as Apache's Timeout bounds each I/O.
const (
	// readHeaderTimeout bounds a client trickling its request line and
	// headers (slowloris); requests have no body worth reading.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections nobody uses: 15 s, as the
	// Apache and nginx templates do (templates.DefaultTimeouts.Idle), so
	// that clients hoarding idle connections give them back soon.
	idleTimeout = 15 * time.Second
	// maxHeaderBytes: registry requests carry a few short headers; Apache
	// allows about as much (LimitRequestFieldSize 8190, 100 fields).
	maxHeaderBytes = 64 << 10
	// shutdownTimeout is how long in-flight requests may run after ctx is
	// done before their connections are closed.
	shutdownTimeout = 30 * time.Second
)

// Options are the embedded server's settings.
type Options struct {
	// MaxConnections is how many client connections are open at once;
	// one more is answered 503 UNAVAILABLE and closed (see
	// limitListener). 0 means DefaultMaxConnections.
	MaxConnections int
}

// ListenAndServe serves root on addr until ctx is done, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish for up to
// shutdownTimeout, and then closes what is left. It returns nil after a
// shutdown and the error otherwise. The caller turns SIGTERM into ctx
// cancellation.
func ListenAndServe(ctx context.Context, addr string, root tree.Reader, log *slog.Logger, o Options) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return serve(ctx, ln, root, log, o)
}

// NewHTTPServer is the http.Server ListenAndServe runs for root: New's
// handler with the embedded server's limits on slow clients and header
// sizes. Its Addr is unset; serve it on a listener of your own. A nil log
// discards everything.
func NewHTTPServer(root tree.Reader, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           New(root, log),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// "OPTIONS *" keeps Go's general answer, 200 with no body, which is
		// Apache's too.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serve runs the server on ln until ctx is done or serving fails.
func serve(ctx context.Context, ln net.Listener, root tree.Reader, log *slog.Logger, o Options) error {
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	ln = newLimitListener(ln, o.MaxConnections, log)
	srv := NewHTTPServer(root, log)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	log.Info("serving", "addr", ln.Addr().String(), "root", root.Dir())
	select {
	case err := <-done:
		return err // the listener failed; Serve closed it
	case <-ctx.Done():
	}
	log.Info("shutting down", "addr", ln.Addr().String(), "grace", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests cut at shutdown", "err", err)
		_ = srv.Close()
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped", "addr", ln.Addr().String())
	return nil
}
