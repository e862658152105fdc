package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "print the repositories of the tree, or the tags of some",
		ArgsUsage: "[REPO...]",
		Description: `Without REPO: the repositories, one per line. With one REPO: its tags; with several: REPO:TAG.
--long: every tag (of REPO, or of the tree) with its digest, media type, platforms, the bytes a pull
of every platform fetches, and when it was last set, then every digest pin (a manifest kept by its
digest, without a tag) as REPO@DIGEST marked "(pinned)". --json: the same as a JSON array, a pin with
"pinned": true and no tag. A repository with pins but no tag is listed too, though no _catalog
names it. A tag a
pull cannot fetch whole (its manifest, a child, a config or a layer missing or unreadable) is
printed with what could be read and its status; list then exits 1 (run verify for the details).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "long", Aliases: []string{"l"}, Usage: "every tag with what it is"},
			&cli.BoolFlag{Name: "json", Usage: "print every tag with what it is, as JSON"},
		},
		Action: runList,
	}
}

func runList(c *cli.Context) error {
	root, state, repos, err := openTreeWithRepos(c, true)
	if err != nil {
		return err
	}
	long := wantJSON(c) || c.Bool("long")
	// What is read is printed only once the tree lock is let go: a pager
	// reading the output slowly must not hold up a collection.
	var (
		tags  []catalog.Tag // --long, --json
		lerr  error         // the repositories whose tags could not be listed
		lines []string      // otherwise
	)
	err = inspectTree(root, state, func(v *tree.View) error {
		for _, repo := range repos {
			e, err := v.Repository(repo)
			if err != nil {
				return err
			}
			if !e.Exists {
				return fmt.Errorf("repository %s: not in %s", repo, root.Dir())
			}
		}
		if len(repos) == 0 && long {
			var err error
			if repos, err = listedRepositories(v); err != nil {
				return err
			}
		}
		switch {
		case long:
			// A damaged tree is when this is run: every tag that can be
			// read is printed, the broken ones marked, and the failure
			// comes after.
			tags, lerr = catalog.Tags(v, repos)
		case len(repos) == 0:
			names, err := listedRepositories(v)
			if err != nil {
				return err
			}
			lines = names
		default:
			for _, repo := range repos {
				names, err := v.TagNames(repo)
				if err != nil {
					return err
				}
				for _, tag := range names {
					if len(repos) > 1 {
						tag = repo + ":" + tag
					}
					lines = append(lines, tag)
				}
			}
		}
		return nil
	}, func() error {
		// No tree yet: an empty registry, where no repository is.
		if len(repos) > 0 {
			return fmt.Errorf("repository %s: not in %s", repos[0], root.Dir())
		}
		tags = []catalog.Tag{}
		return nil
	})
	if err != nil {
		return err
	}
	if !long {
		for _, l := range lines {
			fmt.Fprintln(c.App.Writer, l)
		}
		return nil
	}
	if wantJSON(c) {
		err = printJSON(c.App.Writer, tags)
	} else {
		err = printTags(c, tags)
	}
	if err != nil {
		return err
	}
	return brokenTags(tags, lerr)
}

// listedRepositories are the repositories list shows: those with tags
// (_catalog's) and those with digest pins, sorted.
func listedRepositories(v *tree.View) ([]string, error) {
	repos, err := v.Repositories()
	if err != nil {
		return nil, err
	}
	pinned, err := v.PinnedRepositories()
	if err != nil {
		return nil, err
	}
	repos = append(repos, pinned...)
	slices.Sort(repos)
	return slices.Compact(repos), nil
}

// inspectTree runs view with a View of root's tree, holding the tree lock
// shared (tree.Root.Inspect). A user who may not write the tree cannot
// take the lock: view then reads without it (tree.Root.InspectUnlocked),
// as the views always did. A root that awaits its first export
// (tree.AwaitsTree) has no tree to view: empty runs instead, answering as
// an empty registry, and nothing is written there — not even the tree
// lock, which Inspect would create.
func inspectTree(root *tree.Root, state tree.RootState, view func(*tree.View) error, empty func() error) error {
	if state == tree.AwaitsTree {
		return empty()
	}
	ran := false
	err := root.Inspect(func(v *tree.View) error {
		ran = true
		return view(v)
	})
	if !ran && errors.Is(err, fs.ErrPermission) {
		return root.InspectUnlocked(view)
	}
	return err
}

// brokenTags is list's failure once every tag is printed: how many are
// broken, and the repositories whose tags could not be listed (lerr).
func brokenTags(tags []catalog.Tag, lerr error) error {
	n := 0
	for _, t := range tags {
		if t.Status != "" {
			n++
		}
	}
	var msgs []string
	if n > 0 {
		msgs = append(msgs, plural(n, "tag is broken", "tags are broken"))
	}
	if lerr != nil {
		msgs = append(msgs, strings.ReplaceAll(lerr.Error(), "\n", "; "))
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("list: %s (run image-serve verify)", strings.Join(msgs, "; "))
}

// printTags is list --long: one aligned line per tag, a broken one ending
// with what is wrong; what could not be read is "-".
func printTags(c *cli.Context, tags []catalog.Tag) error {
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TAG\tDIGEST\tTYPE\tPLATFORMS\tSIZE\tCHANGED")
	for _, t := range tags {
		platforms := strings.Join(t.Platforms, ",")
		if platforms == "" {
			platforms = "-"
		}
		changed := "-"
		if !t.Changed.IsZero() {
			changed = t.Changed.UTC().Format(time.DateTime)
		}
		if t.Legacy {
			changed += "  (TripleO symlink tag: run migrate)"
		}
		if t.Pinned {
			changed += "  (pinned)"
		}
		if t.Status != "" {
			changed += "  BROKEN: " + t.Status
		}
		digest, typ, size := "-", "-", "-"
		if t.Digest != "" {
			digest = shortDigest(t.Digest.String())
		}
		if t.MediaType != "" {
			typ = shortType(t.MediaType)
		}
		if t.Size > 0 || t.Status == "" {
			size = humanBytes(t.Size)
		}
		ref := t.Repository + ":" + t.Tag
		if t.Pinned {
			ref = t.Repository + "@" + t.Digest.String()
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", ref, digest, typ, platforms, size, changed)
	}
	return w.Flush()
}

// shortDigest is the first 12 hex digits, as docker and podman show them.
func shortDigest(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return hex[:12]
	}
	return d
}

// shortType names a manifest media type in a word.
func shortType(mt string) string {
	for _, t := range tree.NginxTypes() {
		if t.MediaType == mt {
			return t.Ext
		}
	}
	return mt
}

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print what a tag or manifest is: children, config, layers, referrers",
		ArgsUsage: "REPO:TAG|REPO@DIGEST",
		Description: `A tag or manifest that is broken (its manifest, a child, the config or a layer missing or
unreadable) is printed as far as it can be read, with its status and each broken part marked,
and inspect exits 1.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print it as JSON"},
		},
		Action: runInspect,
	}
}

func runInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one REPO:TAG or REPO@DIGEST, got %d arguments", c.NArg())
	}
	ref, err := gc.ParseRef(c.Args().First())
	if err != nil {
		return usageError(c, "%v", err)
	}
	root, state, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	var img *catalog.Image
	err = inspectTree(root, state, func(v *tree.View) (err error) {
		img, err = catalog.Inspect(v, ref.Repo, ref.Tag, ref.Digest)
		return err
	}, func() error {
		return fmt.Errorf("%s: %w", ref, catalog.ErrUnknown)
	})
	if err != nil {
		return err
	}
	if wantJSON(c) {
		err = printJSON(c.App.Writer, img)
	} else {
		err = printImage(c, img)
	}
	if err == nil && img.Status != "" {
		err = fmt.Errorf("inspect: %s is broken: %s (run image-serve verify)", c.Args().First(), img.Status)
	}
	return err
}

// marked is an inspect line, followed by what is wrong with what it
// names, if anything.
func marked(s, status string) string {
	if status == "" {
		return s
	}
	return s + "\t(" + status + ")"
}

func printImage(c *cli.Context, img *catalog.Image) error {
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	name := img.Repository + "@" + img.Digest.String()
	if img.Tag != "" {
		name = img.Repository + ":" + img.Tag
	}
	fmt.Fprintf(w, "Name:\t%s\n", name)
	if img.Status != "" {
		fmt.Fprintf(w, "Status:\tBROKEN: %s\n", img.Status)
	}
	if img.Digest != "" {
		fmt.Fprintf(w, "Digest:\t%s\n", img.Digest)
	}
	if img.MediaType != "" {
		fmt.Fprintf(w, "Media type:\t%s\n", img.MediaType)
	}
	if img.Size > 0 {
		fmt.Fprintf(w, "Manifest size:\t%s\n", humanBytes(img.Size))
	}
	if img.ArtifactType != "" {
		fmt.Fprintf(w, "Artifact type:\t%s\n", img.ArtifactType)
	}
	if img.Subject != "" {
		fmt.Fprintf(w, "Subject:\t%s\n", img.Subject)
	}
	for _, ch := range img.Children {
		platform := ch.Platform
		if platform == "" {
			platform = "-"
		}
		fmt.Fprintln(w, marked(fmt.Sprintf("Child:\t%s\t%s\t%s\t%s", ch.Digest, platform, shortType(ch.MediaType), humanBytes(ch.Size)), ch.Status))
	}
	if cf := img.Config; cf != nil {
		fmt.Fprintln(w, marked(fmt.Sprintf("Config:\t%s\t%s", cf.Digest, humanBytes(cf.Size)), cf.Status))
		if cf.Status == "" {
			printConfig(w, cf)
		}
	}
	for _, l := range img.Layers {
		size := "-"
		if l.Size >= 0 {
			size = humanBytes(l.Size)
		}
		fmt.Fprintln(w, marked(fmt.Sprintf("Layer:\t%s\t%s", l.Digest, size), l.Status))
	}
	for _, r := range img.Referrers {
		fmt.Fprintf(w, "Referrer:\t%s\t%s\n", r.Digest, r.ArtifactType)
	}
	return w.Flush()
}

