package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/image-serve/image-serve/distribution"
)

// A journal records a move of several tags that must happen all or not
// at all. A file system renames one file at a time, so the tags move one
// by one; the journal, written before the first and removed after the
// last, lets whoever comes after a crash finish the move. Its manifests
// are all in the tree before it is written, so finishing is always
// possible, and gc, which runs only after finishing (see Maintain), keeps
// what a journal names.
type journal struct {
	Tags []journalTag `json:"tags"`
}

// journalTag is one tag of a journal: what it moves to, and what it
// pointed at before (Existed false: nothing), for an undo.
type journalTag struct {
	Repo     string       `json:"repo"`
	Tag      string       `json:"tag"`
	Variants []TagVariant `json:"variants"`
	Existed  bool         `json:"existed"`
	Previous []TagVariant `json:"previous,omitempty"`
}

// maxJournalSize bounds the journal read back: a few hundred bytes a tag.
const maxJournalSize = 16 << 20

func (r *Root) journalDir() string { return filepath.Join(r.dir, stateDir, journalDir) }

// moveTagsTogether points every image's tag at its variants, or, when one
// move fails, puts the moved ones back. Every manifest must be in the
// tree. A crash in between leaves the journal, which completeJournals
// finishes.
func (r *Root) moveTagsTogether(images []Image) error {
	j, err := r.planJournal(images)
	if err != nil {
		return err
	}
	if err := r.mkdirAll(r.journalDir()); err != nil {
		return err
	}
	path := filepath.Join(r.journalDir(), strconv.FormatUint(rand.Uint64(), 36)+journalExt)
	data, _ := json.Marshal(j)
	if err := r.publish(path, data); err != nil {
		return fmt.Errorf("journal of the tags to move: %w", err)
	}
	for i, t := range j.Tags {
		if err := r.putTag(t.Repo, t.Tag, t.Variants); err != nil {
			if uerr := r.undoTags(j.Tags[:i+1]); uerr != nil {
				return fmt.Errorf("%w; putting the moved tags back failed too (the next export or gc completes the move): %v", err, uerr)
			}
			if uerr := r.removeJournal(path); uerr != nil && !absentOrOutside(uerr) {
				return fmt.Errorf("%w: %v", err, uerr)
			}
			return fmt.Errorf("%w: %w", errNotAll, err)
		}
	}
	return r.removeJournal(path)
}

// removeJournal removes the journal at path and syncs its directory: a
// journal that came back after a crash would move its tags again, over
// whatever moved them since.
func (r *Root) removeJournal(path string) error {
	if err := r.unlink(path); err != nil {
		return err
	}
	return r.syncDir(filepath.Dir(path))
}

// planJournal checks that every tag can move (names, manifests in the
// tree) and records what each points at now.
func (r *Root) planJournal(images []Image) (*journal, error) {
	j := &journal{}
	for _, im := range images {
		for _, v := range im.Variants {
			if !r.isFile(r.manifestPath(im.Repo, v.Digest)) {
				return nil, fmt.Errorf("tag %s:%s: manifest %s is not in the tree", im.Repo, im.Tag, v.Digest)
			}
		}
		t := journalTag{Repo: im.Repo, Tag: im.Tag, Variants: im.Variants}
		prev, err := r.TagVariants(im.Repo, im.Tag)
		switch {
		case err == nil:
			t.Existed, t.Previous = true, prev
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("tag %s:%s: %w", im.Repo, im.Tag, err)
		default:
			if d, ok := r.legacyTag(im.Repo, im.Tag); ok {
				t.Existed, t.Previous = true, []TagVariant{{Digest: d}}
			}
		}
		j.Tags = append(j.Tags, t)
	}
	return j, nil
}

// undoTags points tags back at what they pointed at before.
func (r *Root) undoTags(tags []journalTag) error {
	var errs []error
	for _, t := range tags {
		var err error
		if t.Existed {
			err = r.putTag(t.Repo, t.Tag, t.Previous)
		} else if err = r.deleteTag(t.Repo, t.Tag); errors.Is(err, ErrTagUnknown) {
			err = nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
		}
	}
	return errors.Join(errs...)
}

// settleJournals finishes the tag moves a crash interrupted before the
// caller changes tags itself: every tag writer calls it before it takes
// the tree lock shared (Publish does), so that no journal is finished
// after — and over — what the writer does. With no journal in the tree
// it costs one directory read; with one, it waits for the tree lock
// exclusively (an all-or-nothing export in flight finishes first).
func (r *Root) settleJournals() error {
	if !r.hasJournals() {
		return nil
	}
	l, err := r.lockExclusive()
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := r.completeJournals(); err != nil {
		return fmt.Errorf("finishing interrupted tag moves: %w", err)
	}
	return nil
}

