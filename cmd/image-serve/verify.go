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
	root, err := openTree(c)
	if err != nil {
		return err
	}
	rep, err := gc.Verify(root, c.Args().Slice())
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	w := c.App.Writer
	switch {
	case wantJSON(c):
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
			fmt.Fprintf(w, "verified %s: no problems\n", verifiedText(rep))
		}
	}
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("verify: %s in %s", plural(n, "problem", "problems"), verifiedText(rep))
	}
	return nil
}

func verifiedText(rep *gc.VerifyReport) string {
	return plural(rep.Repositories, "repository", "repositories") + ", " + plural(rep.Manifests, "manifest", "manifests") + ", " + plural(rep.Blobs, "blob", "blobs")
}