// printConfig is what inspect tells of an image's configuration.
func printConfig(w io.Writer, cf *catalog.Config) {
	if cf.Created != nil {
		fmt.Fprintf(w, "Created:\t%s\n", cf.Created.UTC().Format(time.RFC3339))
	}
	if cf.OS != "" {
		fmt.Fprintf(w, "Platform:\t%s/%s\n", cf.OS, cf.Architecture)
	}
	if len(cf.Entrypoint) > 0 {
		fmt.Fprintf(w, "Entrypoint:\t%s\n", strings.Join(cf.Entrypoint, " "))
	}
	if len(cf.Cmd) > 0 {
		fmt.Fprintf(w, "Cmd:\t%s\n", strings.Join(cf.Cmd, " "))
	}
	for k, v := range cf.Labels {
		fmt.Fprintf(w, "Label:\t%s=%s\n", k, v)
	}
	fmt.Fprintf(w, "History:\t%s\n", plural(cf.HistoryLength, "entry", "entries"))
}

func duCommand() *cli.Command {
	return &cli.Command{
		Name:      "du",
		Usage:     "print what repositories cost on disk, hard-linked blobs counted once",
		ArgsUsage: "[REPO...]",
		Description: `Per repository: its bytes, the unique part (no other repository links it: what deleting the
repository frees) and the shared rest; then the whole tree as the file system counts it, each file
once. du(1) of repository directories counts a blob hard-linked into several of them each time.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print it as JSON"},
		},
		Action: runDu,
	}
}

func runDu(c *cli.Context) error {
	root, state, repos, err := openTreeWithRepos(c, true)
	if err != nil {
		return err
	}
	var u *catalog.Usage
	err = inspectTree(root, state, func(v *tree.View) (err error) {
		if len(repos) == 0 {
			if repos, err = v.StoredRepositories(); err != nil {
				return err
			}
		}
		u, err = catalog.DiskUsage(v, repos)
		return err
	}, func() error {
		// No tree yet: nothing costs anything.
		u = &catalog.Usage{Repositories: []catalog.RepoUsage{}}
		for _, repo := range repos {
			u.Repositories = append(u.Repositories, catalog.RepoUsage{Repository: repo})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c.App.Writer, u)
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "BYTES\tUNIQUE\tSHARED\t REPOSITORY")
	for _, r := range u.Repositories {
		fmt.Fprintf(w, "%s\t%s\t%s\t %s\n", humanBytes(r.Bytes), humanBytes(r.Unique), humanBytes(r.Shared), r.Repository)
	}
	fmt.Fprintf(w, "%s\t\t\t %s\n", humanBytes(u.Total), "total (each file once)")
	return w.Flush()
}
