package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/image-serve/image-serve/exporter"
	"github.com/urfave/cli/v2"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "copy an image into the tree",
		ArgsUsage: "SOURCE [DEST]",
		Description: `SOURCE is a skopeo-style reference:
  docker://HOST[:PORT]/REPO[:TAG|@DIGEST]   a registry
  oci:DIR[:REF]                             an OCI image layout
  oci-archive:FILE[:REF]                    a tar of an OCI image layout
  docker-archive:FILE[:REPO:TAG|:@N]        docker save output
DEST is REPO[:TAG]; by default the source's repository without its registry host, and its tag.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "platform", Usage: "OS/ARCH[/VARIANT] of an index to export (repeatable; default: all)"},
			&cli.BoolFlag{Name: "src-tls-verify", Value: true, Usage: "require HTTPS and a valid certificate from the source registry"},
			&cli.StringFlag{Name: "src-creds", Usage: "USER[:PASS] for the source registry"},
			&cli.StringFlag{Name: "src-authfile", Usage: "auth file for the source registry (default: docker config.json, containers auth.json)"},
			&cli.IntFlag{Name: "jobs", Value: 4, Usage: "parallel blob and manifest transfers"},
			&cli.DurationFlag{Name: "src-timeout", Value: exporter.DefaultSourceTimeout, Usage: "give up on a source request that sends nothing for this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout"},
			&cli.BoolFlag{Name: "verify-existing", Usage: "re-hash blobs already in the tree before reusing them (a corrupt one is fetched again)"},
			&cli.Int64Flag{Name: "max-blob-size", Value: exporter.DefaultMaxBlobSize, Usage: "refuse an image with a blob declared larger than this many bytes"},
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	if c.NArg() < 1 || c.NArg() > 2 {
		return usageError(c, "want SOURCE [DEST], got %d arguments", c.NArg())
	}
	if c.Int("jobs") < 1 {
		return usageError(c, "--jobs %d: want 1 or more", c.Int("jobs"))
	}
	if c.Duration("src-timeout") <= 0 {
		return usageError(c, "--src-timeout %v: want more than 0", c.Duration("src-timeout"))
	}
	if c.Int64("max-blob-size") <= 0 {
		return usageError(c, "--max-blob-size %d: want more than 0", c.Int64("max-blob-size"))
	}
	root, err := openRoot(c)
	if err != nil {
		return err
	}
	log := logger(c)
	o := exporter.Options{
		Platforms:      c.StringSlice("platform"),
		Jobs:           c.Int("jobs"),
		MaxBlobSize:    c.Int64("max-blob-size"),
		VerifyExisting: c.Bool("verify-existing"),
		Registry: exporter.RegistryOptions{
			Insecure:  !c.Bool("src-tls-verify"),
			Creds:     c.String("src-creds"),
			AuthFile:  c.String("src-authfile"),
			UserAgent: "image-serve/" + version,
			Timeout:   c.Duration("src-timeout"),
		},
		Log: log,
	}
	var tty *ttyProgress
	if !quiet(c) && c.String("log-format") == "text" && isTerminal(os.Stderr) {
		tty = newTTYProgress(os.Stderr)
		o.Progress = tty
	}
	sum, err := exporter.Export(c.Context, root, c.Args().Get(0), c.Args().Get(1), o)
	if tty != nil {
		tty.Close()
	}
	if err != nil {
		return err
	}
	switch {
	case c.Bool("json"):
		return printJSON(c.App.Writer, exportReport{sum, sum.Elapsed.Seconds()})
	case c.String("log-format") == "json":
		log.Info("exported",
			"source", sum.Source, "dest", sum.Dest, "digest", sum.Digest, "media_type", sum.MediaType,
			"manifests", sum.Manifests, "blobs_fetched", sum.BlobsFetched, "bytes_fetched", sum.BytesFetched,
			"blobs_reused", sum.BlobsReused, "bytes_reused", sum.BytesReused, "elapsed", sum.Elapsed)
	case !quiet(c):
		fmt.Fprintf(os.Stderr, "%s -> %s (%s): fetched %s in %s, reused %s in %s, %s, %s\n",
			sum.Source, sum.Dest, sum.Digest, humanBytes(sum.BytesFetched), plural(sum.BlobsFetched, "blob", "blobs"),
			humanBytes(sum.BytesReused), plural(sum.BlobsReused, "blob", "blobs"), plural(sum.Manifests, "manifest", "manifests"), sum.Elapsed.Round(1e6))
	}
	return nil
}

// exportReport is export's --json summary: the exporter's, with the
// elapsed time in seconds as every JSON output has it.
type exportReport struct {
	*exporter.Summary
	ElapsedSeconds float64 `json:"elapsed"`
}

// printJSON writes v as indented JSON: a command's --json report.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
