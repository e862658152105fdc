package server_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/server"
)

func TestE2EServe(t *testing.T) {
	if os.Getenv("E2E") == "" { t.Skip() }
	root := testserver.TempRoot(t)
	contract.Build(t, root)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := server.ListenAndServe(ctx, "127.0.0.1:18787", root, log); err != nil { t.Fatal(err) }
}
