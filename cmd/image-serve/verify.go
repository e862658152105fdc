package main

import (
	"encoding/json"
	"fmt"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/gc"
	"github.com/urfave/cli/v2"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "re-hash and cross-check the tree; exit 1 on any problem",
		ArgsUsage: "[REPO...]",
		Description: `Re-hashes every blob (legacy .gz names too) and manifest; checks every manifest's headers, that
every tag, index child and referenced blob is in its repository, that tags/list lists exactly the
tags, that every referrers index lists exactly the manifests whose subject it is, and that _catalog
lists exactly the repositories. Prints each problem with its path.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only problems"},
		},
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	for _, repo := range c.Args().Slice() {
		if err := catalog.ValidateRepo(repo); err != nil {
			return usageError(c, "%v", err)
		}
	}
	root, err := openRoot(c)
	if err != nil {
		return err
	}
	rep, err := gc.Verify(root, c.Args().Slice())
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	w := c.App.Writer
	switch {
	case c.Bool("json"):
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	default:
		for _, p := range rep.Problems {
			fmt.Fprintln(w, p)
		}
		if len(rep.Problems) == 0 && !quiet(c) {
			fmt.Fprintf(w, "verified %d repositories, %d manifests, %d blobs: no problems\n", rep.Repositories, rep.Manifests, rep.Blobs)
		}
	}
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("verify: %d problems in %d repositories, %d manifests, %d blobs", n, rep.Repositories, rep.Manifests, rep.Blobs)
	}
	return nil
}
