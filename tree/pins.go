package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Digest pins. A pin keeps a manifest of a repository, and everything it
// reaches, without a tag: what a sync file's digest entry, or an export
// of docker://HOST/REPO@DIGEST without a tag, publishes. A pin is one
// small file, .image-serve/pins/<repo, / as +>/<digest>, holding the
// digest and a newline:
//
//   - under .image-serve, which no server serves or lists: a pin changes
//     nothing a server answers. A pinned manifest is served by digest as
//     every manifest of the tree is; a pin is no tag, so it is in no
//     tags/list, and a repository with pins but no tag is in no _catalog
//     (_catalog lists the repositories with tags).
//   - one directory per repository, its name flattened as the repository
//     locks' are ('+' is outside the name grammar, so it is unambiguous),
//     so that the pins of one repository are one directory read.
//   - written as every file is (a dot-named temporary file renamed into
//     place, the directory synced), after the manifest it names: a crash
//     leaves the pin wholly there or not at all, and a pin never names a
//     manifest a crash left out.
//
// A collector marks from every pin as from a tag (View.TagRoots), so a
// pinned manifest survives gc whatever its age; only Maint.RemovePin
// (delete REPO@DIGEST, and verify --repair for a pin whose manifest is
// gone for good) removes a pin. What else stands in the pins directories
// is no pin (View.PinDebris): nothing reads it, and verify --repair
// removes it (Maint.RemovePinDebris).

// pinsRoot is .image-serve/pins.
func (r *Root) pinsRoot() string { return filepath.Join(r.dir, stateDir, pinsDir) }

// repoPinsDir holds the pins of repo.
func (r *Root) repoPinsDir(repo string) string {
	return filepath.Join(r.pinsRoot(), strings.ReplaceAll(repo, "/", "+"))
}

// pinPath is the file that pins manifest d of repo.
func (r *Root) pinPath(repo string, d digest.Digest) string {
	return filepath.Join(r.repoPinsDir(repo), d.String())
}

// pinContent is what a pin file holds.
func pinContent(d digest.Digest) []byte { return []byte(d.String() + "\n") }

// putPin pins manifest d of repo, which must be in the tree with its
// bytes: the pin is written after what it names. Pinning a manifest
// already pinned writes nothing.
func (r *Root) putPin(repo string, d digest.Digest) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return err
	}
	if !r.manifestComplete(repo, d) {
		return fmt.Errorf("pin %s@%s: manifest is not in the tree", repo, d)
	}
	if err := r.writeIfChanged(r.pinPath(repo, d), pinContent(d)); err != nil {
		return fmt.Errorf("pin %s@%s: %w", repo, d, err)
	}
	return nil
}

// pins lists the manifests of repo that are pinned, sorted. A repository
// without pins has none, and no error.
func (r *Root) pins(repo string) ([]digest.Digest, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	ds, err := r.digestsIn(r.repoPinsDir(repo), func(e fs.DirEntry) bool { return e.Type().IsRegular() })
	if err != nil {
		return nil, err
	}
	slices.Sort(ds)
	return ds, nil
}

// IsPinned reports whether manifest d of repo is pinned: what a sync
// reads before publishing a digest entry, as TagDigest for a tag.
func (r *Root) IsPinned(repo string, d digest.Digest) (bool, error) {
	ds, err := r.pins(repo)
	if err != nil {
		return false, err
	}
	return slices.Contains(ds, d), nil
}

