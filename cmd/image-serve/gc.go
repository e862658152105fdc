package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func gcCommand() *cli.Command {
	return &cli.Command{
		Name:  "gc",
		Usage: "delete the manifests and blobs no tag needs",
		Description: `Marks from every tag of every repository (indexes to their children, manifests to their config
and layers, referrers whose subject is kept) and deletes manifests nothing reaches, then blobs no
kept manifest of their repository references, then repositories left empty; tags/list, the
referrers indexes (each before its manifests go) and _catalog are rewritten. Untagged manifests go only once older than --grace. Apache keeps serving; exports
wait until gc ends. A gc started while another runs does nothing and exits 0.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "change nothing; report what gc would do"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.DurationFlag{Name: "grace", Value: gc.DefaultGrace, Usage: "keep untagged manifests younger than this (by ctime)"},
			&cli.StringFlag{Name: "untagged", Value: "delete", Usage: "untagged manifests: delete (after --grace) or keep"},
			&cli.IntFlag{Name: "jobs", Value: 0, Usage: "repositories collected at once (0: one per CPU, at most 8)"},
		},
		Action: runGC,
	}
}

func runGC(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %d", c.NArg())
	}
	if c.Int("jobs") < 0 {
		return usageError(c, "--jobs %d: want 0 or more", c.Int("jobs"))
	}
	if c.Duration("grace") < 0 {
		return usageError(c, "--grace %v: want 0 or more", c.Duration("grace"))
	}
	untagged, err := gc.ParseUntagged(c.String("untagged"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	root, state, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	var rep *gc.Report
	if state == tree.AwaitsTree {
		// The daily unit may run before the first export: nothing to
		// collect, and no lock file written into the empty directory.
		rep = &gc.Report{DryRun: c.Bool("dry-run")}
	} else {
		rep, err = gc.Collect(root, gc.Options{Grace: c.Duration("grace"), Untagged: untagged, DryRun: c.Bool("dry-run"), Jobs: c.Int("jobs")})
	}
	if errors.Is(err, gc.ErrRunning) {
		switch {
		case quiet(c):
		case wantJSON(c):
			return printJSON(c.App.Writer, gcSkipped{Skipped: true, Reason: "another gc is running; it does this one's work"})
		default:
			fmt.Fprintln(os.Stderr, "image-serve: gc: another gc is running; it does this one's work, exiting")
		}
		return nil
	}
	if rep == nil && err != nil && wantJSON(c) {
		// A JSON reader gets a record on every run; a text reader gets
		// only the error, never a report of a collection that did not run.
		if perr := printJSON(c.App.Writer, gcSkipped{Skipped: true, Reason: err.Error()}); perr != nil {
			reportError(perr)
		}
	}
	if rep != nil && (!quiet(c) || err != nil) {
		if perr := printGCReport(c.App.Writer, rep, wantJSON(c)); perr != nil && err == nil {
			err = perr
		}
	}
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	return nil
}

// gcSkipped is gc --json's record of a run that collected nothing: it
// did not start, and Reason says why.
type gcSkipped struct {
	Skipped bool   `json:"skipped"`
	Reason  string `json:"reason"`
}

// quiet reports --quiet given to the command or to image-serve itself.
func quiet(c *cli.Context) bool {
	for _, x := range c.Lineage() {
		if x.Bool("quiet") {
			return true
		}
	}
	return false
}

func printGCReport(w io.Writer, rep *gc.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	done, freed := "deleted", "freed"
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing was changed")
		done, freed = "that would be deleted", "that would be freed"
	}
	fmt.Fprintf(w, "repositories scanned: %d\n", rep.Repositories)
	fmt.Fprintf(w, "repositories %s: %d\n", strings.Replace(done, "deleted", "removed", 1), rep.RepositoriesRemoved)
	fmt.Fprintf(w, "manifests kept: %d\n", rep.ManifestsKept)
	fmt.Fprintf(w, "manifests %s: %d\n", done, rep.ManifestsDeleted)
	fmt.Fprintf(w, "blobs kept: %d\n", rep.BlobsKept)
	fmt.Fprintf(w, "blobs %s: %d\n", done, rep.BlobsDeleted)
	fmt.Fprintf(w, "bytes %s: %s\n", freed, sizeText(rep.BytesFreed))
	if rep.GraceKept > 0 {
		fmt.Fprintf(w, "untagged manifests kept by --grace: %d, the first collectable from %s\n",
			rep.GraceKept, rep.CollectableAt.UTC().Format(time.DateTime+" UTC"))
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	return nil
}
