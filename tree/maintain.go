package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// MaintainOptions tune Maintain.
type MaintainOptions struct {
	// ReadOnly is for a caller that only reads (a dry run): tag moves a
	// crash interrupted are left as they are, for the next writer, and
	// the Maint removes nothing.
	ReadOnly bool
	// Sweep removes, before do runs, what crashed writers left: temporary
	// files, blobs half downloaded, directories emptied. Ignored with
	// ReadOnly.
	Sweep bool
	// Salvage, when set, runs first, before the tag moves a crash
	// interrupted are finished: finishing one rewrites its repository's
	// tags/list and nginx's links from the type maps, which drops a tag
	// whose type map is lost though those still record it. verify
	// --repair writes such a tag's type map again there
	// (Maint.SalvageTags). It gets the same Maint as do. Ignored with
	// ReadOnly.
	Salvage func(*Maint) error
	// Collector makes Maintain take the collectors' lock without waiting,
	// before the tree lock: when another collection holds it, Maintain
	// returns ErrCollecting and runs nothing. It keeps two collections
	// from queueing behind each other on the tree lock: cron may start
	// the next one while the last still runs, and the running one does
	// the work of both.
	Collector bool
}

// ErrCollecting is returned by Maintain with Collector when another
// collection holds the collectors' lock.
var ErrCollecting = errors.New("another gc is running")

// Maintain runs do with the tree lock held exclusively — it waits for
// exports and tag deletes in flight and holds new ones off until do
// returns — after running o.Salvage and finishing the tag moves a crash
// interrupted, so that do sees every tag where its writer meant it to be.
// It is how gc, delete's prune, verify --repair and migrate change what
// exports rely on.
//
// do gets the tree as a *Maint, whose verbs hold the order of every
// removal; it is valid until do returns, and may be used by several
// goroutines at once for different repositories.
//
// Maintain does not rewrite _catalog afterwards; callers that removed
// repositories call Maint.RefreshCatalog themselves, inside do.
func (r *Root) Maintain(o MaintainOptions, do func(*Maint) error) error {
	if o.Collector {
		gl, err := r.tryLockGC()
		if err != nil {
			return err
		}
		if gl == nil {
			return ErrCollecting
		}
		defer gl.Unlock()
	}
	l, err := r.lockExclusive()
	if err != nil {
		return err
	}
	defer l.Unlock()
	m := &Maint{r: r, readOnly: o.ReadOnly}
	m.held.Store(true)
	defer m.held.Store(false)
	if !o.ReadOnly {
		if o.Salvage != nil {
			if err := o.Salvage(m); err != nil {
				return err
			}
		}
		if _, err := r.completeJournals(); err != nil {
			return fmt.Errorf("finishing interrupted tag moves: %w", err)
		}
		if o.Sweep {
			if err := r.sweepCrashed(); err != nil {
				return err
			}
		}
	}
	return do(m)
}

// sweepCrashed removes what crashed writers left outside the
// repositories; temporary files inside them go repository by repository
// as gc sweeps each.
func (r *Root) sweepCrashed() error {
	if _, err := r.sweepCatalogTemps(); err != nil {
		return fmt.Errorf("removing temporary files: %w", err)
	}
	if _, err := r.sweepIncoming(); err != nil {
		return fmt.Errorf("removing temporary files: %w", err)
	}
	if _, err := r.sweepEmptyDirs(); err != nil {
		return fmt.Errorf("removing empty directories: %w", err)
	}
	if _, err := r.sweepPins(); err != nil {
		return fmt.Errorf("removing what pin writers left: %w", err)
	}
	return nil
}

// Maint is the tree held exclusively, inside Maintain: the one place
// that removes manifests, blobs and repositories in the order that keeps
// every instant servable (docs/crash-safety.md). Callers decide what
// goes; Maint decides in which order.
type Maint struct {
	r        *Root
	readOnly bool
	held     atomic.Bool
	// blobLocks serialise removals of one blob from several repositories
	// at once, so that exactly one of them sees its last link go and
	// counts the bytes freed.
	blobLocks [64]sync.Mutex
}

// errNotHeld refuses a Maint used outside its Maintain, or a read-only
// one asked to change the tree.
var errNotHeld = errors.New("tree: removal outside a writing Maintain")

