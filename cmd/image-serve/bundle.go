package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
	"github.com/image-serve/image-serve/airgap"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func bundleCommand() *cli.Command {
	return &cli.Command{
		Name:  "bundle",
		Usage: "carry images to an air-gapped site: only what it lacks, checked as it loads",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "write a bundle of images, leaving out the blobs the far side holds",
				ArgsUsage: "REPO:TAG... | -f SYNCFILE",
				Description: `-f SYNCFILE takes the images a sync file mirrors into this tree: the tags it names, or for an
entry that selects tags (every tag, a regex, semver) those of the tree's repository it selects,
the repository named as sync names it (--prefix, --scoped, the file's prefix); its digest
entries (pins) are not carried.
Every manifest, index and config of the images goes in, and of their other blobs only those that
neither an inventory (--have, from image-serve inventory at the far side) nor a base image of this
tree (--base, one the far side has) holds; the descriptor lists those it leaves out, which the far
side must hold. The bundle is one tar written as a stream (-o - for stdout). --split SIZE writes
parts FILE.part001, FILE.part002, ... of at most SIZE bytes each (K, M, G, T: powers of 1024),
each a tar of whole members with a header naming the bundle, so that they load in any order; a
blob larger than a part gets a part of its own, or with --strict-size is refused.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the bundle to FILE (- for stdout)"},
					&cli.StringSliceFlag{Name: "have", Usage: "an inventory of the far side (repeatable)"},
					&cli.StringSliceFlag{Name: "base", Usage: "REPO:TAG of this tree the far side holds (repeatable)"},
					&cli.StringFlag{Name: "split", Usage: "write parts of at most SIZE bytes (K, M, G, T suffixes)"},
					&cli.BoolFlag{Name: "strict-size", Usage: "with --split: refuse a blob larger than a part"},
					&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "bundle the tags this sync file mirrors into the tree"},
					&cli.StringFlag{Name: "prefix", Usage: "with -f: the --prefix the sync ran with"},
					&cli.BoolFlag{Name: "scoped", Usage: "with -f: the sync ran with --scoped"},
				},
				Action: runBundleCreate,
			},
			{
				Name:      "inspect",
				Usage:     "print what a bundle holds and needs, without loading it",
				ArgsUsage: "FILE|PART...",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print it as JSON"}},
				Action:    runBundleInspect,
			},
			{
				Name:      "load",
				Usage:     "publish a bundle's tags into the tree: all of them or none",
				ArgsUsage: "FILE|PART...|-",
				Description: `Parts may be given in any order; on stdin (-) a bundle, or its parts concatenated in order. Before
anything is written the descriptor is read and every blob it needs checked to be in the tree (a
bundle whose needed blobs are missing is refused, listing them), and a file's members and parts
are checked to be all there. Then every member is verified against its digest as it streams into
the tree, nothing is extracted anywhere first, and every tag of the bundle moves, or none (export
--atomic's journal). Loading the same bundle again changes nothing.
--to docker://HOST[/PREFIX] loads into a registry instead of the tree, each repository REPO of the
bundle as PREFIX/REPO. A blob the bundle needs is looked for (HEAD) in the repositories of its
tags and then in those --mount-from names (under PREFIX likewise), and mounted from the first
that holds it (copied through from there when the registry declines the mount); a bundle with a
needed blob none holds is refused, listing them, before any write. The bundle's blobs are uploaded, each once, and mounted into its other repositories;
then the manifests, children before indexes; the tags last of all. --to overwrites tags.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "on-existing-tag", Value: "overwrite", Usage: "a tag the tree has, naming another manifest: overwrite, skip or fail"},
					&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
					&cli.StringFlag{Name: "to", Usage: "docker://HOST[/PREFIX]: load into this registry instead of the tree"},
					&cli.StringSliceFlag{Name: "mount-from", Usage: "with --to: a repository (under PREFIX) that may hold blobs the bundle needs (repeatable)"},
					&cli.BoolFlag{Name: "dest-tls-verify", Value: true, Usage: "with --to: require HTTPS and a valid certificate (false: allow plain HTTP and self-signed certificates)"},
					&cli.StringFlag{Name: "dest-creds", Usage: "with --to: USER[:PASS] for the registry"},
					&cli.StringFlag{Name: "dest-authfile", Usage: "with --to: auth file for the registry (default: docker config.json, containers auth.json)"},
					&cli.StringFlag{Name: "dest-cert-dir", Usage: "with --to: certs.d directory for the registry: *.crt CAs, *.cert/*.key client pairs"},
				},
				Action: runBundleLoad,
			},
		},
	}
}

