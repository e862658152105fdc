package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/image-serve/image-serve/gc"
	"github.com/urfave/cli/v2"
)

func deleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete tags or manifests, and reclaim what they leave",
		ArgsUsage: "REPO:TAG|REPO@DIGEST...",
		Description: `REPO:TAG removes the tag. REPO@DIGEST of a pinned manifest (a digest entry of sync, an
export by digest without a tag) removes the pin: the manifest stays while a tag or an index still
names it. REPO@DIGEST of a manifest that is not pinned removes the manifest, and refuses while a
tag or an index still references it. Then the repositories touched are pruned: what the deleted
references and pins reached and nothing else reaches is deleted at once, and a repository left
with no tag and nothing pinned is removed. A referrer (an SBOM or signature with a subject) lives
as long as its subject unless deleted by digest or by a tag of its own; a later gc keeps it with
its subject. --no-prune leaves reclaiming to gc.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "no-prune", Usage: "only delete the references; leave reclaiming to gc"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: runDelete,
	}
}

func runDelete(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError(c, "want REPO:TAG or REPO@DIGEST")
	}
	var refs []gc.Ref
	for _, a := range c.Args().Slice() {
		r, err := gc.ParseRef(a)
		if err != nil {
			return usageError(c, "%v", err)
		}
		refs = append(refs, r)
	}
	root, err := openTree(c)
	if err != nil {
		return err
	}
	rep, err := gc.Delete(root, refs, gc.DeleteOptions{NoPrune: c.Bool("no-prune"), Grace: gc.DefaultGrace})
	if rep != nil && !quiet(c) {
		if wantJSON(c) {
			enc := json.NewEncoder(c.App.Writer)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		} else {
			for _, d := range rep.Deleted {
				fmt.Fprintf(c.App.Writer, "deleted %s\n", d)
			}
			for _, d := range rep.Unpinned {
				fmt.Fprintf(c.App.Writer, "unpinned %s\n", d)
			}
			// A prune follows deletions: when every ref was refused there
			// is nothing to summarise, only the errors.
			if p := rep.Prune; p != nil && p.Repositories > 0 && len(rep.Deleted)+len(rep.Unpinned) > 0 {
				fmt.Fprintf(c.App.Writer, "pruned %s: %s and %s deleted, %s freed, %s removed\n",
					plural(p.Repositories, "repository", "repositories"), plural(p.ManifestsDeleted, "manifest", "manifests"),
					plural(p.BlobsDeleted, "blob", "blobs"), sizeText(p.BytesFreed), plural(p.RepositoriesRemoved, "repository", "repositories"))
			}
		}
	}
	return lastError(err)
}

// lastError reports every error joined in err but the last on stderr, one
// line each, and returns the last for main to report and exit with.
func lastError(err error) error {
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		return err
	}
	errs := joined.Unwrap()
	for _, e := range errs[:len(errs)-1] {
		reportError(e)
	}
	return errs[len(errs)-1]
}