func (m *Maint) check() error {
	if !m.held.Load() || m.readOnly {
		return errNotHeld
	}
	return nil
}

// Removal is what Maint.Remove takes out of one repository.
type Removal struct {
	// Manifests go, in whatever order given: Remove orders them.
	Manifests []digest.Digest
	// Blobs are unlinked from the repository, after every manifest.
	Blobs []digest.Digest
	// Referrers says that the repository holds manifests naming a
	// subject, as the caller read them: its referrers indexes are then
	// rewritten even where none exists yet (a writer killed before
	// writing one). Without it they are rewritten only where some exist.
	Referrers bool
}

// RemovalReport is what Remove did, up to its error if any.
type RemovalReport struct {
	ManifestsRemoved int
	BlobsRemoved     int
	// BytesFreed counts the size of each inode whose last link Remove
	// unlinked, once: the space the file system gets back.
	BytesFreed        int64
	RepositoryRemoved bool
}

// Remove takes rm out of repo, in the order that keeps every tag that
// stays servable at every instant: tags/list and nginx's tag links
// brought in step with the type maps (they must stop naming a manifest
// before it goes), then the referrers indexes rewritten without the
// manifests leaving, then the manifests, each index and referrer before
// what it names, then the blobs, then the repository itself when it has
// no tag left and nothing in it. A repository in step with nothing to
// remove costs reads only, unless it has no tag left. _catalog is the
// caller's to refresh afterwards (RefreshCatalog, RefreshCatalogFor).
//
// Whatever rm leaves in repo must not need what it removes: the caller
// marked it so.
func (m *Maint) Remove(repo string, rm Removal) (RemovalReport, error) {
	var done RemovalReport
	if err := m.check(); err != nil {
		return done, err
	}
	r := m.r
	tags, err := r.tags(repo)
	if err != nil {
		return done, fmt.Errorf("repository %s: %w", repo, err)
	}
	if err := r.tagsInStepFor(repo, tags, rm.Manifests); err != nil {
		return done, err
	}
	if err := r.referrersWithout(repo, rm); err != nil {
		return done, err
	}
	for _, d := range r.parentsFirst(repo, rm.Manifests) {
		if err := r.removeManifest(repo, d); err != nil {
			return done, err
		}
		done.ManifestsRemoved++
	}
	var blobs *heldDir
	if len(rm.Blobs) > 0 && ValidateRepo(repo) == nil {
		if h, err := r.holdDir(filepath.Join(r.repoDir(repo), blobsDir)); err == nil {
			blobs = h
			defer h.close()
		} // else each blob by path, which says why
	}
	for _, d := range rm.Blobs {
		freed, err := m.removeBlob(repo, d, blobs)
		if err != nil {
			return done, err
		}
		done.BlobsRemoved++
		done.BytesFreed += freed
	}
	if len(tags) > 0 {
		return done, nil
	}
	done.RepositoryRemoved, err = r.removeRepo(repo)
	return done, err
}

// RemoveManifest removes manifest d of repo alone, as a delete by digest
// without a prune does: unlisted first from its subject's referrers
// index, when it names one, so that no index ever lists a removed
// manifest. The caller has made sure that nothing names d.
func (m *Maint) RemoveManifest(repo string, d digest.Digest) error {
	if err := m.check(); err != nil {
		return err
	}
	if refs := m.r.references(repo, d); refs != nil && refs.Subject != "" {
		if err := m.r.refreshReferrers(repo, d); err != nil {
			return err
		}
	}
	return m.r.removeManifest(repo, d)
}

// tagsInStepFor brings repo's tags/list and nginx's tag links in step
// with its type maps (tags) when they are not, or when a link names a
// manifest in gone (a tag update killed between its links and its type
// map leaves links naming an untagged manifest). Checking first lets an
// unchanged repository be maintained without a write.
func (r *Root) tagsInStepFor(repo string, tags []string, gone []digest.Digest) error {
	inStep, err := r.tagsInStep(repo, tags)
	if err != nil {
		return fmt.Errorf("repository %s: %w", repo, err)
	}
	avoid := true
	if inStep && len(gone) > 0 {
		leaving := make(map[digest.Digest]bool, len(gone))
		for _, d := range gone {
			leaving[d] = true
		}
		if avoid, err = r.tagLinksAvoid(repo, leaving); err != nil {
			return fmt.Errorf("repository %s: %w", repo, err)
		}
	}
	if !inStep || !avoid {
		if err := r.refreshTags(repo); err != nil {
			return fmt.Errorf("repository %s: tags/list: %w", repo, err)
		}
	}
	return nil
}