// hasJournals reports whether a journal may be in the tree: one is, or
// the directory cannot be read.
func (r *Root) hasJournals() bool {
	entries, err := r.readDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return err != nil || slices.ContainsFunc(entries, func(e fs.DirEntry) bool { return isJournalName(e.Name()) })
}

// completeJournals finishes the tag moves crashed writers left, each all
// the way forward, or, when one of its manifests is gone, all the way
// back; it removes the journals and the temporary files of journals
// never written. The caller holds the tree lock exclusively, so no
// journal it finds belongs to a live writer. It returns how many it
// finished.
func (r *Root) completeJournals() (int, error) {
	entries, err := r.readDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, e := range entries {
		path := filepath.Join(r.journalDir(), e.Name())
		switch {
		case isTempName(e.Name()):
			err = r.unlink(path)
		case isJournalName(e.Name()):
			err = r.completeJournal(path)
			var invalid *invalidJournalError
			if errors.As(err, &invalid) {
				err = r.setJournalAside(path, invalid)
			} else if err == nil {
				n++
			}
		default:
			continue
		}
		if err != nil && !absentOrOutside(err) {
			errs = append(errs, fmt.Errorf("journal %s: %w", path, err))
		}
	}
	return n, errors.Join(errs...)
}

// completeJournal finishes or undoes the journal at path, tag by tag,
// and only where the tag is still where the crashed batch left it: a tag
// that names neither the journal's previous target nor its new one was
// changed since by someone else (an export, a delete), and that later
// change stands.
func (r *Root) completeJournal(path string) error {
	j, err := r.readJournal(path)
	if err != nil {
		return err
	}
	forward := r.canFinish(j)
	var errs []error
	for _, t := range j.Tags {
		to, move, err := r.settle(t, forward)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
		case !move && to != nil && r.tagIs(t.Repo, t.Tag, to):
			// There already: the crash may have come between the type
			// map and what is derived from it (tags/list, nginx's
			// links, _catalog, the page). Put again, it writes those.
			if err := r.putTag(t.Repo, t.Tag, to); err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
			}
		case !move && to == nil && r.tagIs(t.Repo, t.Tag, nil):
			// Gone already: tags/list and _catalog may still name it.
			err := r.refreshTags(t.Repo)
			if err == nil {
				err = r.refreshCatalogFor(t.Repo)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
			}
		case !move:
		case to == nil:
			if err := r.deleteTag(t.Repo, t.Tag); err != nil && !errors.Is(err, ErrTagUnknown) {
				errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
			}
		default:
			if err := r.putTag(t.Repo, t.Tag, to); err != nil {
				errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return r.removeJournal(path)
}

// settle says where completing a journal puts its tag t — forward to
// its new variants, or back to what it named before — and whether that
// takes a move: none when the tag is there already, nor when it names
// neither end of the move (changed since the crash: the later writer's
// tag stands). to is nil for a tag that is not to exist.
func (r *Root) settle(t journalTag, forward bool) (to []TagVariant, move bool, err error) {
	now, err := r.currentTag(t.Repo, t.Tag)
	if err != nil {
		return nil, false, err
	}
	from, to := t.previous(), t.Variants
	if !forward {
		from, to = to, from
	}
	return to, !sameVariants(now, to) && sameVariants(now, from), nil
}

// tagIs reports whether tag of repo names variants now.
func (r *Root) tagIs(repo, tag string, variants []TagVariant) bool {
	now, err := r.currentTag(repo, tag)
	return err == nil && sameVariants(now, variants)
}

// previous is what the tag named before the batch: nil when it did not
// exist.
func (t journalTag) previous() []TagVariant {
	if !t.Existed {
		return nil
	}
	return t.Previous
}

// currentTag is what tag of repo names now: its type map's variants, a
// legacy symlink tag's digest, or nil when there is no such tag.
func (r *Root) currentTag(repo, tag string) ([]TagVariant, error) {
	vs, err := r.TagVariants(repo, tag)
	switch {
	case err == nil:
		return vs, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if d, ok := r.legacyTag(repo, tag); ok {
		return []TagVariant{{Digest: d}}, nil
	}
	return nil, nil
}

// sameVariants reports whether a and b name the same manifests, in
// order; nil and empty alike mean no tag. A legacy symlink tag records
// no media type, so a missing one matches any.
func sameVariants(a, b []TagVariant) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Digest != b[i].Digest || (a[i].MediaType != b[i].MediaType && a[i].MediaType != "" && b[i].MediaType != "") {
			return false
		}
	}
	return true
}

