package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"

	"github.com/image-serve/image-serve/preheat"
	"github.com/image-serve/image-serve/syncfile"
)

func preheatCommand() *cli.Command {
	return &cli.Command{
		Name:      "preheat",
		Usage:     "warm caching tiers: GET every manifest and blob of some images through each",
		ArgsUsage: "REPO:TAG|REPO@DIGEST...",
		Description: `Resolves each tag through the first --through tier that answers, as a client would (every
manifest type accepted, so a multi-architecture tag gives its index and every child), then GETs
every manifest and blob by digest through each tier, tier after tier, so that a rollout starts with
the tiers' caches warm (config nginx --cache-for). Every body is checked against its digest.
With -f SYNCFILE, the images are the sync file's, at the paths sync writes them to (--prefix,
--scoped as for sync); entries that select tags by pattern are listed through the first tier.
A tier that cannot be warmed is named and the run exits 1; the other tiers are warmed all the same.
Prints a summary of what each tier served (bytes, manifests, blobs), or with --json a report.`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "through", Usage: "a tier's `URL`, http(s)://HOST[:PORT] (repeatable; required)"},
			&cli.StringFlag{Name: "from-file", Aliases: []string{"f"}, Usage: "warm the images of sync `FILE`"},
			&cli.StringFlag{Name: "prefix", Usage: "with -f: repository path the images are under (a registry's prefix: in the file wins)"},
			&cli.BoolFlag{Name: "scoped", Usage: "with -f: each image is under its source registry's host name too (sync --scoped)"},
			&cli.IntFlag{Name: "jobs", Value: 4, Usage: "GETs in flight at once, over all tiers"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		},
		Action: runPreheat,
	}
}

func runPreheat(c *cli.Context) error {
	tiers := c.StringSlice("through")
	if len(tiers) == 0 {
		return usageError(c, "--through: give at least one tier URL")
	}
	for _, t := range tiers {
		if !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") {
			return usageError(c, "--through %q: want http://HOST[:PORT] or https://HOST[:PORT]", t)
		}
	}
	if c.Int("jobs") < 1 {
		return usageError(c, "--jobs %d: want 1 or more", c.Int("jobs"))
	}
	file := c.String("from-file")
	if (file == "") == (c.NArg() == 0) {
		return usageError(c, "give REPO:TAG or REPO@DIGEST arguments, or -f SYNCFILE, not both")
	}
	var refs []preheat.Ref
	for _, a := range c.Args().Slice() {
		r, err := preheat.ParseRef(a)
		if err != nil {
			return usageError(c, "%v", err)
		}
		refs = append(refs, r)
	}
	client := &http.Client{}
	if file != "" {
		var err error
		if refs, err = preheatFileRefs(c, client, tiers[0], file); err != nil {
			return err
		}
	}
	o := preheat.Options{Jobs: c.Int("jobs"), Client: client}
	var line *preheatLine
	if !quiet(c) && c.String("log-format") == "text" && isTerminal(os.Stderr) {
		line = newPreheatLine()
		o.Progress = line.update
	}
	start := time.Now()
	rep, err := preheat.Run(c.Context, tiers, refs, o)
	if line != nil {
		line.Close()
	}
	if rep == nil {
		return err
	}
	if wantJSON(c) {
		if jerr := printJSON(c.App.Writer, rep); jerr != nil {
			return jerr
		}
	} else if !quiet(c) {
		for _, t := range rep.Tiers {
			status := "warm"
			if t.Error != "" {
				status = "NOT WARM: " + t.Error
			}
			fmt.Fprintf(os.Stderr, "%s: %s in %s and %s: %s\n", t.URL, humanBytes(t.Bytes),
				plural(t.Manifests, "manifest", "manifests"), plural(t.Blobs, "blob", "blobs"), status)
		}
		fmt.Fprintf(os.Stderr, "preheated %s of %s through %s in %s\n", plural(rep.Objects, "object", "objects"),
			plural(len(rep.Resolved), "image", "images"), plural(len(rep.Tiers), "tier", "tiers"), time.Since(start).Round(time.Millisecond))
	}
	var te *preheat.TierError
	if errors.As(err, &te) {
		return fmt.Errorf("preheat: %w", err)
	}
	return err
}

// preheatFileRefs lists the images of a sync file as they are in the tree
// sync writes: a tag or digest named is taken as it is; a repository whose
// tags are selected by pattern, or all of them, is listed through tier.
func preheatFileRefs(c *cli.Context, client *http.Client, tier, file string) ([]preheat.Ref, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, usageError(c, "-f: %v", err)
	}
	defer f.Close()
	sf, err := syncfile.Read(f)
	if err != nil {
		return nil, usageError(c, "%s: %v", file, err)
	}
	prefix := strings.Trim(c.String("prefix"), "/")
	var refs []preheat.Ref
	for _, reg := range sf.Registries {
		p := prefix
		if reg.Prefix != "" {
			p = reg.Prefix
		}
		for _, im := range reg.Images {
			repo := destRepo(p, c.Bool("scoped"), reg.Host, im.Repo)
			tags := im.Tags
			if im.AllTags() || im.Kind != syncfile.Listed {
				if tags, err = preheat.Tags(c.Context, client, tier, repo); err != nil {
					return nil, fmt.Errorf("%s line %d: %w", file, im.Line, err)
				}
			}
			for _, t := range tags {
				if im.Selects(t) {
					refs = append(refs, preheat.Ref{Repo: repo, Tag: t})
				}
			}
			for _, d := range im.Digests {
				refs = append(refs, preheat.Ref{Repo: repo, Digest: digest.Digest(d)})
			}
		}
	}
	return refs, nil
}

// preheatLine is the progress line on a terminal: objects done of all,
// bytes received, redrawn in place.
type preheatLine struct {
	mu         sync.Mutex
	p          preheat.Progress
	stop, done chan struct{}
}

func newPreheatLine() *preheatLine {
	l := &preheatLine{stop: make(chan struct{}), done: make(chan struct{})}
	go redrawLoop(l.stop, l.done, l.draw)
	return l
}

func (l *preheatLine) update(p preheat.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p.Done > l.p.Done {
		l.p = p
	}
}

func (l *preheatLine) draw(final bool) {
	l.mu.Lock()
	p := l.p
	l.mu.Unlock()
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(os.Stderr, "\r\033[Kpreheat: %d/%d objects, %s%s", p.Done, p.Total, humanBytes(p.Bytes), end)
}

// Close draws the final state, ends the line and stops redrawing.
func (l *preheatLine) Close() {
	close(l.stop)
	<-l.done
}
