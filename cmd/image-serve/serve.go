package main

import (
	"github.com/image-serve/image-serve/server"
	"github.com/urfave/cli/v2"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the tree with the embedded server",
		Description: `Serves --root read-only until SIGINT or SIGTERM. --root may be an empty directory: it is
then an empty registry (/v2/ answers, _catalog lists nothing, everything else is 404), and the
tree the first export creates there is served at the next request, without a restart.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8787", Usage: "address to listen on"},
			&cli.IntFlag{Name: "max-connections", Value: server.DefaultMaxConnections, Usage: "client connections open at once; one more is answered 503 and closed"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError(c, "unexpected argument %q", c.Args().First())
			}
			if c.Int("max-connections") < 1 {
				return usageError(c, "--max-connections %d: want 1 or more", c.Int("max-connections"))
			}
			root, _, err := openTreeOrEmpty(c)
			if err != nil {
				return err
			}
			return server.ListenAndServe(c.Context, c.String("listen"), root, logger(c),
				server.Options{MaxConnections: c.Int("max-connections")})
		},
	}
}