// referrersWithout rewrites repo's referrers indexes without rm's
// manifests, before they go; it also sets right what a killed writer
// left. A repository without referrers, the common case, costs one
// directory read.
func (r *Root) referrersWithout(repo string, rm Removal) error {
	if !rm.Referrers {
		subjects, err := r.referrerSubjects(repo)
		if err != nil || len(subjects) == 0 {
			return err
		}
	}
	if err := r.refreshReferrers(repo, rm.Manifests...); err != nil {
		return fmt.Errorf("repository %s: %w", repo, err)
	}
	return nil
}

// parentsFirst orders ds, manifests of repo, so that every index comes
// before its children and every referrer before its subject: removal in
// this order never leaves a manifest naming one already gone, whenever it
// is interrupted. A manifest that cannot be read or parsed names nothing.
func (r *Root) parentsFirst(repo string, ds []digest.Digest) []digest.Digest {
	in := make(map[digest.Digest]bool, len(ds))
	for _, d := range ds {
		in[d] = true
	}
	visited := make(map[digest.Digest]bool, len(ds))
	post := make([]digest.Digest, 0, len(ds))
	var visit func(d digest.Digest)
	visit = func(d digest.Digest) {
		if visited[d] || !in[d] {
			return
		}
		visited[d] = true
		if refs := r.references(repo, d); refs != nil {
			for _, c := range refs.Children {
				visit(c)
			}
			if refs.Subject != "" {
				visit(refs.Subject)
			}
		}
		post = append(post, d)
	}
	// In digest order, whatever order the caller marked them in (a map's,
	// often): the same removal crashes at the same steps every run.
	for _, d := range slices.Sorted(slices.Values(ds)) {
		visit(d)
	}
	for i, j := 0, len(post)-1; i < j; i, j = i+1, j-1 {
		post[i], post[j] = post[j], post[i]
	}
	return post
}

// references is what manifest d of repo names, or nil when it cannot be
// read or parsed.
func (r *Root) references(repo string, d digest.Digest) *distribution.References {
	raw, err := r.readManifest(repo, d)
	if err != nil {
		return nil
	}
	refs, err := distribution.ParseReferences(raw)
	if err != nil {
		return nil
	}
	return refs
}

// removeBlob unlinks blob d from repo and returns the bytes freed, one
// repository at a time per blob: through blobs, repo's blobs directory
// held, when not nil, else by path.
func (m *Maint) removeBlob(repo string, d digest.Digest, blobs *heldDir) (int64, error) {
	mu := &m.blobLocks[blobLockIndex(d, len(m.blobLocks))]
	mu.Lock()
	defer mu.Unlock()
	if blobs != nil {
		return blobs.removeBlob(repo, d)
	}
	return m.r.removeBlob(repo, d)
}

// removeBlob is Root.removeBlob of blob d of repo, whose blobs directory
// h holds: the same steps on the same paths, each name resolved in h (a
// collection removes thousands of blobs, and by path each name costs
// three resolutions from the root).
func (h *heldDir) removeBlob(repo string, d digest.Digest) (int64, error) {
	if err := distribution.ValidateDigest(d); err != nil {
		return 0, err
	}
	var freed int64
	for _, name := range []string{d.String(), d.String() + legacyBlobExt} {
		in, err := h.inodeOf(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return freed, fmt.Errorf("blob %s of %s: %w", d, repo, err)
		}
		if err := h.unlink(name); err != nil {
			return freed, fmt.Errorf("blob %s of %s: %w", d, repo, err)
		}
		if in.Links == 1 {
			freed += in.Size
		}
	}
	return freed, nil
}

// blobLockIndex spreads digests over n locks by their first character; a
// digest too short for one, which RemoveBlob refuses, takes the first.
func blobLockIndex(d digest.Digest, n int) int {
	e := d.Encoded()
	if e == "" {
		return 0
	}
	return int(e[0] % byte(n))
}