func runBundleCreate(c *cli.Context) error {
	out := c.String("output")
	if out == "" {
		return usageError(c, "-o FILE (or - for stdout) is required")
	}
	var entries []exporter.SyncEntry
	switch {
	case c.String("file") != "" && c.NArg() > 0:
		return usageError(c, "-f takes no REPO:TAG argument, got %d arguments", c.NArg())
	case c.String("file") != "":
		var err error
		if entries, err = syncEntries(c); err != nil {
			return err
		}
	case c.NArg() == 0:
		return usageError(c, "want at least one REPO:TAG, or -f SYNCFILE")
	case c.String("prefix") != "" || c.Bool("scoped"):
		return usageError(c, "--prefix and --scoped go with -f SYNCFILE")
	}
	var req airgap.Request
	for _, a := range c.Args().Slice() {
		ref, err := airgap.ParseRef(a)
		if err != nil {
			return usageError(c, "%v", err)
		}
		req.Images = append(req.Images, ref)
	}
	for _, a := range c.StringSlice("base") {
		ref, err := airgap.ParseRef(a)
		if err != nil {
			return usageError(c, "--base %v", err)
		}
		req.Bases = append(req.Bases, ref)
	}
	var partSize int64
	if s := c.String("split"); s != "" {
		n, err := parseSize(s)
		if err != nil {
			return usageError(c, "--split %v", err)
		}
		if out == "-" {
			return usageError(c, "--split writes files: give -o FILE")
		}
		partSize = n
	} else if c.Bool("strict-size") {
		return usageError(c, "--strict-size needs --split")
	}
	for _, path := range c.StringSlice("have") {
		inv, err := readInventory(path)
		if err != nil {
			return err
		}
		req.Inventories = append(req.Inventories, inv)
	}
	root, err := openTree(c)
	if err != nil {
		return err
	}
	var desc *bundle.Descriptor
	var written int64
	var files []string
	err = root.Inspect(func(v *tree.View) error {
		if entries != nil {
			refs, err := syncFileRefs(v, c.String("file"), entries)
			if err != nil {
				return err
			}
			req.Images = refs
		}
		p, err := airgap.MakePlan(v, req)
		if err != nil {
			return err
		}
		desc = p.Descriptor
		if partSize == 0 {
			files = []string{out}
			written, err = writeOutput(c, out, func(w io.Writer) (int64, error) { return bundle.Write(w, desc, p.Open(v)) })
			return err
		}
		parts, err := bundle.PlanParts(desc, partSize, c.Bool("strict-size"))
		if err != nil {
			return err
		}
		files, written, err = writeParts(out, desc, parts, p.Open(v))
		return err
	})
	if err != nil {
		return err
	}
	if !quiet(c) {
		fmt.Fprintf(os.Stderr, "bundle of %s: %s in %s (%s): carries %s of the images' %s, leaves out %s the far side holds (%s)\n",
			plural(len(desc.Tags), "tag", "tags"), humanBytes(written), plural(len(files), "file", "files"), strings.Join(files, " "),
			humanBytes(desc.Bytes.Members), humanBytes(desc.Bytes.Images), plural(len(desc.Needed), "blob", "blobs"), humanBytes(desc.Bytes.Needed))
	}
	return nil
}

// syncFileRefs are the tags of the tree a sync file's entries mirror:
// those an entry names, or those of its repository it selects. An entry
// naming only digests adds nothing: a bundle publishes tags.
func syncFileRefs(v *tree.View, file string, entries []exporter.SyncEntry) ([]airgap.Ref, error) {
	var refs []airgap.Ref
	seen := map[airgap.Ref]bool{}
	add := func(ref airgap.Ref) {
		if !seen[ref] {
			seen[ref] = true
			refs = append(refs, ref)
		}
	}
	for _, e := range entries {
		if e.Tags != nil {
			for _, tag := range e.Tags {
				add(airgap.Ref{Repo: e.Dest, Tag: tag})
			}
			continue
		}
		if len(e.Digests) > 0 && e.Select == nil {
			continue
		}
		tags, err := v.Tags(e.Dest)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", e.Entry, err)
		}
		for _, tag := range tags {
			if e.Select == nil || e.Select(tag) {
				add(airgap.Ref{Repo: e.Dest, Tag: tag})
			}
		}
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("-f %s: no tag of the tree is one the file mirrors", file)
	}
	return refs, nil
}

