package tree

import (
	"errors"
	"fmt"
	"io/fs"
)

// ErrTagUnknown reports a tag that is not in the tree.
var ErrTagUnknown = errors.New("tag unknown")

// DeleteTag removes tag from repo, then rewrites tags/list and the
// catalog. A repository left without tags loses its tags/list, so it
// leaves the catalog; its manifests and blobs stay for gc (or a prune) to
// reclaim. Tags go first, so a crash never leaves a tag naming something
// already removed.
//
// The order within: tags/list stops listing the tag, then nginx's links
// go, then the type map. A crash in between leaves a tag that some server
// still serves but no listing names — never a listed tag that answers 404.
func (r *Root) DeleteTag(repo, tag string) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := ValidateTag(tag); err != nil {
		return err
	}
	err := r.updateRepo(repo, func() error {
		_, err := r.lstat(r.TypeMapPath(repo, tag))
		_, legacy := r.legacyTag(repo, tag)
		switch {
		case errors.Is(err, ErrOutsideRoot):
			return err
		case errors.Is(err, fs.ErrNotExist) && !legacy:
			return fmt.Errorf("%s:%s: %w", repo, tag, ErrTagUnknown)
		}
		if err := r.writeTagsList(repo, tag); err != nil {
			return err
		}
		if err := r.removeTagLinks(repo, tag); err != nil {
			return err
		}
		// The type map, and a TripleO symlink tag of the same name.
		if err := r.unlink(r.TypeMapPath(repo, tag)); err != nil {
			return err
		}
		if err := r.unlinkLegacyTag(repo, tag); err != nil {
			return err
		}
		return r.syncDir(r.manifestsDir(repo))
	})
	if err != nil {
		return err
	}
	return r.RefreshCatalog()
}