// pinnedRepositories lists the repositories that have at least one pin,
// sorted: with Repositories, every repository a listing shows.
func (r *Root) pinnedRepositories() ([]string, error) {
	entries, err := r.readDir(r.pinsRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	repos := []string{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		repo := strings.ReplaceAll(e.Name(), "+", "/")
		if ValidateRepo(repo) != nil {
			continue
		}
		if ds, err := r.pins(repo); err == nil && len(ds) > 0 {
			repos = append(repos, repo)
		}
	}
	slices.Sort(repos)
	return repos, nil
}

// pinChanged is when the pin of manifest d of repo was written.
func (r *Root) pinChanged(repo string, d digest.Digest) (time.Time, error) {
	fi, err := r.lstat(r.pinPath(repo, d))
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// removePin unlinks the pin of manifest d of repo and syncs its
// directory, then removes the repository's pins directory when that left
// it empty. It reports whether there was a pin. Only call it holding the
// tree lock exclusively: a publication may be about to pin into that
// directory.
func (r *Root) removePin(repo string, d digest.Digest) (bool, error) {
	if err := ValidateRepo(repo); err != nil {
		return false, err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return false, err
	}
	path := r.pinPath(repo, d)
	if _, err := r.lstat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	dir := r.repoPinsDir(repo)
	if err := r.unlink(path); err != nil {
		return true, err
	}
	if err := r.syncDir(dir); err != nil {
		return true, err
	}
	if entries, err := r.readDir(dir); err != nil || len(entries) > 0 {
		return true, nil // not empty, or left to the sweep (sweepPins)
	}
	if err := r.removeDir(dir); err != nil {
		return true, err
	}
	return true, r.syncDir(r.pinsRoot())
}

// sweepPins removes what pin writers and removers that crashed left:
// temporary files in the repositories' pins directories, and those
// directories left empty. It returns how many entries it removed. Only
// call it holding the tree lock exclusively, as every sweep.
func (r *Root) sweepPins() (int, error) {
	repos, err := r.readDir(r.pinsRoot())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range repos {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(r.pinsRoot(), e.Name())
		entries, err := r.readDir(dir)
		if err != nil {
			return n, err
		}
		left := len(entries)
		for _, f := range entries {
			if isTempEntry(f) {
				if err := r.unlink(filepath.Join(dir, f.Name())); err != nil {
					return n, err
				}
				n++
				left--
			}
		}
		if left > 0 {
			continue
		}
		if err := r.removeDir(dir); err != nil {
			return n, err
		}
		n++
		if err := r.syncDir(r.pinsRoot()); err != nil {
			return n, err
		}
	}
	return n, nil
}

// RemovePin removes the pin of manifest d of repo, and reports whether
// there was one; the manifest and what it reaches stay, for the caller's
// prune (Remove) or the next collection to reclaim once nothing else
// keeps them.
func (m *Maint) RemovePin(repo string, d digest.Digest) (bool, error) {
	if err := m.check(); err != nil {
		return false, err
	}
	return m.r.removePin(repo, d)
}

// Pins lists the pinned manifests of repo, sorted.
func (v *View) Pins(repo string) ([]digest.Digest, error) { return v.r.pins(repo) }

// PinnedRepositories lists the repositories with at least one pin,
// sorted.
func (v *View) PinnedRepositories() ([]string, error) { return v.r.pinnedRepositories() }

// PinChanged is when the pin of manifest d of repo was written.
func (v *View) PinChanged(repo string, d digest.Digest) (time.Time, error) {
	return v.r.pinChanged(repo, d)
}

// PinPath names the file that pins manifest d of repo, for a report.
func (v *View) PinPath(repo string, d digest.Digest) string { return v.r.pinPath(repo, d) }

// PinDebris is an entry of .image-serve/pins that is no pin: nothing
// reads it (Pins and PinnedRepositories skip it, so a collector keeps
// nothing for it), and it keeps nothing.
type PinDebris struct {
	// Repo is the repository whose pins directory holds it; "" for an
	// entry of .image-serve/pins itself.
	Repo string
	Path string
	// Why says what it is: "not a repository's pins directory …", "not
	// named as a digest", "not a regular file (directory)".
	Why string
}

// pinDebris lists the entries of the pins directories that are no pin:
// in .image-serve/pins, anything but a directory named as a repository
// (its '/' as '+'); in such a directory, anything but a regular file
// named as a valid digest. Temporary files a crashed pin writer left are
// not listed: Maintain's sweep removes them. With repos, only the pins
// directories of those are read; without, every entry.
func (r *Root) pinDebris(repos []string) ([]PinDebris, error) {
	var out []PinDebris
	dirs := map[string]string{} // pins directory → its repository
	if len(repos) > 0 {
		for _, repo := range repos {
			if err := ValidateRepo(repo); err != nil {
				return nil, err
			}
			dirs[r.repoPinsDir(repo)] = repo
		}
	} else {
		entries, err := r.readDir(r.pinsRoot())
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			path := filepath.Join(r.pinsRoot(), e.Name())
			repo := strings.ReplaceAll(e.Name(), "+", "/")
			switch {
			case isTempEntry(e):
			case !e.IsDir():
				out = append(out, PinDebris{Path: path, Why: "not a repository's pins directory: " + typeName(e.Type())})
			case ValidateRepo(repo) != nil:
				out = append(out, PinDebris{Path: path, Why: "not a repository's pins directory: no repository is named so"})
			default:
				dirs[path] = repo
			}
		}
	}
	for _, dir := range slices.Sorted(maps.Keys(dirs)) {
		entries, err := r.readDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			switch {
			case isTempEntry(e):
			case distribution.ValidateDigest(digest.Digest(e.Name())) != nil:
				out = append(out, PinDebris{Repo: dirs[dir], Path: path, Why: "not named as a digest"})
			case !e.Type().IsRegular():
				out = append(out, PinDebris{Repo: dirs[dir], Path: path, Why: "not a regular file (" + typeName(e.Type()) + ")"})
			}
		}
	}
	slices.SortFunc(out, func(a, b PinDebris) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// PinDebris lists the entries of the pins directories that are no pin
// (of repos' pins directories only, when any is named), sorted by path.
func (v *View) PinDebris(repos []string) ([]PinDebris, error) { return v.r.pinDebris(repos) }

// RemovePinDebris removes an entry View.PinDebris listed — a directory
// with all it holds, entry by entry, a symlink itself and never what it
// names — and syncs the directory that held it. Nothing reads it, so
// nothing served or kept changes.
func (m *Maint) RemovePinDebris(d PinDebris) error {
	if err := m.check(); err != nil {
		return err
	}
	if !strings.HasPrefix(d.Path, m.r.pinsRoot()+string(filepath.Separator)) {
		return fmt.Errorf("%s: not in the pins directories", d.Path)
	}
	if err := m.r.removeTree(d.Path); err != nil {
		return err
	}
	return m.r.syncDir(filepath.Dir(d.Path))
}
