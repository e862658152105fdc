package tree

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
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

// DeleteTagIf is DeleteTag of a tag only while it names want: the first
// manifest it offers (its type map's first variant, or what its TripleO
// symlink names; TagDigest's reading) is compared with want holding the
// repository's lock, the lock every tag writer takes to move a tag, so a
// tag an export moved after the caller planned its removal is never
// deleted. A tag that names another manifest is left as it is, and the
// error is a *TagMovedError (matching ErrTagMoved).
func (u *Untagger) DeleteTagIf(repo, tag string, want digest.Digest) error {
	if !u.held.Load() {
		return errNotUntagging
	}
	return u.r.deleteTagIf(repo, tag, func() error {
		e, err := u.View().Tag(repo, tag)
		if err != nil {
			return err
		}
		var now digest.Digest
		if len(e.Variants) > 0 {
			now = e.Variants[0].Digest
		}
		if now != want {
			return &TagMovedError{Repo: repo, Tag: tag, Want: want, Now: now}
		}
		return nil
	})
}

// ErrTagMoved reports a tag that no longer names the manifest a
// conditional delete expected (DeleteTagIf).
var ErrTagMoved = errors.New("tag moved")

// TagMovedError is a tag DeleteTagIf left, because it names Now (empty:
// its type map offers none) and not Want.
type TagMovedError struct {
	Repo, Tag string
	Want, Now digest.Digest
}

func (e *TagMovedError) Error() string {
	return fmt.Sprintf("%s:%s names %s, not %s: %v", e.Repo, e.Tag, e.Now, e.Want, ErrTagMoved)
}

// Is makes a TagMovedError match ErrTagMoved.
func (e *TagMovedError) Is(target error) bool { return target == ErrTagMoved }

// errNotUntagging refuses an Untagger used after its Untag returned.
var errNotUntagging = errors.New("tree: tag deletion outside its Untag")
