package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
	"github.com/image-serve/image-serve/airgap"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:  "inventory",
		Usage: "write what the tree holds (its blob and manifest digests), for bundle create --have at another site",
		Description: `The inventory is small (32 bytes a digest: 3.2 MB for 100,000 blobs) and versioned. -o FILE is
written atomically: a reader sees the old file or the whole new one. An empty root has an
empty inventory.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "-", Usage: "write it to FILE (- for stdout)"},
		},
		Action: runInventory,
	}
}

func runInventory(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %d", c.NArg())
	}
	root, state, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	inv := bundle.NewInventory(nil, nil)
	err = inspectTree(root, state, func(v *tree.View) (err error) {
		inv, err = airgap.Inventory(v)
		return err
	}, func() error { return nil })
	if err != nil {
		return err
	}
	out := c.String("output")
	n, err := writeOutput(c, out, func(w io.Writer) (int64, error) { return inv.WriteTo(w) })
	if err != nil {
		return err
	}
	if !quiet(c) && out != "-" {
		fmt.Fprintf(os.Stderr, "inventory of %s and %s: %s, %s\n", plural(len(inv.Blobs), "blob", "blobs"),
			plural(len(inv.Manifests), "manifest", "manifests"), out, humanBytes(n))
	}
	return nil
}

// writeOutput writes what write writes to path atomically (renameio: a
// temporary file in its directory, synced, renamed into place; removed
// if the write fails), or to stdout for "-".
func writeOutput(c *cli.Context, path string, write func(io.Writer) (int64, error)) (int64, error) {
	if path == "-" {
		return write(c.App.Writer)
	}
	f, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644), renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Cleanup()
	n, err := write(f)
	if err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return n, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
