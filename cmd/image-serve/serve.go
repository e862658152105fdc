package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/image-serve/image-serve/server"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the tree with the embedded server",
		Description: `Serves --root read-only until SIGINT or SIGTERM. --root may be an empty directory: it is
then an empty registry (/v2/ answers, _catalog lists nothing, everything else is 404), and the
tree the first export creates there is served at the next request, without a restart.

Every request is logged to --access-log, in the Combined Log Format with the duration appended
(JSON lines with --log-format json). SIGHUP reopens the access log (after logrotate renamed it)
and reads the TLS certificate and key again; the pair is also read again at the first handshake
after its files change.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8787", Usage: "address to listen on"},
			&cli.IntFlag{Name: "max-connections", Value: server.DefaultMaxConnections, Usage: "client connections open at once; one more is answered 503 and closed"},
			&cli.StringFlag{Name: "access-log", Value: "-", Usage: "`FILE` to append a line per request to; - for stdout, off for none"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS (and HTTP/2) with the PEM certificate chain in `FILE`, on every address"},
			&cli.StringFlag{Name: "tls-key", Usage: "the PEM private key of --tls-cert"},
			&cli.StringFlag{Name: "tls-client-ca", Usage: "require client certificates signed by the PEM CAs in `FILE` (mutual TLS)"},
			&cli.StringFlag{Name: "metrics-listen", Usage: "serve Prometheus metrics at /metrics on `ADDR` (default: none)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError(c, "unexpected argument %q", c.Args().First())
			}
			if c.Int("max-connections") < 1 {
				return usageError(c, "--max-connections %d: want 1 or more", c.Int("max-connections"))
			}
			if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
				return usageError(c, "--tls-cert and --tls-key go together")
			}
			if c.String("tls-client-ca") != "" && c.String("tls-cert") == "" {
				return usageError(c, "--tls-client-ca needs --tls-cert and --tls-key")
			}
			if c.String("access-log") == "" {
				return usageError(c, "--access-log: want a file, - or off")
			}
			root, _, err := openTreeOrEmpty(c)
			if err != nil {
				return err
			}
			log := logger(c)
			o := server.Options{MaxConnections: c.Int("max-connections"), MetricsAddr: c.String("metrics-listen")}
			var certs *server.Certs
			if c.String("tls-cert") != "" {
				if certs, err = server.LoadCerts(c.String("tls-cert"), c.String("tls-key"), log); err != nil {
					return fmt.Errorf("--tls-cert/--tls-key: %w", err)
				}
				if o.TLS, err = server.TLSConfig(certs, c.String("tls-client-ca")); err != nil {
					return fmt.Errorf("--tls-client-ca: %w", err)
				}
			}
			if o.MetricsAddr != "" {
				o.Metrics = server.NewMetrics(root, log, func() (int64, error) { return treeBytes(root) })
			}
			if p := c.String("access-log"); p != "off" {
				if o.AccessLog, err = server.OpenAccessLog(p, c.String("log-format") == "json"); err != nil {
					return fmt.Errorf("--access-log: %w", err)
				}
				defer o.AccessLog.Close()
			}
			stop := onHangup(c.Context, log, o.AccessLog, certs)
			defer stop()
			return server.ListenAndServe(c.Context, c.String("listen"), root, log, o)
		},
	}
}

// treeBytes is what the tree's files cost, each inode once, as du
// --total reports it; 0 for a root awaiting its first export.
func treeBytes(root *tree.Root) (int64, error) {
	var total int64
	err := root.Inspect(func(v *tree.View) error {
		ins, err := v.TreeFiles()
		for _, in := range ins {
			total += in.Size
		}
		return err
	})
	if errors.Is(err, tree.ErrNoTree) {
		return 0, nil
	}
	return total, err
}

// onHangup reopens the access log and reads the TLS pair again on every
// SIGHUP until ctx is done or stop is called; either may be nil. A failure
// is logged, and the server goes on with what it had.
func onHangup(ctx context.Context, log *slog.Logger, access *server.AccessLog, certs *server.Certs) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
			case <-ctx.Done():
				return
			case <-done:
				return
			}
			if access != nil {
				if err := access.Reopen(); err != nil {
					log.Error("access log not reopened: writing to the file it had open", "err", err)
				}
			}
			if certs != nil {
				_, _ = certs.Reload() // logs what it does
			}
			log.Info("SIGHUP handled")
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
