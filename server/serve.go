package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
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

// gcPercent is the serving process's GC percentage. A server's live heap
// measured about 1 MiB, so at Go's default (100) the heap goal is the 4 MiB
// minimum, and small requests at 15,000 a second, a few KiB of garbage each,
// ran a collection every 25 ms: 6 % of the CPU (GODEBUG=gctrace=1 under
// wrk), and each cycle's stop-the-world phases and mark assists fall on
// the requests in flight, the tail. At 400 the minimum goal is 16 MiB
// (the live heap times five, past 3 MiB): 14 to 20 collections in 3 s of
// that load instead of 115 to 123, for 12 MiB more heap.
const gcPercent = 400

// Options are the embedded server's settings.
type Options struct {
	// MaxConnections is how many client connections are open at once;
	// one more is answered 503 UNAVAILABLE and closed (see
	// limitListener). 0 means DefaultMaxConnections.
	MaxConnections int
	// AccessLog, when set, gets a line per request. The server does not
	// close it: the caller does, after ListenAndServe returns, which
	// writes out its last lines.
	AccessLog *AccessLog
	// Metrics, when set with MetricsAddr, are served on MetricsAddr at
	// /metrics, and record every request.
	Metrics     *Metrics
	MetricsAddr string
	// TLS, when set, is the configuration of every listener, the
	// metrics' included: no address speaks plain HTTP.
	TLS *tls.Config
}

// ListenAndServe serves root on addr until ctx is done, then shuts down
// gracefully: it stops accepting, lets in-flight requests finish for up to
// shutdownTimeout, and then closes what is left. Every address is listened
// on before anything is served, so that one that cannot be bound is an
// error at start. It returns nil after a shutdown and the error otherwise.
// The caller turns SIGTERM into ctx cancellation.
//
// ListenAndServe is meant to be the process's server: unless GOGC is set
// in the environment, it sets the process's GC percentage to gcPercent.
func ListenAndServe(ctx context.Context, addr string, root tree.Reader, log *slog.Logger, o Options) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var mln net.Listener
	if o.Metrics != nil && o.MetricsAddr != "" {
		if mln, err = net.Listen("tcp", o.MetricsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	return serveAll(ctx, ln, mln, root, log, o)
}

// NewHTTPServer is the http.Server ListenAndServe runs for root: New's
// handler with the embedded server's limits on slow clients and header
// sizes. Its Addr is unset; serve it on a listener of your own. A nil log
// discards everything.
func NewHTTPServer(root tree.Reader, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return newHTTPServer(New(root, log), log)
}

// newHTTPServer is an http.Server of h with the embedded server's limits.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       withConn, // for the download watchdog (progress.go)
		// "OPTIONS *" keeps Go's general answer, 200 with no body, which is
		// Apache's too.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serve runs the server on ln until ctx is done or serving fails; no
// metrics are served.
func serve(ctx context.Context, ln net.Listener, root tree.Reader, log *slog.Logger, o Options) error {
	return serveAll(ctx, ln, nil, root, log, o)
}

// serveAll runs the server on ln, and the metrics on mln if not nil,
// until ctx is done or serving fails.
func serveAll(ctx context.Context, ln, mln net.Listener, root tree.Reader, log *slog.Logger, o Options) error {
	if o.MaxConnections <= 0 {
		o.MaxConnections = DefaultMaxConnections
	}
	ll := newLimitListener(ln, o.MaxConnections, log)
	// Past the limit a TLS connection is closed unanswered: a plain-text
	// 503 would be garbage to a TLS client, and a handshake for a refusal
	// would spend what the limit saves.
	ll.silent = o.TLS != nil
	h := &handler{root: root, log: log, cache: &fileCache{}, access: o.AccessLog, metrics: o.Metrics}
	srv := newHTTPServer(h, log)
	// Each server gets its own copy: net/http adds to the NextProtos of
	// the one it is given.
	srv.TLSConfig = o.TLS.Clone()
	servers := []*http.Server{srv}
	done := make(chan error, 2)
	go func() { done <- run(srv, ll) }()
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	log.Info("serving", "addr", ln.Addr().String(), "scheme", scheme, "root", root.Dir())
	if mln != nil {
		msrv := newHTTPServer(metricsMux(o.Metrics), log)
		msrv.TLSConfig = o.TLS.Clone()
		servers = append(servers, msrv)
		go func() { done <- run(msrv, mln) }()
		log.Info("serving metrics", "addr", mln.Addr().String(), "scheme", scheme, "path", "/metrics")
	}
	select {
	case err := <-done:
		for _, s := range servers {
			_ = s.Close()
		}
		return err // a listener failed
	case <-ctx.Done():
	}
	log.Info("shutting down", "addr", ln.Addr().String(), "grace", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			log.Warn("in-flight requests cut at shutdown", "err", err)
			_ = s.Close()
		}
	}
	for range servers {
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	log.Info("stopped", "addr", ln.Addr().String())
	return nil
}

// run serves srv on ln, with TLS when srv has a TLSConfig: ServeTLS
// takes the certificate from it and adds HTTP/2.
func run(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}

// metricsMux serves m at /metrics and nothing else.
func metricsMux(m *Metrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	return mux
}
