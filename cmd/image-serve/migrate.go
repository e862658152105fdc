package main

import (
	"fmt"
	"io"

	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "rewrite a tree TripleO's exporter wrote to the current layout, in place, while it is served",
		Description: `Gives every <digest>.gz layer its plain name (a hard link: no byte is copied), rewrites
manifest headers without TripleO's ETag line, rewrites multi-arch type maps with explicit
preferences (the index first, its linux/amd64 image as a fallback) instead of Apache's size
ranking, turns symlink tags into type maps, sorts tags/list and _catalog, makes files 0644 and
directories 0755, adds the links nginx needs and removes per-repository manifests/.htaccess files.
Each file is replaced by a rename, in publish order, so Apache (TripleO's vhost or ours), nginx and
the embedded server serve every tag throughout. Holds the tree so that exports and gc wait. A
second run changes nothing and says so. See docs/legacy-trees.md.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "change nothing; report what migrate would change"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: runMigrate,
	}
}

func runMigrate(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %d", c.NArg())
	}
	root, err := openTree(c)
	if err != nil {
		return err
	}
	// A dry run holds the tree as a migration does, but read-only: it
	// plans, and finishes no interrupted tag move.
	var rep *tree.MigrateReport
	err = root.Maintain(tree.MaintainOptions{ReadOnly: c.Bool("dry-run")}, func(m *tree.Maint) (err error) {
		rep, err = m.Migrate()
		return err
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	w := c.App.Writer
	switch {
	case wantJSON(c):
		if err := printJSON(w, rep); err != nil {
			return err
		}
	case !quiet(c) || len(rep.Problems) > 0:
		printMigrateReport(w, rep)
	}
	if n := len(rep.Problems); n > 0 {
		return fmt.Errorf("migrate: %s left as they are (verify says more)", plural(n, "problem", "problems"))
	}
	return nil
}

func printMigrateReport(w io.Writer, rep *tree.MigrateReport) {
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing was changed; a run would change:")
	}
	if rep.Changes() == 0 {
		fmt.Fprintln(w, "nothing to migrate: the tree is in the current layout")
	}
	for _, k := range []struct {
		n    int
		what string
	}{
		{rep.SkeletonWritten, "server files written (v2/index.json, error bodies, empty referrers index)"},
		{rep.ModesFixed, "modes fixed (files 0644, directories 0755)"},
		{rep.BlobsRenamed, "blobs renamed (<digest>.gz linked as <digest>, same inode)"},
		{rep.HeadersRewritten, "headers rewritten (no ETag line, media type from the manifest)"},
		{rep.TypeMapsRewritten, "type maps rewritten (explicit qs, index first)"},
		{rep.LegacyTagsConverted, "legacy symlink tags converted to type maps"},
		{rep.ListingsSorted, "listings sorted (tags/list, _catalog)"},
		{rep.NginxLinksAdded, "nginx links added (typed manifest links, tag links)"},
		{rep.RepoHeadersRemoved, "per-repository manifests/.htaccess removed"},
	} {
		if k.n > 0 {
			fmt.Fprintf(w, "%s: %d\n", k.what, k.n)
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}
