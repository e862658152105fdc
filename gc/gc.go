// Package gc reclaims what deleted tags leave behind in a static registry
// tree, and checks a tree end to end. It marks from every tag of every
// repository (indexes to their children, manifests to their config and
// layers, referrers by their subject) and hands what nothing reaches to
// tree.Maint.Remove, which removes it in the tree's order: manifests
// first, then blobs, each unlinked from its repository, so that a blob
// hard-linked into several repositories is freed with its last link. It
// runs on a live tree: the web server keeps serving, and exports
// wait on the tree lock while a collection runs.
//
// Every path and file operation goes through package tree.
package gc

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// ErrRunning is returned by Collect when another collection holds the
// tree: cron may start one while the last still runs, and the running one
// does the work of both. It is the tree's tree.ErrCollecting.
var ErrRunning = tree.ErrCollecting

// Untagged is what happens to manifests no tag reaches.
type Untagged int

const (
	// DeleteUntagged deletes untagged manifests once they are older than
	// the grace period.
	DeleteUntagged Untagged = iota
	// KeepUntagged keeps every manifest; only blobs no manifest
	// references are deleted.
	KeepUntagged
)

// ParseUntagged reads "delete" or "keep".
func ParseUntagged(s string) (Untagged, error) {
	switch s {
	case "delete":
		return DeleteUntagged, nil
	case "keep":
		return KeepUntagged, nil
	}
	return 0, fmt.Errorf("--untagged %q: want keep or delete", s)
}

// DefaultGrace is how long an untagged manifest is kept after it was
// written or linked into the tree.
const DefaultGrace = time.Hour

// Options tune a collection.
type Options struct {
	// Grace keeps untagged manifests younger than this (by the ctime of
	// their index.json). Zero deletes them at once.
	Grace    time.Duration
	Untagged Untagged
	// DryRun changes nothing and reports what a collection would do.
	DryRun bool
	// Now is the clock for the grace period; nil means time.Now.
	Now func() time.Time
	// Jobs is how many repositories are collected at once; < 1 means one
	// per CPU, at most 8. With 1 the collection takes its steps in the
	// same order every time, as the crash tests need.
	Jobs int
}

// Report is what a collection did, or with DryRun would do. Manifests and
// blobs are counted per repository (a blob linked into three repositories
// counts three times); BytesFreed counts each inode whose last link went
// once, so it is the space the file system gets back.
type Report struct {
	DryRun              bool  `json:"dry_run"`
	Repositories        int   `json:"repositories"`
	RepositoriesRemoved int   `json:"repositories_removed"`
	ManifestsKept       int   `json:"manifests_kept"`
	ManifestsDeleted    int   `json:"manifests_deleted"`
	BlobsKept           int   `json:"blobs_kept"`
	BlobsDeleted        int   `json:"blobs_deleted"`
	BytesFreed          int64 `json:"bytes_freed"`
	// GraceKept counts the untagged manifests kept only because they are
	// younger than the grace period; CollectableAt is when the first of
	// them becomes old enough to go.
	GraceKept     int        `json:"grace_kept"`
	CollectableAt *time.Time `json:"collectable_at,omitempty"`
	Problems      []Problem  `json:"problems,omitempty"`
}

// merge adds a later pass over the same repository: what it deleted adds
// up, what it kept replaces the earlier count.
func (r *Report) merge(later *Report) {
	r.RepositoriesRemoved += later.RepositoriesRemoved
	r.ManifestsKept = later.ManifestsKept
	r.ManifestsDeleted += later.ManifestsDeleted
	r.BlobsKept = later.BlobsKept
	r.BlobsDeleted += later.BlobsDeleted
	r.BytesFreed += later.BytesFreed
	r.GraceKept, r.CollectableAt = later.GraceKept, later.CollectableAt
	r.Problems = later.Problems
}

func (r *Report) add(o *Report) {
	r.Repositories += o.Repositories
	r.RepositoriesRemoved += o.RepositoriesRemoved
	r.ManifestsKept += o.ManifestsKept
	r.ManifestsDeleted += o.ManifestsDeleted
	r.BlobsKept += o.BlobsKept
	r.BlobsDeleted += o.BlobsDeleted
	r.BytesFreed += o.BytesFreed
	r.GraceKept += o.GraceKept
	r.CollectableAt = earliest(r.CollectableAt, o.CollectableAt)
	r.Problems = append(r.Problems, o.Problems...)
}

// earliest is the earlier of two times, either of which may be missing.
func earliest(a, b *time.Time) *time.Time {
	if a == nil || (b != nil && b.Before(*a)) {
		return b
	}
	return a
}