// writeParts writes the parts of a split bundle as out.part001, ... each
// to a temporary file renamed into place once every part is written: a
// failed create leaves no part.
func writeParts(out string, d *bundle.Descriptor, parts []bundle.Part, open bundle.OpenFunc) ([]string, int64, error) {
	var pending []*renameio.PendingFile
	defer func() {
		for _, f := range pending {
			f.Cleanup()
		}
	}()
	var names []string
	n, err := bundle.WriteParts(d, parts, func(part, count int) (io.WriteCloser, error) {
		name := fmt.Sprintf("%s.part%03d", out, part)
		f, err := renameio.NewPendingFile(name, renameio.WithPermissions(0o644), renameio.WithTempDir(filepath.Dir(name)))
		if err != nil {
			return nil, err
		}
		pending, names = append(pending, f), append(names, name)
		return nopCloser{f}, nil
	}, open)
	if err != nil {
		return nil, n, err
	}
	for _, f := range pending {
		if err := f.CloseAtomicallyReplace(); err != nil {
			return nil, n, err
		}
	}
	return names, n, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func readInventory(path string) (*bundle.Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--have: %w", err)
	}
	defer f.Close()
	inv, err := bundle.ReadInventory(f)
	if err != nil {
		return nil, fmt.Errorf("--have %s: %w", path, err)
	}
	return inv, nil
}

// parseSize parses a size in bytes with an optional K, M, G or T suffix
// (powers of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	if i := strings.IndexAny(s, "KMGTkmgt"); i >= 0 && i == len(s)-1 {
		mult = int64(1) << (10 * (strings.IndexByte("KMGT", strings.ToUpper(s[i:])[0]) + 1))
		s = s[:i]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q: want a size in bytes, with an optional K, M, G or T", s)
	}
	return n * mult, nil
}

// openBundle opens the inputs a command names: files, or "-" for stdin.
// seekable reports whether all are files, which can be read twice.
func openBundle(args []string) (srcs []bundle.Source, files []*os.File, err error) {
	for _, a := range args {
		if a == "-" {
			if len(args) > 1 {
				return nil, nil, errors.New("- (stdin) takes the whole bundle: give no other input with it")
			}
			return []bundle.Source{{Name: "stdin", R: os.Stdin}}, nil, nil
		}
		f, err := os.Open(a)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, nil, err
		}
		files = append(files, f)
		srcs = append(srcs, bundle.Source{Name: a, R: f})
	}
	return srcs, files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// rewind seeks every file back to its start, for a second read.
func rewind(files []*os.File) error {
	for _, f := range files {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	return nil
}

func runBundleInspect(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError(c, "want a bundle FILE or its PARTs")
	}
	srcs, files, err := openBundle(c.Args().Slice())
	if err != nil {
		return err
	}
	defer closeAll(files)
	r, err := bundle.Open(srcs)
	if err != nil {
		return err
	}
	d := r.Descriptor()
	if wantJSON(c) {
		return printJSON(c.App.Writer, struct {
			ID    string             `json:"id"`
			Parts int                `json:"parts"`
			Desc  *bundle.Descriptor `json:"descriptor"`
		}{r.ID().String(), r.Parts(), d})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "bundle %s (format version %d", r.ID(), d.Version)
	if r.Parts() > 0 {
		fmt.Fprintf(w, ", in %d parts", r.Parts())
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintln(w, "tags:")
	for _, t := range d.Tags {
		fmt.Fprintf(w, "  %s:%s %s %s\n", t.Repo, t.Tag, t.Digest, t.MediaType)
	}
	count := map[string]int{}
	for _, m := range d.Members {
		count[m.Kind]++
	}
	fmt.Fprintf(w, "carries: %s, %s, %s: %s\n", plural(count[bundle.KindManifest], "manifest", "manifests"),
		plural(count[bundle.KindConfig], "config", "configs"), plural(count[bundle.KindBlob], "blob", "blobs"), humanBytes(d.Bytes.Members))
	fmt.Fprintf(w, "images' full size: %s\n", humanBytes(d.Bytes.Images))
	fmt.Fprintf(w, "needs (the far side must hold): %s, %s\n", plural(len(d.Needed), "blob", "blobs"), humanBytes(d.Bytes.Needed))
	for _, n := range d.Needed {
		fmt.Fprintf(w, "  %s %d\n", n.Digest, n.Size)
	}
	return nil
}

func runBundleLoad(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError(c, "want a bundle FILE, its PARTs, or - for stdin")
	}
	onExisting, err := exporter.ParseOnExisting(c.String("on-existing-tag"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	var target exporter.PushTarget
	if to := c.String("to"); to != "" {
		if target, err = exporter.ParsePushTarget(to); err != nil {
			return usageError(c, "%v", err)
		}
		if c.IsSet("on-existing-tag") && onExisting != exporter.Overwrite {
			return usageError(c, "--to overwrites tags: --on-existing-tag %s is for a tree", c.String("on-existing-tag"))
		}
	} else {
		for _, f := range []string{"mount-from", "dest-tls-verify", "dest-creds", "dest-authfile", "dest-cert-dir"} {
			if c.IsSet(f) {
				return usageError(c, "--%s goes with --to", f)
			}
		}
	}
	srcs, files, err := openBundle(c.Args().Slice())
	if err != nil {
		return usageError(c, "%v", err)
	}
	defer closeAll(files)
	if target.Registry != "" {
		return runBundlePush(c, target, srcs, files)
	}
	root, err := openRoot(c)
	if err != nil {
		return err
	}
	r, err := bundle.Open(srcs)
	if err != nil {
		return err
	}
	if err := exporter.CheckNeeded(root, r.Descriptor()); err != nil {
		return err
	}
	// One read, files and stdin alike: the load checks the whole bundle
	// as it stages its blobs, before it publishes any. But staging needs
	// a tree: into a root that holds none yet, the load would make one
	// before it reads a byte of the bundle, so a bundle in files is read
	// and checked first, once more, and a damaged one leaves the root as
	// it was.
	if st, err := root.State(); files != nil && (err != nil || st != tree.HoldsTree) {
		if err := r.Verify(); err != nil {
			return err
		}
		if err := rewind(files); err != nil {
			return err
		}
		if r, err = bundle.Open(srcs); err != nil {
			return err
		}
	}
	log := logger(c)
	o := exporter.LoadOptions{Options: exporter.Options{Log: log}, OnExisting: onExisting}
	if !quiet(c) && c.String("log-format") == "text" && isTerminal(os.Stderr) {
		o.Progress = newTTYProgress(os.Stderr)
	}
	name := strings.Join(c.Args().Slice(), " ")
	rep, err := exporter.LoadBundle(c.Context, root, r, name, o)
	if tty, ok := o.Progress.(*ttyProgress); ok {
		tty.Close() // before the report: the progress lines are redrawn in place
	}
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c.App.Writer, rep)
	}
	if quiet(c) {
		return nil
	}
	for _, s := range rep.Images {
		if slices.Contains(rep.Unchanged, s.Dest) {
			fmt.Fprintf(os.Stderr, "%s (%s): unchanged\n", s.Dest, s.Digest)
			continue
		}
		fmt.Fprintf(os.Stderr, "%s (%s): wrote %s in %s, reused %s in %s\n", s.Dest, s.Digest,
			humanBytes(s.BytesFetched), plural(s.BlobsFetched, "blob", "blobs"), humanBytes(s.BytesReused), plural(s.BlobsReused, "blob", "blobs"))
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(os.Stderr, "%s: skipped (the tree's tag names another manifest)\n", s)
	}
	ratio := 0.0
	if rep.Full > 0 {
		ratio = float64(rep.Carried) / float64(rep.Full)
	}
	fmt.Fprintf(os.Stderr, "bundle %s: carried %s of the images' %s (%.1f%%), wrote %s\n",
		rep.Bundle, humanBytes(rep.Carried), humanBytes(rep.Full), 100*ratio, humanBytes(rep.Written))
	return nil
}

