package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/tree"
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
lists exactly the repositories; that every digest pin names a manifest of its repository that is
there with all it reaches, and that the pins directories hold nothing but pins; and that no symlink
leads outside the tree and no FIFO, socket or device stands in it. Prints each problem with its
path.

--repair, holding the tree so that exports and gc wait, never loses what the tree still records.
First it derives what can be derived: a manifest's missing or wrong .htaccess from the manifest's
bytes, and the type map of a tag that lost its own from nginx's links to it (or from the journal
of an interrupted tag move). Then it removes every FIFO, socket or device (the
entry, never opened), the .htaccess files image-serve never writes, the blobs and manifests whose bytes do not match
their names, rewrites tags/list, tag links, referrers indexes and _catalog where they are out of
step, removes what stands in the pins directories that is no pin and each pin whose manifest is
gone for good (missing, or removed as corrupt; printed as unpinned, with why), and prints the
tags and pins that need a re-export (export --verify-existing fetches what is missing) — among
them each tag that tags/list or nginx's links still named but that it could not restore, with
why. Then it verifies again; it exits 1 while a problem is left or a tag or pin was lost.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.BoolFlag{Name: "repair", Usage: "restore what can be derived, remove what is corrupt, rewrite what is out of step, name the tags to re-export"},
		},
		Action: runVerify,
	}
}

func runVerify(c *cli.Context) error {
	root, _, _, err := openTreeWithRepos(c, false)
	if err != nil {
		return err
	}
	if c.Bool("repair") {
		return runRepair(c, root)
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
		for _, p := range rep.Legacy {
			fmt.Fprintf(w, "legacy: %s\n", p)
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

func runRepair(c *cli.Context, root *tree.Root) error {
	rep, err := gc.Repair(root, c.Args().Slice())
	if err != nil {
		return fmt.Errorf("verify --repair: %w", err)
	}
	w := c.App.Writer
	if wantJSON(c) {
		if err := printJSON(w, rep); err != nil {
			return err
		}
	} else {
		for _, p := range rep.RemovedNotRegular {
			fmt.Fprintf(w, "removed %s\n", p)
		}
		for _, b := range rep.RemovedBlobs {
			fmt.Fprintf(w, "removed corrupt blob %s\n", b)
		}
		for _, m := range rep.RemovedManifests {
			fmt.Fprintf(w, "removed corrupt manifest %s\n", m)
		}
		for _, f := range rep.RemovedStray {
			fmt.Fprintf(w, "removed %s: image-serve never writes it there\n", f)
		}
		for _, p := range rep.RemovedPinDebris {
			fmt.Fprintf(w, "removed %s: no digest pin (%s)\n", p.Path, p.Message)
		}
		for _, t := range rep.Restored {
			fmt.Fprintf(w, "restored tag %s from %s\n", t.Tag, t.From)
		}
		for _, f := range rep.Rewritten {
			fmt.Fprintf(w, "rewrote %s\n", f)
		}
		lost := map[string]string{}
		for _, t := range rep.Lost {
			lost[t.Tag] = t.Why
		}
		unpinned := map[string]string{}
		for _, u := range rep.Unpinned {
			unpinned[u.Ref] = u.Why
		}
		for _, t := range rep.NeedExport {
			if why, ok := lost[t]; ok {
				fmt.Fprintf(w, "%s needs a re-export: its type map is gone and cannot be restored (%s); run image-serve export SOURCE %s\n", t, why, t)
				continue
			}
			if why, ok := unpinned[t]; ok {
				repo, d, _ := strings.Cut(t, "@")
				fmt.Fprintf(w, "unpinned %s: %s; to pin it again, run image-serve export docker://HOST/REPO@%s %s\n", t, why, d, repo)
				continue
			}
			fmt.Fprintf(w, "%s needs a re-export\n", t)
		}
		for _, p := range rep.Verify.Problems {
			fmt.Fprintln(w, p)
		}
	}
	if n := rep.ProblemsLeft(); n > 0 {
		return fmt.Errorf("verify --repair: %s left (%s a re-export) in %s", plural(n, "problem", "problems"), plural(len(rep.NeedExport), "tag needs", "tags need"), verifiedText(rep.Verify))
	}
	if !quiet(c) && !wantJSON(c) {
		fmt.Fprintf(w, "repaired: %s; verified %s: no problems\n", rep, verifiedText(rep.Verify))
	}
	return nil
}

func verifiedText(rep *gc.VerifyReport) string {
	return plural(rep.Repositories, "repository", "repositories") + ", " + plural(rep.Manifests, "manifest", "manifests") + ", " + plural(rep.Blobs, "blob", "blobs")
}
