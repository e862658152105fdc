package tree

import (
	"errors"
	"sync/atomic"
)

// Untag runs do with the tree held as a tag writer holds it — the tree
// lock shared: exports and other tag deletes go on, collections and
// prunes wait — for do to delete tags (Untagger.DeleteTag) and read what
// they named (Untagger.View). It first finishes the tag moves a crash
// interrupted (SettleJournals), so that none of them puts back a tag do
// deletes. It fails with ErrNoTree where there is no tree.
func (r *Root) Untag(do func(*Untagger) error) error {
	if err := r.RequireTree(); err != nil {
		return err
	}
	if err := r.settleJournals(); err != nil {
		return err
	}
	l, err := r.lockShared()
	if err != nil {
		return err
	}
	defer l.Unlock()
	u := &Untagger{r: r}
	u.held.Store(true)
	defer u.held.Store(false)
	return do(u)
}

// Untagger is the tree as Untag holds it; it is valid until Untag's
// function returns.
type Untagger struct {
	r    *Root
	held atomic.Bool
}

// View is the tree as the Untagger holds it, to read what a tag names
// before it goes.
func (u *Untagger) View() *View { return &View{u.r} }

// DeleteTag removes tag from repo, TripleO symlink tag included, then
// brings _catalog in step for repo: tags/list stops listing the tag,
// then nginx's links go, then the type map, so that a crash in between
// leaves a tag some server still serves but no listing names, never a
// listed tag that answers 404. The manifests it named stay, for a
// collection or a prune (Maintain) to reclaim. It fails with
// ErrTagUnknown when repo has no such tag, and refuses, changing
// nothing, outside its Untag.
func (u *Untagger) DeleteTag(repo, tag string) error {
	if !u.held.Load() {
		return errNotUntagging
	}
	return u.r.deleteTag(repo, tag)
}

// errNotUntagging refuses an Untagger used after its Untag returned.
var errNotUntagging = errors.New("tree: tag deletion outside its Untag")
