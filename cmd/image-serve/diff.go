package main

import (
	"fmt"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/imagefs"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func diffCommand() *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "list the paths added, changed and deleted between two images, or by an image's top layer",
		ArgsUsage: "REF-A [REF-B]",
		Description: `diff compares two images' final file systems, as podman diff prints them: "A /path" added,
"C /path (what)" changed — content, size, mode, owner, type, link, device, mtime — and
"D /path" deleted, sorted by path. With one image, what its top layer did to the layers below it;
with one image and two --platform, its two platforms. --semantic ignores mtimes (a rebuilt image),
--content adds a unified diff of each changed text file under --content-limit bytes.`,
		Flags: append(imageFlags(),
			&cli.BoolFlag{Name: "semantic", Usage: "ignore mtimes"},
			&cli.BoolFlag{Name: "content", Usage: "show a unified diff of each changed text file"},
			&cli.Int64Flag{Name: "content-limit", Value: 1 << 20, Usage: "--content: compare files up to this many bytes"},
			&cli.BoolFlag{Name: "json", Usage: "print it as JSON"},
		),
		Action: runDiff,
	}
}

// diffOutput is diff's JSON: podman's shape (added, changed, deleted:
// paths), with what changed of each changed path, and --content's
// unified diffs.
type diffOutput struct {
	Added   []string            `json:"added"`
	Changed []string            `json:"changed"`
	Deleted []string            `json:"deleted"`
	What    map[string][]string `json:"what"`
	Content map[string]string   `json:"content,omitempty"`
}

func runDiff(c *cli.Context) error {
	platforms := c.StringSlice("platform")
	if c.NArg() < 1 || c.NArg() > 2 {
		return usageError(c, "want REF-A and REF-B, or one REF, got %d arguments", c.NArg())
	}
	if len(platforms) > 2 {
		return usageError(c, "--platform: at most two, got %d", len(platforms))
	}
	o, err := layerOptions(c)
	if err != nil {
		return err
	}
	pa, pb := "", ""
	switch len(platforms) {
	case 1:
		pa, pb = platforms[0], platforms[0]
	case 2:
		pa, pb = platforms[0], platforms[1]
	}
	a, err := parseImageRef(c, c.Args().Get(0), pa)
	if err != nil {
		return err
	}
	refs := []catalog.ImageRef{a}
	topLayer := c.NArg() == 1 && len(platforms) < 2
	if !topLayer {
		arg := c.Args().Get(c.NArg() - 1)
		b, err := parseImageRef(c, arg, pb)
		if err != nil {
			return err
		}
		refs = append(refs, b)
	}
	var changes []imagefs.Change
	content := map[string]string{}
	err = viewImages(c, refs, func(v *tree.View, imgs []*catalog.ImageLayers) error {
		ia, ib := imgs[0], imgs[0]
		upto := -1
		if topLayer {
			if len(ia.Layers) == 0 {
				return fmt.Errorf("%s: an image without layers", a)
			}
			upto = len(ia.Layers) - 1
		} else {
			ib = imgs[1]
		}
		fa, err := catalog.Flatten(v, ia, upto, o)
		if err != nil {
			return err
		}
		fb, err := catalog.Flatten(v, ib, -1, o)
		if err != nil {
			return err
		}
		changes = catalog.DiffFS(fa, fb, c.Bool("semantic"))
		if c.Bool("content") {
			for _, ch := range changes {
				if ch.Old == nil || ch.New == nil {
					continue
				}
				text, err := catalog.ContentDiff(v, ia, ib, ch, c.Int64("content-limit"), o)
				if err != nil {
					return err
				}
				if text != "" {
					content[ch.Path] = text
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wantJSON(c) {
		out := diffOutput{Added: []string{}, Changed: []string{}, Deleted: []string{}, What: map[string][]string{}, Content: map[string]string{}}
		for _, ch := range changes {
			p := "/" + ch.Path
			switch ch.Kind() {
			case "A":
				out.Added = append(out.Added, p)
			case "D":
				out.Deleted = append(out.Deleted, p)
			default:
				out.Changed = append(out.Changed, p)
				out.What[p] = ch.What
				if t, ok := content[ch.Path]; ok {
					out.Content[p] = t
				}
			}
		}
		return printJSON(c.App.Writer, out)
	}
	for _, ch := range changes {
		fmt.Fprintln(c.App.Writer, ch)
		if t, ok := content[ch.Path]; ok {
			fmt.Fprint(c.App.Writer, t)
		}
	}
	return nil
}
