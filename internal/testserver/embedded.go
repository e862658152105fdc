package testserver

import (
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/server"
)

// Embedded serves root with the embedded Go server (server.New) on a real
// 127.0.0.1 listener until the test ends, and returns its base URL,
// "http://127.0.0.1:<port>". Its request log, at Debug, goes to a file; a
// failing test shows its end and where it is.
func Embedded(t testing.TB, root *catalog.Root) (baseURL string) {
	t.Helper()
	logFile := filepath.Join(keptDir(t), "embedded.log")
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewServer(server.New(root, log))
	t.Cleanup(func() {
		srv.Close()
		f.Close()
		if t.Failed() {
			t.Logf("embedded server at %s:\n%s", srv.URL, tail(logFile))
		}
	})
	return srv.URL
}