// isJournalName reports whether a journal directory entry is a journal
// by its name: what else is there (temporary files, journals set aside)
// is not read as one.
func isJournalName(name string) bool {
	return !isTempName(name) && strings.HasSuffix(name, journalExt)
}

// invalidJournalError is a journal that cannot be trusted to move tags:
// not a regular file, unreadable, not JSON, or naming something outside
// the grammar of repositories, tags, digests and media types.
type invalidJournalError struct {
	Path string
	Err  error
}

func (e *invalidJournalError) Error() string { return "journal " + e.Path + ": " + e.Err.Error() }
func (e *invalidJournalError) Unwrap() error { return e.Err }

// readJournal reads the journal at path and checks it whole before any
// of it is acted on; every failure is an *invalidJournalError.
func (r *Root) readJournal(path string) (*journal, error) {
	invalid := func(err error) error { return &invalidJournalError{path, err} }
	b, err := r.readSmall(path, maxJournalSize)
	if err != nil {
		return nil, invalid(err)
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, invalid(fmt.Errorf("not a journal: %w", err))
	}
	if len(j.Tags) == 0 {
		return nil, invalid(errors.New("not a journal: no tags"))
	}
	for _, t := range j.Tags {
		if err := t.validate(); err != nil {
			return nil, invalid(err)
		}
	}
	return &j, nil
}

// validate checks what the journal says of one tag: names in the
// distribution grammar, digests well formed, media types present.
func (t journalTag) validate() error {
	if err := ValidateRepo(t.Repo); err != nil {
		return err
	}
	if err := distribution.ValidateTag(t.Tag); err != nil {
		return fmt.Errorf("tag %q: %w", t.Tag, err)
	}
	if len(t.Variants) == 0 {
		return fmt.Errorf("tag %s:%s: moves to no manifest", t.Repo, t.Tag)
	}
	for _, v := range slices.Concat(t.Variants, t.Previous) {
		if err := v.Digest.Validate(); err != nil {
			return fmt.Errorf("tag %s:%s: digest %q: %w", t.Repo, t.Tag, v.Digest, err)
		}
		if v.QS < 0 || v.QS > 1 {
			return fmt.Errorf("tag %s:%s: quality %v outside 0 to 1", t.Repo, t.Tag, v.QS)
		}
	}
	for _, v := range t.Variants {
		if !validMediaType(v.MediaType) {
			return fmt.Errorf("tag %s:%s: media type %q", t.Repo, t.Tag, v.MediaType)
		}
	}
	return nil
}

// journalAsideExt marks a journal set aside: kept for the operator, never
// read as a journal again.
const journalAsideExt = ".invalid"

// setJournalAside renames an invalid journal out of the way, so that it
// blocks no maintainer, and says so once at WARN: which file, why, and
// what to do.
func (r *Root) setJournalAside(path string, why *invalidJournalError) error {
	aside := path + journalAsideExt
	if err := r.renameEntry(path, aside); err != nil {
		return err
	}
	if err := r.syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	r.warn(fmt.Sprintf("%v: set aside as %s; the tags of the batch that wrote it may be half moved: check them with image-serve verify and export them again if needed", why, aside))
	return nil
}

// pendingTags returns, for the tags of repo that finishing a tag move a
// crash interrupted will move, the variants each will name then — nil
// for a tag that will not exist. A tag changed since the crash is not
// pending: it stays as it is. It changes nothing: it is
// for a reader, such as a dry-run gc, that must see the tree as the next
// writer will leave it.
func (r *Root) pendingTags(repo string) (map[string][]TagVariant, error) {
	entries, err := r.readDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pending := map[string][]TagVariant{}
	for _, e := range entries {
		if !isJournalName(e.Name()) {
			continue
		}
		j, err := r.readJournal(filepath.Join(r.journalDir(), e.Name()))
		var invalid *invalidJournalError
		if errors.As(err, &invalid) {
			continue // moves nothing: the next writer sets it aside
		}
		if err != nil {
			return nil, fmt.Errorf("journal %s: %w", e.Name(), err)
		}
		forward := r.canFinish(j)
		for _, t := range j.Tags {
			if t.Repo != repo {
				continue
			}
			to, move, err := r.settle(t, forward)
			if err != nil {
				return nil, fmt.Errorf("journal %s: %s:%s: %w", e.Name(), t.Repo, t.Tag, err)
			}
			if move {
				pending[t.Tag] = to
			}
		}
	}
	return pending, nil
}

// canFinish reports whether every manifest j moves a tag to is in the
// tree, so that the move can go forward.
func (r *Root) canFinish(j *journal) bool {
	for _, t := range j.Tags {
		for _, v := range t.Variants {
			if !r.isFile(r.manifestPath(t.Repo, v.Digest)) {
				return false
			}
		}
	}
	return true
}