// ProblemsError reports that a collection left repositories unswept
// because their roots or references could not all be read.
type ProblemsError struct{ Problems []Problem }

func (e *ProblemsError) Error() string {
	if len(e.Problems) == 1 {
		return fmt.Sprintf("1 problem in the tree, its repository was not swept (%s); run image-serve verify", e.Problems[0])
	}
	return fmt.Sprintf("%d problems in the tree, their repositories were not swept (first: %s); run image-serve verify", len(e.Problems), e.Problems[0])
}

// Collect marks and sweeps the whole tree. It takes gc.lock without
// waiting (ErrRunning if another collection has it), then the tree lock
// exclusively, which waits for exports in flight and holds new ones off
// until it returns: an export never loses a blob it wrote before its
// manifest landed, because no collection runs between the two.
//
// A repository with a problem (a tag naming a missing manifest, an
// unparseable manifest) is not swept: what it references is unknown. The
// report lists the problems, and the error is a *ProblemsError.
//
// The report is nil when the collection never started (another one runs,
// or the tree lock was not had); after a failure part-way it says what
// was done before it.
func Collect(root *tree.Root, o Options) (*Report, error) {
	if err := checkTree(root); err != nil {
		return nil, err
	}
	var c *collector
	err := root.Maintain(tree.MaintainOptions{ReadOnly: o.DryRun, Sweep: !o.DryRun, Collector: true}, func(m *tree.Maint) error {
		c = newCollector(root, m.View(), o)
		c.sweepTemps = !o.DryRun
		repos, err := c.v.StoredRepositories()
		if err != nil {
			return err
		}
		if err := c.collectAll(m, repos); err != nil {
			return err
		}
		if o.DryRun {
			return nil
		}
		if err := m.RefreshCatalog(); err != nil {
			return fmt.Errorf("_catalog: %w", err)
		}
		if err := c.sweepBlobLocks(m); err != nil {
			return err
		}
		// A layer's entry list goes with the last repository's blob.
		_, err = m.SweepLayerIndexes(func(d digest.Digest) bool { return c.kept[d] })
		return err
	})
	if err != nil && c == nil {
		return nil, err // never had the tree (ErrRunning among others): nothing to report
	}
	if err != nil {
		return c.report(), err
	}
	rep := c.report()
	if len(rep.Problems) > 0 {
		return rep, &ProblemsError{rep.Problems}
	}
	return rep, nil
}

