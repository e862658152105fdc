package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/syncfile"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
)

func syncCommand() *cli.Command {
	return &cli.Command{
		Name:      "sync",
		Usage:     "mirror repositories into the tree, again and again: only what moved is fetched",
		ArgsUsage: "-f FILE | docker://HOST/REPO[:TAG|@DIGEST] | containers-storage:[[STORE-SPEC]]NAME[:TAG] | docker-daemon:NAME[:TAG] …",
		Description: `-f FILE reads skopeo sync's YAML (as "skopeo sync --src yaml" does; see docs/sync.md for
image-serve's additions: platforms, exclude, immutable, prefix, and stores on this machine —
containers-storage, containers-storage:[STORE-SPEC] or docker-daemon as a key instead of a
registry, a tag being unchanged while the store's image ID is the config the tree's tag names). docker://HOST/REPO mirrors every
tag of the repository, docker://HOST/REPO:TAG that tag, docker://HOST/REPO@DIGEST that manifest
as a digest pin. containers-storage:[[STORE-SPEC]]NAME[:TAG] and docker-daemon:NAME[:TAG] mirror
an image built on this machine, every tag the store has of NAME without a TAG.
A tag goes to the tree as [PREFIX/][HOST/]REPO:TAG (HOST with --scoped, its ":" as "-"). For each
tag one HEAD asks the source what it names; a tag the tree names already is left alone, a tag
matching an immutable pattern the tree has is not asked for at all. What moved is exported in one
batch, as export --from-file: a blob shared by several images is fetched once, --jobs bounds the
run, --atomic moves every tag or none. A digest the file lists (REPO: [sha256:…]) is exported by
digest and kept as a digest pin of the repository, without a tag: gc keeps it and all it reaches,
list --long shows it, delete REPO@DIGEST removes the pin; a digest pinned already costs no request.
What refers to a tag that moved travels with it: its referrers (OCI 1.1: the referrers API, or the
sha256-<hex> tag where the source has no such API) and cosign's sha256-<hex>.sig, .att and .sbom
tags; --no-referrers (or the file's referrers: false) leaves them behind.
--prune removes from the repositories the file (or the arguments, whole repositories only)
names the tags the run did not select: those the source no longer has, or the filters no longer take. It never removes a
signature tag, never touches a repository whose listing failed or selected nothing, and refuses a
plan of more than --prune-max tags. --prune --dry-run prints the plan.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "file", Aliases: []string{"f"}, Usage: "the sync file (skopeo sync's YAML)"},
			&cli.StringFlag{Name: "prefix", Usage: "repository path the images go under in the tree (a registry's prefix: in the file wins)"},
			&cli.BoolFlag{Name: "scoped", Usage: "put each image under its source registry's host name too, as skopeo sync --scoped"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be synced and fetched; change nothing"},
			&cli.BoolFlag{Name: "keep-going", Usage: "sync what can be when a repository or a tag fails (exit 1 all the same, listing the failures)"},
			&cli.StringFlag{Name: "digestfile", Usage: "write one \"DIGEST REF\" line per tag the tree holds after the run (REF: the tree's REPO:TAG, or REPO@DIGEST for a pin; not with --dry-run)"},
			&cli.StringSliceFlag{Name: "platform", Usage: "OS/ARCH[/VARIANT] of an index to keep (repeatable; default: all; the file's platforms: win)"},
			&cli.BoolFlag{Name: "src-tls-verify", Value: true, Usage: "require HTTPS and a valid certificate for every source registry (false: allow plain HTTP and self-signed certificates)"},
			&cli.StringFlag{Name: "src-creds", Usage: "USER[:PASS] for the source registries (a registry's credentials: in the file win)"},
			&cli.StringFlag{Name: "src-authfile", Usage: "auth file for the source registries (default: docker config.json, containers auth.json)"},
			&cli.StringFlag{Name: "src-cert-dir", Usage: "certs.d directory for the source registries: *.crt CAs, *.cert/*.key client pairs (a registry's cert-dir: wins)"},
			&cli.IntFlag{Name: "jobs", Value: 4, Usage: "parallel requests and transfers"},
			srcMaxRequestsFlag(),
			srcRateFlag(),
			&cli.DurationFlag{Name: "src-timeout", Value: exporter.DefaultSourceTimeout, Usage: "give up on a source request that sends nothing for this long"},
			&cli.IntFlag{Name: "max-tags", Value: exporter.DefaultMaxTags, Usage: "refuse a repository listing more tags than this"},
			&cli.BoolFlag{Name: "atomic", Usage: "tag every image that moved or, if one fails, none"},
			&cli.BoolFlag{Name: "verify-existing", Usage: "re-hash blobs already in the tree before reusing them"},
			&cli.Int64Flag{Name: "max-blob-size", Value: exporter.DefaultMaxBlobSize, Usage: "refuse an image with a blob declared larger than this many bytes"},
			&cli.BoolFlag{Name: "json", Usage: "print one record per tag as a JSON array on stdout"},
			&cli.BoolFlag{Name: "no-referrers", Usage: "leave referrers and cosign signature, attestation and SBOM tags behind"},
			&cli.BoolFlag{Name: "prune", Usage: "delete the tags of the synced repositories that the run did not select (with --dry-run: print them)"},
			&cli.IntFlag{Name: "prune-max", Value: defaultPruneMax, Usage: "refuse a prune plan that deletes more tags than this"},
		},
		Action: runSync,
	}
}

func runSync(c *cli.Context) error {
	entries, err := syncEntries(c)
	if err != nil {
		return err
	}
	if err := checkTransferFlags(c); err != nil {
		return err
	}
	if c.Int("max-tags") < 1 {
		return usageError(c, "--max-tags %d: want 1 or more", c.Int("max-tags"))
	}
	if c.Int("prune-max") < 0 {
		return usageError(c, "--prune-max %d: want 0 or more", c.Int("prune-max"))
	}
	if c.Bool("atomic") && c.Bool("keep-going") {
		return usageError(c, "--atomic and --keep-going: a run that moves all or nothing cannot go on past a failure")
	}
	root, err := openRoot(c)
	if err != nil {
		return err
	}
	log := logger(c)
	o := exporter.SyncOptions{
		Export:    exportOptions(c, log),
		DryRun:    c.Bool("dry-run"),
		KeepGoing: c.Bool("keep-going"),
		MaxTags:   c.Int("max-tags"),
	}
	var tty *runProgress
	if !quiet(c) && !c.Bool("dry-run") && c.String("log-format") == "text" && isTerminal(os.Stderr) {
		tty = newRunProgress(os.Stderr)
		o.Export.Progress = tty
	}
	// Each tag's record is logged as the tag finishes, so that a run
	// that dies has said which are done — except under the progress
	// line, which owns the terminal until the end.
	if tty == nil {
		o.Done = func(r exporter.SyncResult) { logResult(c, log, r) }
	}
	rep, err := exporter.Sync(c.Context, root, entries, o)
	if tty != nil {
		tty.Close()
	}
	report(c, rep, tty != nil)
	if file := c.String("digestfile"); file != "" && !c.Bool("dry-run") {
		if werr := writeDigestFile(file, rep); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if c.Bool("json") {
		if perr := printJSON(c.App.Writer, syncRecords(rep)); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	if c.Bool("prune") {
		err = errors.Join(err, prune(c, root, rep, err))
	}
	return lastError(errors.Join(flatten(err)...))
}

// defaultPruneMax is --prune-max's default: a release drops a few tags
// at a time; a plan of more is more likely a file gone wrong.
const defaultPruneMax = 50

// prune plans the removal of what the run did not select (see
// exporter.PlanPrune), says which repositories it leaves alone and why,
// prints the plan with --dry-run, refuses a plan over --prune-max, and
// with no --dry-run deletes its tags as image-serve delete does — gc.Delete with
// its prune, so that what only they reached goes too. A sync that failed
// without --keep-going prunes nothing: what it did not see is not what
// the source dropped.
func prune(c *cli.Context, root *tree.Root, rep *exporter.SyncReport, syncErr error) error {
	log := logger(c)
	if syncErr != nil && !c.Bool("keep-going") {
		log.Warn("prune not run: the sync failed (--keep-going prunes the repositories whose listing did not fail)")
		return nil
	}
	var plan *exporter.PrunePlan
	// What each tag of the pruned repositories named as the plan listed
	// it: the delete removes a planned tag only while it still names
	// that (gc.Ref.Planned), so a tag an export re-created meanwhile
	// stays.
	named := map[string]digest.Digest{}
	err := root.Inspect(func(v *tree.View) error {
		var err error
		plan, err = exporter.PlanPrune(rep, func(repo string) ([]string, error) {
			tags, err := v.Tags(repo)
			for _, tag := range tags {
				if vs, err := v.TagManifests(repo, tag); err == nil && len(vs) > 0 {
					named[repo+":"+tag] = vs[0].Digest
				}
			}
			return tags, err
		})
		return err
	})
	if errors.Is(err, tree.ErrNoTree) {
		// Nothing synced, nothing there: a plan of nothing.
		plan, err = exporter.PlanPrune(rep, func(string) ([]string, error) { return nil, nil })
	}
	if err != nil {
		return err
	}
	for _, r := range plan.Refused {
		log.Warn("not pruned", "repo", r.Repo, "why", r.Why)
	}
	if c.Bool("dry-run") {
		// The whole plan, even one over --prune-max: it is what to check.
		for _, t := range plan.Tags {
			log.Info("would prune", "repo", t.Repo, "tag", t.Tag, "why", t.Why)
			if !c.Bool("json") {
				fmt.Fprintf(c.App.Writer, "would prune %s:%s (%s)\n", t.Repo, t.Tag, t.Why)
			}
		}
	}
	if n, max := len(plan.Tags), c.Int("prune-max"); n > max {
		var counts []string
		for _, pc := range plan.Counts() {
			counts = append(counts, fmt.Sprintf("%s: %d", pc.Repo, pc.Tags))
		}
		return fmt.Errorf("--prune-max %d: the prune plan deletes %d tags (%s); nothing deleted (check the file, or raise --prune-max)", max, n, strings.Join(counts, ", "))
	}
	if c.Bool("dry-run") {
		return nil
	}
	if len(plan.Tags) == 0 {
		return nil
	}
	refs := make([]gc.Ref, 0, len(plan.Tags))
	why := map[string]string{}
	for _, t := range plan.Tags {
		ref, err := gc.ParseRef(t.Repo + ":" + t.Tag)
		if err != nil {
			return err
		}
		ref.Planned = named[ref.String()]
		refs = append(refs, ref)
		why[ref.String()] = t.Why
	}
	if afterPrunePlan != nil {
		afterPrunePlan()
	}
	drep, err := gc.Delete(root, refs, gc.DeleteOptions{Grace: gc.DefaultGrace})
	if drep != nil {
		for _, s := range drep.Skipped {
			log.Warn("not pruned: the tag moved since the plan", "tag", s.Tag, "planned", s.Planned, "now", s.Now)
		}
		for _, d := range drep.Deleted {
			log.Info("pruned", "tag", d, "why", why[d])
			if !c.Bool("json") {
				fmt.Fprintf(c.App.Writer, "pruned %s (%s)\n", d, why[d])
			}
		}
	}
	return err
}

// afterPrunePlan, when a test sets it, runs between the prune plan and
// its delete: the instant a concurrent export may re-create a planned
// tag.
var afterPrunePlan func()

// flatten is the one-line errors a joined error holds, joins inside it
// opened: each failure is its own line at the end of a run.
func flatten(err error) []error {
	var joined interface{ Unwrap() []error }
	if err == nil {
		return nil
	}
	if !errors.As(err, &joined) || joined.(error) != err {
		return []error{err}
	}
	var out []error
	for _, e := range joined.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

// syncRecord is one tag of sync --json.
type syncRecord struct {
	Source       string `json:"source"`
	Dest         string `json:"dest"`
	Status       string `json:"status"`
	Digest       string `json:"digest,omitempty"`
	Subject      string `json:"subject,omitempty"`
	Manifests    int    `json:"manifests,omitempty"`
	Referrers    int    `json:"referrers,omitempty"`
	Blobs        int    `json:"blobs,omitempty"`
	BytesFetched int64  `json:"bytes_fetched,omitempty"`
	BytesReused  int64  `json:"bytes_reused,omitempty"`
	Error        string `json:"error,omitempty"`
}

func syncRecords(rep *exporter.SyncReport) []syncRecord {
	out := []syncRecord{}
	for _, r := range rep.Results {
		rec := syncRecord{Source: r.Source, Dest: r.Dest, Status: string(r.Status), Digest: string(r.Digest), Subject: r.Subject, Referrers: r.Referrers}
		switch {
		case r.Summary != nil:
			rec.Manifests, rec.Blobs = r.Summary.Manifests, r.Summary.BlobsFetched+r.Summary.BlobsReused
			rec.BytesFetched, rec.BytesReused = r.Summary.BytesFetched, r.Summary.BytesReused
		case r.Status == exporter.SyncWould:
			rec.Manifests, rec.Blobs, rec.BytesFetched = r.Manifests, r.Blobs, r.Bytes
		}
		if r.Err != nil {
			rec.Error = r.Err.Error()
		}
		out = append(out, rec)
	}
	return out
}

// report logs the run's totals on stderr in one summary record, and,
// when they were not logged as each tag finished (each, for a run under
// the progress line), each tag's record first (logResult). Its counts of
// tags are release tags; signature tags (cosign's, found for them) and
// referrers that travelled are counted on their own.
func report(c *cli.Context, rep *exporter.SyncReport, each bool) {
	log := logger(c)
	count := map[exporter.SyncStatus]int{}
	var fetched, reused, would int64
	signatures, referrers := 0, 0
	for _, r := range rep.Results {
		if each {
			logResult(c, log, r)
		}
		switch {
		case r.Subject == "" || r.Status == exporter.SyncFailed:
			count[r.Status]++
		case r.Status == exporter.SyncSynced || r.Status == exporter.SyncWould:
			signatures++
		}
		referrers += r.Referrers
		switch r.Status {
		case exporter.SyncSynced:
			fetched += r.Summary.BytesFetched
			reused += r.Summary.BytesReused
		case exporter.SyncWould:
			would += r.Bytes
		}
	}
	if c.Bool("json") || quiet(c) {
		return
	}
	if c.Bool("dry-run") {
		log.Info("dry run", "would_sync", count[exporter.SyncWould], "unchanged", count[exporter.SyncUnchanged],
			"immutable", count[exporter.SyncImmutable], "failed", count[exporter.SyncFailed]+rep.EntriesFailed,
			"signature_tags", signatures, "referrers", referrers, "bytes_at_most", would, "requests", rep.Requests)
		return
	}
	log.Info("sync done", "synced", count[exporter.SyncSynced], "unchanged", count[exporter.SyncUnchanged],
		"immutable", count[exporter.SyncImmutable], "failed", count[exporter.SyncFailed]+rep.EntriesFailed,
		"signature_tags", signatures, "referrers", referrers, "bytes_fetched", fetched, "bytes_reused", reused, "requests", rep.Requests)
}

// logResult logs what the run did with one tag (or pin, or signature
// tag), unless --json prints the records on stdout: what moved (or
// would) at info; what did not at debug in text, at info with
// --log-format json, where a program reading the log gets one record
// for every tag; and with --log-format json a failed tag at warn, and a
// tag a failure elsewhere kept from being exported as "not synced" (in
// text the failures are the error lines the run ends with).
func logResult(c *cli.Context, log *slog.Logger, r exporter.SyncResult) {
	if c.Bool("json") {
		return
	}
	jsonLog := c.String("log-format") == "json"
	src := r.Source
	switch r.Status {
	case exporter.SyncSynced:
		s := r.Summary
		log.Info("synced", "source", src, "dest", r.Dest, "digest", r.Digest,
			"bytes_fetched", s.BytesFetched, "bytes_reused", s.BytesReused, "manifests", s.Manifests, "referrers", r.Referrers)
	case exporter.SyncWould:
		log.Info("would sync", "source", src, "dest", r.Dest, "digest", r.Digest,
			"manifests", r.Manifests, "blobs", r.Blobs, "bytes", r.Bytes, "referrers", r.Referrers)
	case exporter.SyncUnchanged, exporter.SyncImmutable:
		level := slog.LevelDebug
		if jsonLog {
			level = slog.LevelInfo
		}
		log.Log(c.Context, level, string(r.Status), "source", src, "dest", r.Dest, "digest", r.Digest)
	case exporter.SyncFailed:
		if jsonLog {
			log.Warn("failed", "source", src, "dest", r.Dest, "err", r.Err.Error())
		}
	default:
		if jsonLog {
			log.Info("not synced", "source", src, "dest", r.Dest)
		}
	}
}

// writeDigestFile writes "DIGEST REF" for every tag the tree holds after
// the run from it — synced, unchanged or immutable — as skopeo's
// --digestfile lines are.
func writeDigestFile(path string, rep *exporter.SyncReport) error {
	var b strings.Builder
	for _, r := range rep.Results {
		if r.Digest != "" && r.Status != exporter.SyncFailed && r.Status != exporter.SyncWould {
			fmt.Fprintf(&b, "%s %s\n", r.Digest, r.Dest)
		}
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--digestfile: %w", err)
	}
	return nil
}

// syncEntries reads what to mirror: the file, or the arguments.
func syncEntries(c *cli.Context) ([]exporter.SyncEntry, error) {
	file := c.String("file")
	switch {
	case file == "" && c.NArg() == 0:
		return nil, usageError(c, "nothing to sync: give -f FILE or docker://HOST/REPO[:TAG] arguments")
	case file != "" && c.NArg() > 0:
		return nil, usageError(c, "-f takes no docker:// argument, got %d arguments", c.NArg())
	}
	prefix := strings.Trim(c.String("prefix"), "/")
	if prefix != "" {
		if err := tree.ValidateRepo(prefix); err != nil {
			return nil, usageError(c, "--prefix %q: %v", c.String("prefix"), err)
		}
	}
	if _, err := exporter.ParsePlatforms(c.StringSlice("platform")); err != nil {
		return nil, usageError(c, "%v", err)
	}
	if file == "" {
		return argEntries(c, prefix)
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, usageError(c, "-f: %v", err)
	}
	defer f.Close()
	sf, err := syncfile.Read(f)
	if err != nil {
		return nil, usageError(c, "%s: %v", file, err)
	}
	var entries []exporter.SyncEntry
	for _, reg := range sf.Registries {
		if reg.Local != "" {
			local, err := localEntries(c, file, reg, prefix)
			if err != nil {
				return nil, err
			}
			entries = append(entries, local...)
			continue
		}
		ro := exporter.RegistryOptions{CertDir: reg.CertDir, Limits: exporter.RegistryLimits{MaxRequests: reg.MaxRequests, RequestsPerSecond: reg.RequestsPerSecond}}
		if reg.TLSVerify != nil && !*reg.TLSVerify {
			ro.Insecure = true
		}
		if reg.Credentials != nil {
			ro.Creds = reg.Credentials.Username + ":" + reg.Credentials.Password
		}
		p := prefix
		if reg.Prefix != "" {
			p = reg.Prefix
		}
		for _, im := range reg.Images {
			e := exporter.SyncEntry{
				Entry:     fmt.Sprintf("%s line %d: %s/%s", file, im.Line, reg.Host, im.Repo),
				Source:    reg.Host + "/" + im.Repo,
				Dest:      destRepo(p, c.Bool("scoped"), reg.Host, im.Repo),
				Platforms: c.StringSlice("platform"),
				Registry:  ro,
			}
			if im.Platforms != nil {
				e.Platforms = im.Platforms
			}
			if !selectTags(&e, im) {
				continue // every tag named is excluded
			}
			e.NoReferrers = c.Bool("no-referrers") || !im.WantsReferrers()
			entries = append(entries, e)
		}
	}
	return entries, nil
}

// selectTags sets what e takes from im: a selector for a listing, or the
// tags named that no exclude pattern drops and the digests named (kept as
// digest pins: no tag, no filter); and the immutable patterns. False when
// im names tags and digests and every one is excluded.
func selectTags(e *exporter.SyncEntry, im syncfile.Image) bool {
	if len(im.Immutable) > 0 {
		e.Immutable = im.IsImmutable
	}
	if im.AllTags() || im.Kind != syncfile.Listed {
		e.Select = im.Selects
		return true
	}
	for _, t := range im.Tags {
		if im.Selects(t) {
			e.Tags = append(e.Tags, t)
		}
	}
	for _, d := range im.Digests {
		e.Digests = append(e.Digests, digest.Digest(d))
	}
	return e.Tags != nil || e.Digests != nil
}

// localEntries are the entries of a store on this machine the file
// names: each repository goes to the tree as [PREFIX/][HOST/]PATH, HOST
// (with --scoped) being the registry host its name in the store begins
// with, if any (localhost/app is app, or localhost/app with --scoped).
func localEntries(c *cli.Context, file string, reg syncfile.Registry, prefix string) ([]exporter.SyncEntry, error) {
	store, err := exporter.ParseLocalStore(reg.Local, reg.Store)
	if err != nil {
		return nil, usageError(c, "%s: line %d: %q: %v", file, reg.Line, reg.Host, err)
	}
	if reg.Prefix != "" {
		prefix = reg.Prefix
	}
	var entries []exporter.SyncEntry
	for _, im := range reg.Images {
		host, path := distribution.SplitHost(im.Repo)
		e := exporter.SyncEntry{
			Entry:  fmt.Sprintf("%s line %d: %s", file, im.Line, im.Repo), // the store's errors name it
			Source: im.Repo,
			Dest:   destRepo(prefix, c.Bool("scoped") && host != "", host, path),
			Local:  &store,
		}
		if !selectTags(&e, im) {
			continue // every tag named is excluded
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// argEntries is one entry per docker://HOST/REPO[:TAG] argument.
func argEntries(c *cli.Context, prefix string) ([]exporter.SyncEntry, error) {
	var entries []exporter.SyncEntry
	for _, a := range c.Args().Slice() {
		arg, err := exporter.ParseSyncArg(a)
		if err != nil {
			return nil, usageError(c, "%v", err)
		}
		// A prune deletes what the run did not select: with one tag or
		// digest named, that is every other tag of the repository.
		if c.Bool("prune") && (arg.Tag != "" || arg.Digest != "") {
			return nil, usageError(c, "--prune with %s: a prune needs whole repositories (docker://HOST/REPO) or a file, or it deletes every tag not named", a)
		}
		e := exporter.SyncEntry{
			Entry:       a,
			Source:      arg.Source(),
			Dest:        destRepo(prefix, c.Bool("scoped") && arg.Host != "", arg.Host, arg.Repo),
			Platforms:   c.StringSlice("platform"),
			NoReferrers: c.Bool("no-referrers"),
			Local:       arg.Local,
		}
		if arg.Local != nil {
			e.Entry = arg.Source() // the store's errors name the store
		}
		if arg.Tag != "" {
			e.Tags = []string{arg.Tag}
		}
		if arg.Digest != "" {
			e.Digests = []digest.Digest{arg.Digest}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// destRepo is where a source repository goes in the tree:
// [PREFIX/][HOST/]REPO, HOST with --scoped, lower-cased and its port's
// ":" as "-" (a repository name has no colon).
func destRepo(prefix string, scoped bool, host, repo string) string {
	parts := []string{}
	if prefix != "" {
		parts = append(parts, prefix)
	}
	if scoped {
		parts = append(parts, strings.ReplaceAll(strings.ToLower(host), ":", "-"))
	}
	return strings.Join(append(parts, repo), "/")
}
