package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/imagefs"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

// The flags files, diff and cat share.
func imageFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "platform", Usage: "the image of an index to read, os/arch[/variant] (diff: a second one for the second image)"},
		&cli.Int64Flag{Name: "max-ratio", Value: imagefs.DefaultMaxRatio, Usage: "refuse a compressed layer that decompresses to more than this many times its size (a decompression bomb)"},
	}
}

func layerOptions(c *cli.Context) (catalog.LayerOptions, error) {
	if c.Int64("max-ratio") < 1 {
		return catalog.LayerOptions{}, usageError(c, "--max-ratio %d: want 1 or more", c.Int64("max-ratio"))
	}
	return catalog.LayerOptions{MaxRatio: c.Int64("max-ratio")}, nil
}

// parseImageRef reads REPO:TAG or REPO@DIGEST (a usage error otherwise).
func parseImageRef(c *cli.Context, arg, platform string) (catalog.ImageRef, error) {
	ref, err := gc.ParseRef(arg)
	if err != nil {
		return catalog.ImageRef{}, usageError(c, "%v", err)
	}
	return catalog.ImageRef{Repo: ref.Repo, Tag: ref.Tag, Digest: ref.Digest, Platform: platform}, nil
}

// inspectMemoryLimit is the soft limit files, diff and cat set on the Go
// runtime's memory (unless GOMEMLIMIT sets another). What they keep is an
// image's file system and its output, a few hundred bytes a path; but by
// default the collector lets the heap grow to twice what is live before
// it runs, and what it frees goes back to the system lazily: a 1 GiB
// layer's 26,000 paths took a peak RSS of 55 to 65 MiB, about half of it
// garbage, against 45 under the limit, where the collector runs sooner. It is soft: an
// image whose paths need more is listed all the same, with the collector
// running more often (the runtime keeps it to about half the CPU).
const inspectMemoryLimit = 32 << 20

// viewImages runs do in a View of the tree (inspectTree's rules: without
// the tree lock for a user who may not write the tree; a root awaiting its
// first export holds no image).
func viewImages(c *cli.Context, refs []catalog.ImageRef, do func(*tree.View, []*catalog.ImageLayers) error) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(inspectMemoryLimit)
	}
	root, state, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	return inspectTree(root, state, func(v *tree.View) error {
		var imgs []*catalog.ImageLayers
		for _, ref := range refs {
			img, err := catalog.ResolveLayers(v, ref)
			if err != nil {
				return err
			}
			imgs = append(imgs, img)
		}
		return do(v, imgs)
	}, func() error {
		return fmt.Errorf("%s: %w", refs[0], catalog.ErrUnknown)
	})
}

func filesCommand() *cli.Command {
	return &cli.Command{
		Name:      "files",
		Usage:     "list an image's files, with the layer that last wrote each, or one layer's own entries",
		ArgsUsage: "REPO:TAG|REPO@DIGEST",
		Description: `files lists the final file system of an image, sorted by path: type, mode, owner, size,
mtime, the layer (index from 0, the bottom one) that last wrote the path, and a link's target.
With --layer, one layer's own entries in its order, a whiteout as "deleted". Layers are read as
streams, never unpacked; each layer's list is kept in the tree's state directory, so the next
files or diff over it opens no layer. A tag or digest not in the tree exits 1.`,
		Flags: append(imageFlags(),
			&cli.StringFlag{Name: "layer", Usage: "list one layer's own entries: its index (0 is the bottom layer) or digest"},
			&cli.BoolFlag{Name: "json", Usage: "print it as JSON"},
		),
		Action: runFiles,
	}
}

// filesOutput is files' JSON.
type filesOutput struct {
	Image *catalog.ImageLayers `json:"image"`
	Layer *catalog.LayerRef    `json:"layer,omitempty"`
	Files []catalog.File       `json:"files"`
}

func runFiles(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one REPO:TAG or REPO@DIGEST, got %d arguments", c.NArg())
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
	var out filesOutput
	err = viewImages(c, []catalog.ImageRef{ref}, func(v *tree.View, imgs []*catalog.ImageLayers) error {
		out.Image = imgs[0]
		if sel := c.String("layer"); sel != "" {
			i, err := catalog.FindLayer(imgs[0], sel)
			if err != nil {
				return usageError(c, "%v", err)
			}
			out.Layer = &imgs[0].Layers[i]
			out.Files, err = catalog.LayerFiles(v, imgs[0], i, o)
			return err
		}
		out.Files, err = catalog.Files(v, imgs[0], o)
		return err
	})
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c.App.Writer, out)
	}
	return printFiles(c, out.Files)
}

// printFiles is files' table: sizes human-readable, mtimes in UTC.
func printFiles(c *cli.Context, files []catalog.File) error {
	// tabwriter writes the table cell by cell when flushed: buffered, a
	// big image's list is a few writes, not one per cell.
	bw := bufio.NewWriterSize(c.App.Writer, 64<<10)
	w := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TYPE\tMODE\tOWNER\tSIZE\tMTIME\tLAYER\tPATH")
	for _, f := range files {
		size := ""
		if f.Type == string(imagefs.File) || f.Type == string(imagefs.Hardlink) {
			size = humanBytes(f.Size)
		}
		path := f.Path
		if f.Link != "" {
			path += " -> " + f.Link
		}
		mtime := strings.Replace(strings.TrimSuffix(f.MTime, "Z"), "T", " ", 1)
		mode, owner := f.Mode, fmt.Sprintf("%d:%d", f.UID, f.GID)
		if f.Type == "deleted" || f.Type == string(imagefs.Opaque) {
			mode, owner = "", "" // a marker, no file: nothing of its own
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", f.Type, mode, owner, size, mtime, f.Layer, path)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return bw.Flush()
}