// interrupted reports the cause of the root's context once it is done:
// long walks stop between repositories, never in the middle of removing
// one, so an interrupted collection leaves what any crash would.
func interrupted(root *tree.Root) error {
	if ctx := root.Context(); ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// checkTree refuses a root that holds no tree, rather than creating one.
func checkTree(root *tree.Root) error { return root.RequireTree() }

// collector sweeps repositories, several at once: each repository is
// marked and swept on its own, so only the report and blob accounting are
// shared. It decides what goes; tree.Maint.Remove removes it, in its
// order.
type collector struct {
	root *tree.Root
	v    *tree.View // the tree as the Maint collecting holds it
	o    Options
	// sweepTemps removes what writers that crashed left behind (only a
	// collection, which holds the tree lock exclusively, may).
	sweepTemps bool

	mu    sync.Mutex
	repos []string           // in the order first collected
	per   map[string]*Report // by repository
	// kept is every blob some repository keeps: blob locks of others go.
	kept map[digest.Digest]bool
	// links counts, for a dry run, the links each inode would have left.
	links map[[2]uint64]uint64
}

// collectAll collects repos with c.o.Jobs workers (default one per CPU):
// reading manifests is system calls, and a tree of thousands of
// repositories spends its time there.
func (c *collector) collectAll(m *tree.Maint, repos []string) error {
	work := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	jobs := c.o.Jobs
	if jobs < 1 {
		jobs = min(runtime.GOMAXPROCS(0), 8)
	}
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for repo := range work {
				err := interrupted(c.root)
				if err == nil {
					err = c.sweepRepoTemps(m, repo)
				}
				if err == nil {
					err = c.collectRepo(m, repo, nil)
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, repo := range repos {
		select {
		case err := <-errs:
			close(work)
			wg.Wait()
			return err
		case work <- repo:
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func newCollector(root *tree.Root, v *tree.View, o Options) *collector {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &collector{root: root, v: v, o: o, per: map[string]*Report{}, kept: map[digest.Digest]bool{}, links: map[[2]uint64]uint64{}}
}

// report sums up every repository collected.
func (c *collector) report() *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	total := &Report{DryRun: c.o.DryRun}
	for _, repo := range c.repos {
		total.add(c.per[repo])
	}
	slices.SortStableFunc(total.Problems, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return total
}

// record files rep as repo's latest pass, and the blobs it keeps.
func (c *collector) record(repo string, rep *Report, kept []digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range kept {
		c.kept[d] = true
	}
	if prev := c.per[repo]; prev != nil {
		prev.merge(rep)
		return
	}
	c.repos = append(c.repos, repo)
	c.per[repo] = rep
}

func (c *collector) sweepRepoTemps(m *tree.Maint, repo string) error {
	if !c.sweepTemps {
		return nil
	}
	if _, err := m.SweepRepoTemps(repo); err != nil {
		return fmt.Errorf("repository %s: removing temporary files: %w", repo, err)
	}
	return nil
}

// collectRepo marks and sweeps repo.
func (c *collector) collectRepo(m *tree.Maint, repo string, d *deletion) error {
	p, err := c.markRepo(repo, d)
	if err != nil {
		return err
	}
	return c.sweepRepo(m, p)
}

// deletion is what a delete asks of the prune of one repository.
type deletion struct {
	// retired are the manifests the deleted references reached: swept
	// without grace unless something else keeps them.
	retired map[digest.Digest]bool
	// forced are manifests deleted by digest: never kept, even as
	// referrers of a kept subject.
	forced map[digest.Digest]bool
	// named are the manifests the deleted tags named: a referrer deleted
	// by its own tag (an SBOM tagged "sbom") goes although its subject
	// stays, but stays while a tag or a kept index names it.
	named map[digest.Digest]bool
}

// repoPlan is a marked repository.
type repoPlan struct {
	g     *repoGraph
	tags  []string
	marks *marks
	grace graceKept
}

// graceKept is what the grace period kept in one repository.
type graceKept struct {
	count int
	until *time.Time // when the first becomes collectable
}

// markRepo marks from every tag of repo, then from the untagged manifests
// that stay. A delete (d not nil) retires what it reached; a repository it
// leaves without tags keeps nothing and is removed.
func (c *collector) markRepo(repo string, d *deletion) (*repoPlan, error) {
	g, err := loadRepo(c.v, repo)
	if err != nil {
		return nil, err
	}
	if g.outside {
		return &repoPlan{g: g, marks: newMarks()}, nil
	}
	// A tag move a crash interrupted is finished before a real collection
	// (tree.Maintain); a dry run, which finishes nothing, marks from where
	// the tags will be once it is, to report what the collection will do.
	// TripleO's symlink tags are no tags a server serves, but what they
	// name is kept: an export of the tag rewrites it as a type map.
	trs, err := c.v.TagRoots(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	m := newMarks()
	var retired map[digest.Digest]bool
	if d != nil {
		retired = d.retired
		for f := range d.forced {
			m.forbid(f)
		}
		maps.Copy(m.detached, d.named)
	}
	// tags are the repository's tags, symlink tags and pins aside: those
	// with a type map, and those a pending move makes. A pin is a root as
	// a tag is, but no tag: it lists nothing in tags/list.
	var tags []string
	var roots []edge
	for _, t := range trs {
		if (t.Kind == tree.TagTypeMap || t.Kind == tree.TagPending) && (t.TypeMap || len(t.Variants) > 0) {
			tags = append(tags, t.Tag)
		}
		if t.Err != nil {
			g.problem(t.Path, "%v", t.Err)
			continue
		}
		for _, v := range t.Variants {
			roots = append(roots, edge{to: v.Digest, path: t.Path, what: t.What() + ": manifest"})
		}
	}
	g.mark(m, roots)
	var grace graceKept
	if d == nil || len(tags) > 0 {
		var untagged []edge
		untagged, grace = c.untaggedRoots(g, m, retired)
		g.mark(m, untagged)
	}
	return &repoPlan{g: g, tags: tags, marks: m, grace: grace}, nil
}

// sweepRepo deletes what p did not mark, through m.Remove, which owns
// the order; a dry run counts what it would delete instead. A repository
// with problems is left alone.
func (c *collector) sweepRepo(m *tree.Maint, p *repoPlan) error {
	g, marks, repo := p.g, p.marks, p.g.repo
	rep := &Report{Repositories: 1, GraceKept: p.grace.count, CollectableAt: p.grace.until}
	var kept []digest.Digest
	defer func() { c.record(repo, rep, kept) }()
	if g.outside {
		rep.Problems = g.problems // and its blobs are not the tree's to keep
		return nil
	}
	blobs, err := c.v.Blobs(repo)
	if err != nil {
		return fmt.Errorf("repository %s: %w", repo, err)
	}
	if len(g.problems) > 0 {
		rep.Problems = g.problems
		rep.ManifestsKept = len(g.stored)
		kept = uniqueDigests(blobs)
		rep.BlobsKept = len(kept)
		return nil
	}
	rm := tree.Removal{Referrers: len(g.referrers) > 0}
	for d := range g.stored {
		if marks.manifests[d] {
			rep.ManifestsKept++
		} else {
			rm.Manifests = append(rm.Manifests, d)
		}
	}
	for _, d := range uniqueDigests(blobs) {
		if marks.blobs[d] {
			kept = append(kept, d)
		} else {
			rm.Blobs = append(rm.Blobs, d)
		}
	}
	rep.BlobsKept = len(kept)
	if c.o.DryRun {
		return c.wouldRemove(p, rm, rep)
	}
	done, err := m.Remove(repo, rm)
	rep.ManifestsDeleted = done.ManifestsRemoved
	rep.BlobsDeleted = done.BlobsRemoved
	rep.BytesFreed = done.BytesFreed
	if done.RepositoryRemoved {
		rep.RepositoriesRemoved++
	}
	return err
}

// wouldRemove counts into rep what m.Remove would do with rm: a dry run.
// The repository would go when it has no tag and keeps nothing.
func (c *collector) wouldRemove(p *repoPlan, rm tree.Removal, rep *Report) error {
	rep.ManifestsDeleted = len(rm.Manifests)
	for _, d := range rm.Blobs {
		freed, err := c.wouldFree(p.g.repo, d)
		if err != nil {
			return err
		}
		rep.BlobsDeleted++
		rep.BytesFreed += freed
	}
	if len(p.tags) == 0 && rep.ManifestsKept == 0 && rep.BlobsKept == 0 {
		rep.RepositoriesRemoved++
	}
	return nil
}

// untaggedRoots are the manifests no tag reaches that stay anyway: all of
// them with KeepUntagged; otherwise those younger than the grace period,
// unless a delete retired them. Referrers are never roots of their own:
// they live as long as their subject.
//
// It also counts the manifests only the grace period keeps.
func (c *collector) untaggedRoots(g *repoGraph, m *marks, retired map[digest.Digest]bool) ([]edge, graceKept) {
	var roots []edge
	var grace graceKept
	now := c.o.Now()
	for d := range g.stored {
		if m.manifests[d] || !g.present[d] {
			continue
		}
		path := g.paths[d]
		if c.o.Untagged == KeepUntagged {
			roots = append(roots, edge{to: d, path: path, what: "manifest"})
			continue
		}
		if retired[d] {
			continue
		}
		if r := g.refs[d]; r != nil && r.Subject != "" {
			continue
		}
		// ctime, not mtime: see tree.View.ManifestChanged.
		changed, err := c.v.ManifestChanged(g.repo, d)
		if err != nil {
			g.problem(path, "%v", err)
			continue
		}
		if now.Sub(changed) < c.o.Grace {
			roots = append(roots, edge{to: d, path: path, what: "manifest"})
			at := changed.Add(c.o.Grace)
			grace.count++
			grace.until = earliest(grace.until, &at)
		}
	}
	return roots, grace
}

// wouldFree counts the bytes unlinking blob d from repo would free: the
// size of each inode whose last link, of those the dry run has not yet
// counted gone, this is.
func (c *collector) wouldFree(repo string, d digest.Digest) (int64, error) {
	inodes, err := c.v.BlobInodes(repo, d)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var freed int64
	for _, in := range inodes {
		key := [2]uint64{in.Dev, in.Ino}
		left, seen := c.links[key]
		if !seen {
			left = in.Links
		}
		left--
		c.links[key] = left
		if left == 0 {
			freed += in.Size
		}
	}
	return freed, nil
}

// sweepBlobLocks removes the lock files of blobs no repository holds any
// more. The tree lock is held exclusively, so no export holds one.
func (c *collector) sweepBlobLocks(m *tree.Maint) error {
	ds, err := c.v.BlobLocks()
	if err != nil {
		return err
	}
	for _, d := range ds {
		if !c.kept[d] {
			if err := m.RemoveBlobLock(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// uniqueDigests are the digests of bs, once each: a blob stored under both
// its plain and its legacy name is one blob.
func uniqueDigests(bs []tree.StoredBlob) []digest.Digest {
	var out []digest.Digest
	seen := make(map[digest.Digest]bool, len(bs))
	for _, b := range bs {
		if !seen[b.Digest] {
			seen[b.Digest] = true
			out = append(out, b.Digest)
		}
	}
	return out
}
