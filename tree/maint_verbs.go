package tree

import (
	"bytes"
	"errors"
	"io/fs"
	"slices"

	"github.com/opencontainers/go-digest"
)

// The verbs of Maint besides Remove: each changes the tree in its own
// order, and each refuses, with nothing changed, a Maint used outside its
// Maintain or inside a read-only one.

// RefreshCatalog rewrites _catalog from the repositories on disk when it
// does not list exactly them, and the catalog page when it does not show
// them: what a collection does once, after every Remove, which also sets
// right an entry a crashed writer left out of step.
func (m *Maint) RefreshCatalog() error {
	if err := m.check(); err != nil {
		return err
	}
	return m.r.refreshCatalog()
}

// RefreshCatalogFor brings _catalog in step for repos alone, reading
// nothing of the other repositories for it when it lists each of repos
// rightly and not writing it then; the catalog page, which shows every
// tag, is rendered again and written when it changed: what a delete does
// for the repositories it touched.
func (m *Maint) RefreshCatalogFor(repos ...string) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.r.refreshCatalogFor(repos...)
}

// Rederived says what Rederive rewrote.
type Rederived struct {
	// Tags: tags/list and nginx's tag links.
	Tags bool
	// Referrers: the referrers indexes.
	Referrers bool
}

// Rederive brings what is derived from repo's type maps and manifests in
// step with them, rewriting only what is not: tags/list and nginx's tag
// links (compared by name, as View.TagsInStep does) from the type maps
// that parse, then the referrers indexes — one is out of step when it is
// missing for a subject some manifest names, lists referrers of a
// subject none names, cannot be read, or holds other bytes than the
// index the manifests give now. A repository in step costs reads only.
func (m *Maint) Rederive(repo string) (Rederived, error) {
	var done Rederived
	if err := m.check(); err != nil {
		return done, err
	}
	r := m.r
	tags, err := r.listableTags(repo)
	if err != nil {
		return done, err
	}
	inStep, err := r.tagsInStep(repo, tags)
	if err != nil {
		return done, err
	}
	if !inStep {
		if err := r.refreshTags(repo); err != nil {
			return done, err
		}
		done.Tags = true
	}
	if inStep, err = r.referrersInStep(repo); err != nil || inStep {
		return done, err
	}
	if err := r.refreshReferrers(repo); err != nil {
		return done, err
	}
	done.Referrers = true
	return done, nil
}

// referrersInStep reports whether every referrers index of repo is the
// one its manifests give now, and every subject they name has one.
func (r *Root) referrersInStep(repo string) (bool, error) {
	want, err := r.generatedReferrers(repo)
	if err != nil {
		return false, err
	}
	have, err := r.referrerSubjects(repo)
	if err != nil {
		return false, err
	}
	all := slices.Clone(have)
	for s := range want {
		all = append(all, s)
	}
	slices.Sort(all)
	for _, s := range slices.Compact(all) {
		got, err := r.readReferrers(repo, s)
		switch {
		case want[s] == nil && errors.Is(err, fs.ErrNotExist):
			// removed since ReferrerSubjects read the directory
		case err != nil, want[s] == nil, !bytes.Equal(got, want[s]):
			return false, nil
		}
	}
	return true, nil
}

// SweepRepoTemps removes the temporary files crashed writers left in
// repo's blobs, manifests, tags and referrers directories, and returns
// how many. Writers never leave one behind while the tree is held
// exclusively, so each is debris.
func (m *Maint) SweepRepoTemps(repo string) (int, error) {
	if err := m.check(); err != nil {
		return 0, err
	}
	return m.r.sweepRepoTemps(repo)
}

// RemoveBlobLock removes the lock file of blob d. Blob locks are taken
// only under the shared tree lock, so inside Maintain nobody holds or
// waits for one: removing a lock file someone waited on would let two
// writers lock different files.
func (m *Maint) RemoveBlobLock(d digest.Digest) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.r.removeBlobLock(d)
}

// RestoreHeaders rewrites, in repo, the headers of every complete
// manifest whose .htaccess is missing or disagrees with its bytes, and
// returns the digests of those it rewrote (Root.RestoreHeaders says
// how). verify --repair runs it from MaintainOptions.Salvage, before
// anything else is rewritten.
func (m *Maint) RestoreHeaders(repo string) ([]digest.Digest, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.r.restoreRepoHeaders(repo)
}

// SalvageTags writes again the type map of every tag of repo that lost
// it while tags/list or nginx's links still record it, and returns the
// tags restored and those it could not restore (Root.SalvageTags says
// how). Run it from MaintainOptions.Salvage: afterwards Maintain finishes
// the interrupted tag moves, which rewrite tags/list from the type maps
// and would drop such a tag.
func (m *Maint) SalvageTags(repo string) ([]RestoredTag, []LostTag, error) {
	if err := m.check(); err != nil {
		return nil, nil, err
	}
	return m.r.salvageRepoTags(repo)
}

// RemoveNotRegular removes f, a FIFO, socket or device View.NotRegularFiles
// listed: the entry itself, by unlinkat(2) inside the tree, never opened,
// then syncs its directory. What is at f.Path now but no such entry is
// left alone, and is an error.
func (m *Maint) RemoveNotRegular(f NotRegularFile) error {
	if err := m.check(); err != nil {
		return err
	}
	return m.r.removeNotRegular(f.Path)
}

// RemoveStrayHeaderFiles removes the .htaccess files image-serve never
// writes (View.StrayHeaderFiles(repos)), each followed by a sync of its
// directory, and returns those it removed, up to its error if any.
func (m *Maint) RemoveStrayHeaderFiles(repos []string) ([]string, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	return m.r.removeStrayHeaderFiles(repos)
}

// Corrupt names files of a repository whose bytes do not hash to their
// names.
type Corrupt struct {
	Blobs     []digest.Digest
	Manifests []digest.Digest
}

// RemoveCorrupt removes c from repo and returns what it removed, up to
// its error if any: first the blobs — their plain and legacy names; no
// manifest can use them — then the referrers indexes are rewritten
// without c's manifests (what those name is unknown, so every index is
// rewritten), then the manifests. Tags naming what goes stay, for an
// export to set right; nothing else is removed with them.
func (m *Maint) RemoveCorrupt(repo string, c Corrupt) (Corrupt, error) {
	var done Corrupt
	if err := m.check(); err != nil {
		return done, err
	}
	for _, d := range c.Blobs {
		if _, err := m.removeBlob(repo, d, nil); err != nil {
			return done, err
		}
		done.Blobs = append(done.Blobs, d)
	}
	if len(c.Manifests) == 0 {
		return done, nil
	}
	if err := m.r.refreshReferrers(repo, c.Manifests...); err != nil {
		return done, err
	}
	for _, d := range c.Manifests {
		if err := m.r.removeManifest(repo, d); err != nil {
			return done, err
		}
		done.Manifests = append(done.Manifests, d)
	}
	return done, nil
}
