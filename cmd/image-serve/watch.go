package main

import (
	"github.com/image-serve/image-serve/tree"
	"github.com/image-serve/image-serve/watch"
	"github.com/urfave/cli/v2"
)

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "keep tags/list, _catalog, nginx's links and referrers indexes in step with changes others make",
		Description: `Watches the tree with inotify and, when something other than image-serve changes it (an rsync
from another host, a repository removed with rm -r, a type map replaced), re-derives the files
that follow from the type maps and manifests: tags/list, _catalog, nginx's tag links and typed
manifest links, the referrers indexes, and a manifest's .htaccess when it is missing or names no
Content-Type or another digest. A type map removed is a tag deleted: the tag leaves tags/list and
nginx's links, and a WARN record names it with the digest nginx served (verify --repair, run
instead after damage, restores it from those links). A burst of changes is re-derived once it has been quiet
for --debounce, and at least every --max-delay while it lasts. It first re-derives the whole tree.
Each repository is re-derived under the tree lock held exclusively, so exports, deletes and gc in
flight finish first and what they write is never re-derived. When the inotify watch limit is
reached or events are lost, it says so once and rescans the whole tree every --rescan-interval.
--root may be an empty directory: it waits there for the first export, and never writes a tree.
Runs until SIGINT or SIGTERM.`,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "debounce", Value: watch.DefaultDebounce, Usage: "re-derive once no change has come for this long"},
			&cli.DurationFlag{Name: "max-delay", Value: watch.DefaultMaxDelay, Usage: "re-derive at least this often while changes keep coming"},
			&cli.DurationFlag{Name: "rescan-interval", Value: watch.DefaultRescan, Usage: "full rescans this often once inotify cannot cover the tree"},
		},
		Action: runWatch,
	}
}

func runWatch(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "unexpected argument %q", c.Args().First())
	}
	for _, name := range []string{"debounce", "max-delay", "rescan-interval"} {
		if c.Duration(name) <= 0 {
			return usageError(c, "--%s %v: want more than 0", name, c.Duration(name))
		}
	}
	if c.Duration("max-delay") < c.Duration("debounce") {
		return usageError(c, "--max-delay %v: want at least --debounce (%v)", c.Duration("max-delay"), c.Duration("debounce"))
	}
	root, _, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	log := logger(c)
	// Waiting for an export to finish is the watcher's daily routine:
	// said at debug level only.
	root = root.WithWaits(tree.Waits{
		Context: c.Context,
		Timeout: c.Duration("lock-timeout"),
		Notify:  func(msg string) { log.Debug(msg) },
	})
	return watch.Run(c.Context, root, watch.Options{
		Debounce: c.Duration("debounce"),
		MaxDelay: c.Duration("max-delay"),
		Rescan:   c.Duration("rescan-interval"),
		Log:      log,
	})
}