// runBundlePush is bundle load --to: the bundle, checked whole first when
// it is in files, into a registry.
func runBundlePush(c *cli.Context, target exporter.PushTarget, srcs []bundle.Source, files []*os.File) error {
	r, err := bundle.Open(srcs)
	if err != nil {
		return err
	}
	if files != nil {
		// As for a tree: a damaged bundle is refused before any write.
		if err := r.Verify(); err != nil {
			return err
		}
		if err := rewind(files); err != nil {
			return err
		}
		if r, err = bundle.Open(srcs); err != nil {
			return err
		}
	}
	o := exporter.PushOptions{
		Registry: exporter.RegistryOptions{
			Insecure:  !c.Bool("dest-tls-verify"),
			Creds:     c.String("dest-creds"),
			AuthFile:  c.String("dest-authfile"),
			CertDir:   c.String("dest-cert-dir"),
			UserAgent: "image-serve/" + version,
		},
		MountFrom: c.StringSlice("mount-from"),
		Log:       logger(c),
	}
	rep, err := exporter.PushBundle(c.Context, target, r, strings.Join(c.Args().Slice(), " "), o)
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c.App.Writer, rep)
	}
	if quiet(c) {
		return nil
	}
	for _, t := range rep.Tags {
		fmt.Fprintf(os.Stderr, "%s/%s\n", target.Registry, t)
	}
	copied := ""
	if rep.Copied > 0 {
		copied = fmt.Sprintf(", copied %s in %s the registry declined to mount", humanBytes(rep.CopiedBytes), plural(rep.Copied, "blob", "blobs"))
	}
	fmt.Fprintf(os.Stderr, "bundle %s into %s: uploaded %s in %s, mounted %s in %s%s, %s there already, %s\n",
		rep.Bundle, rep.Target, humanBytes(rep.UploadedBytes), plural(rep.Uploaded, "blob", "blobs"),
		humanBytes(rep.MountedBytes), plural(rep.Mounted, "blob", "blobs"), copied, plural(rep.Present, "blob", "blobs"),
		plural(rep.Manifests, "manifest", "manifests"))
	return nil
}
