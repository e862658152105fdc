package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/imagefs"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func catCommand() *cli.Command {
	return &cli.Command{
		Name:      "cat",
		Usage:     "print one file of an image",
		ArgsUsage: "REPO:TAG|REPO@DIGEST PATH",
		Description: `cat writes the bytes of the file at PATH in the image's final file system, symbolic links
followed inside the image, from the one layer that holds them. A path a whiteout deleted ("deleted
in layer N"), a path that is not there ("no such file in the image") and a directory ("is a
directory") each say so and exit 1. With -o, the file is written whole or not at all.`,
		Flags: append(imageFlags(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the file to `FILE` instead of stdout"},
		),
		Action: runCat,
	}
}

func runCat(c *cli.Context) error {
	if c.NArg() != 2 {
		return usageError(c, "want REPO:TAG or REPO@DIGEST and a PATH, got %d arguments", c.NArg())
	}
	if len(c.StringSlice("platform")) > 1 {
		return usageError(c, "--platform: one, got %d", len(c.StringSlice("platform")))
	}
	ref, err := parseImageRef(c, c.Args().First(), strings.Join(c.StringSlice("platform"), ""))
	if err != nil {
		return err
	}
	o, err := layerOptions(c)
	if err != nil {
		return err
	}
	path := c.Args().Get(1)
	var out io.Writer = c.App.Writer
	var tmp *os.File
	if name := c.String("output"); name != "" {
		// A temporary file beside it, renamed over it once whole; made
		// as any new file is (0666 less the umask), unlike CreateTemp's.
		for range 100 {
			tmp, err = os.OpenFile(filepath.Join(filepath.Dir(name), fmt.Sprintf(".%s.%d", filepath.Base(name), rand.Uint64())), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
			if !errors.Is(err, fs.ErrExist) {
				break
			}
		}
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		out = tmp
	}
	err = viewImages(c, []catalog.ImageRef{ref}, func(v *tree.View, imgs []*catalog.ImageLayers) error {
		err := catalog.Cat(v, imgs[0], path, out, o)
		var de *imagefs.DeletedError
		if errors.As(err, &de) {
			l := imgs[0].Layers[de.Layer]
			return fmt.Errorf("%s: %s: deleted in layer %d (%s)", ref, path, l.Index, l.Digest)
		}
		return err
	})
	switch {
	case errors.Is(err, imagefs.ErrNotFound):
		return fmt.Errorf("%s: %s: no such file in the image", ref, path)
	case err != nil:
		return err
	case tmp != nil:
		if err := tmp.Sync(); err != nil {
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		return os.Rename(tmp.Name(), c.String("output"))
	}
	return nil
}
