package testserver

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/image-serve/image-serve/server"
	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

// EmbeddedOption changes how the embedded server is started.
type EmbeddedOption func(*http.Server)

// WithEmbeddedTimeouts shortens the embedded server's slow-client limits
// to t's, so that a test can wait for them: Header becomes its
// ReadHeaderTimeout and Idle its IdleTimeout, where set. Body and Send
// have no counterpart here: the server refuses any request body at once,
// and bounds each write itself.
func WithEmbeddedTimeouts(t templates.Timeouts) EmbeddedOption {
	return func(s *http.Server) {
		if t.Header != 0 {
			s.ReadHeaderTimeout = t.Header
		}
		if t.Idle != 0 {
			s.IdleTimeout = t.Idle
		}
	}
}

// Embedded serves root with the embedded Go server on a real 127.0.0.1
// listener until the test ends, and returns its base URL,
// "http://127.0.0.1:<port>". It is the http.Server "image-serve serve"
// runs (server.NewHTTPServer), limits included, not just its handler. Its
// request log, at Debug, goes to a file; a failing test shows its end and
// where it is.
func Embedded(t testing.TB, root *tree.Root, opts ...EmbeddedOption) (baseURL string) {
	t.Helper()
	logFile := filepath.Join(keptDir(t), "embedded.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = server.NewHTTPServer(root, log)
	for _, opt := range opts {
		opt(srv.Config)
	}
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		f.Close()
		if t.Failed() {
			t.Logf("embedded server at %s:\n%s", srv.URL, tail(logFile))
		}
	})
	return srv.URL
}
