package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
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
		if err := r.PutTag(t.Repo, t.Tag, t.Variants); err != nil {
			if uerr := r.undoTags(j.Tags[:i+1]); uerr != nil {
				return fmt.Errorf("%w; putting the moved tags back failed too (the next export or gc completes the move): %v", err, uerr)
			}
			if uerr := r.unlink(path); uerr != nil && !errors.Is(uerr, fs.ErrNotExist) {
				return fmt.Errorf("%w: %v", err, uerr)
			}
			return fmt.Errorf("%w: %w", errNotAll, err)
		}
	}
	return r.unlink(path)
}

// planJournal checks that every tag can move (names, manifests in the
// tree) and records what each points at now.
func (r *Root) planJournal(images []Image) (*journal, error) {
	j := &journal{}
	for _, im := range images {
		for _, v := range im.Variants {
			if !r.isFile(r.ManifestPath(im.Repo, v.Digest)) {
				return nil, fmt.Errorf("tag %s:%s: manifest %s is not in the tree", im.Repo, im.Tag, v.Digest)
			}
		}
		t := journalTag{Repo: im.Repo, Tag: im.Tag, Variants: im.Variants}
		prev, err := r.TagVariants(im.Repo, im.Tag)
		switch {
		case err == nil:
			t.Existed, t.Previous = true, prev
		case !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrOutsideRoot):
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
			err = r.PutTag(t.Repo, t.Tag, t.Previous)
		} else if err = r.DeleteTag(t.Repo, t.Tag); errors.Is(err, ErrTagUnknown) {
			err = nil
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%s: %w", t.Repo, t.Tag, err))
		}
	}
	return errors.Join(errs...)
}

// completeJournals finishes the tag moves crashed writers left, each all
// the way forward, or, when one of its manifests is gone, all the way
// back; it removes the journals and the temporary files of journals
// never written. The caller holds the tree lock exclusively, so no
// journal it finds belongs to a live writer. It returns how many it
// finished.
func (r *Root) completeJournals() (int, error) {
	entries, err := r.readDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
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
		case strings.HasSuffix(e.Name(), journalExt) && e.Type().IsRegular():
			if err = r.completeJournal(path); err == nil {
				n++
			}
		default:
			continue
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("journal %s: %w", path, err))
		}
	}
	return n, errors.Join(errs...)
}

func (r *Root) completeJournal(path string) error {
	j, err := r.readJournal(path)
	if err != nil {
		return err
	}
	if r.canFinish(j) {
		for _, t := range j.Tags {
			if err := r.PutTag(t.Repo, t.Tag, t.Variants); err != nil {
				return err
			}
		}
	} else if err := r.undoTags(j.Tags); err != nil {
		return err
	}
	return r.unlink(path)
}

func (r *Root) readJournal(path string) (*journal, error) {
	b, err := r.readSmall(path, maxJournalSize)
	if err != nil {
		return nil, err
	}
	var j journal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("not a journal: %w", err)
	}
	for _, t := range j.Tags {
		if err := ValidateRepo(t.Repo); err != nil {
			return nil, err
		}
	}
	return &j, nil
}

// PendingTags returns, for the tags of repo that a tag move a crash
// interrupted will move, the variants each will name once the move is
// finished — nil for a tag that will not exist. It changes nothing: it is
// for a reader, such as a dry-run gc, that must see the tree as the next
// writer will leave it.
func (r *Root) PendingTags(repo string) (map[string][]TagVariant, error) {
	entries, err := r.readDir(r.journalDir())
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	pending := map[string][]TagVariant{}
	for _, e := range entries {
		// Only regular files, as completeJournals finishes: anything else
		// is no journal a writer left (verify reports a FIFO).
		if isTempName(e.Name()) || !strings.HasSuffix(e.Name(), journalExt) || !e.Type().IsRegular() {
			continue
		}
		j, err := r.readJournal(filepath.Join(r.journalDir(), e.Name()))
		if err != nil {
			return nil, fmt.Errorf("journal %s: %w", e.Name(), err)
		}
		forward := r.canFinish(j)
		for _, t := range j.Tags {
			if t.Repo != repo {
				continue
			}
			switch {
			case forward:
				pending[t.Tag] = t.Variants
			case t.Existed:
				pending[t.Tag] = t.Previous
			default:
				pending[t.Tag] = nil
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
			if !r.isFile(r.ManifestPath(t.Repo, v.Digest)) {
				return false
			}
		}
	}
	return true
}
