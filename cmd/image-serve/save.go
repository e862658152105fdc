package main

import (
	"fmt"
	"os"
	"time"

	"github.com/image-serve/image-serve/archive"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func saveCommand() *cli.Command {
	return &cli.Command{
		Name:      "save",
		Usage:     "write images of the tree to an archive: docker-archive, oci-archive, oci or dir",
		ArgsUsage: "-o FILE|DIR|- REF...",
		Description: `REF is REPO:TAG or REPO@DIGEST of the tree. Each blob is stored once, however many images share it.
docker-archive: what docker load, podman load and skopeo's docker-archive: read (manifest.json with
every REF's tags, repositories); an index REF is saved as its --platform image (default linux/amd64).
oci-archive (a tar) and oci (a directory): an OCI image layout, each REF named in index.json, an
index kept whole. dir: a directory per image (config.json, digest, manifest.json, NNN.tar.gz and
NNN.sha256; --uncompressed: NNN.tar and its diff id), blobs hard-linked from the tree where they can
be. A file or directory appears at -o whole or not at all; -o - writes an archive to stdout.
docs/save.md describes every layout.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: string(archive.DockerArchive), Usage: "docker-archive, oci-archive, oci or dir"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "the file or directory to write (-: stdout)"},
			&cli.StringFlag{Name: "platform", Usage: "OS/ARCH[/VARIANT]: the image of an index docker-archive and dir save (default linux/amd64)"},
			&cli.BoolFlag{Name: "uncompressed", Usage: "dir: write each layer uncompressed, named by its diff id"},
		},
		Action: runSave,
	}
}

func runSave(c *cli.Context) error {
	format, err := archive.ParseFormat(c.String("format"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	o := archive.Options{Format: format, Output: c.String("output"), Stdout: c.App.Writer, Uncompressed: c.Bool("uncompressed")}
	switch {
	case o.Output == "":
		return usageError(c, "no output: give -o FILE, -o DIR or -o -")
	case c.NArg() == 0:
		return usageError(c, "no REF to save")
	case o.Uncompressed && format != archive.Dir:
		return usageError(c, "--uncompressed is for --format dir")
	case o.Output == "-" && format.IsDir():
		return usageError(c, "-o -: --format %s writes a directory", format)
	case o.Output == "-" && c.App.Writer == os.Stdout && isTerminal(os.Stdout):
		return usageError(c, "-o -: stdout is a terminal; redirect it to a file or a pipe")
	}
	if p := c.String("platform"); p != "" {
		if o.Platform, err = archive.ParsePlatform(p); err != nil {
			return usageError(c, "%v", err)
		}
	}
	var refs []archive.Ref
	for _, a := range c.Args().Slice() {
		r, err := gc.ParseRef(a)
		if err != nil {
			return usageError(c, "%v", err)
		}
		refs = append(refs, archive.Ref{Repo: r.Repo, Tag: r.Tag, Digest: r.Digest})
	}
	if err := archive.CheckOutput(o); err != nil {
		return err
	}
	root, state, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	log := logger(c)
	o.Chose = func(ref archive.Ref, child distribution.Descriptor) {
		log.Info(fmt.Sprintf("%s is an index: saving its %s image", ref, child.Platform), "digest", child.Digest.String())
	}
	start := time.Now()
	var rep *archive.Report
	err = inspectTree(root, state, func(v *tree.View) (err error) {
		rep, err = archive.Save(v, refs, o)
		return err
	}, func() error {
		return fmt.Errorf("%s: %w", refs[0], archive.ErrNotInTree)
	})
	if err != nil {
		return err
	}
	log.Info("saved", "format", string(format), "output", o.Output, "images", rep.Images,
		"blobs", rep.Blobs, "bytes", rep.Bytes, "linked", rep.Linked, "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}
