package testserver

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/server"
)

// Embedded serves root with the embedded Go server (server.New) on a real
// 127.0.0.1 listener until the test ends, and returns its base URL,
// "http://127.0.0.1:<port>". Its request log goes to t.Log at Debug, and
// is shown when the test fails or runs with -v.
func Embedded(t testing.TB, root *catalog.Root) (baseURL string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(server.New(root, log))
	t.Cleanup(srv.Close)
	return srv.URL
}

// tWriter sends log lines to t.Log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
