package tree

import (
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// sweepTemps removes temporary files left by writers that crashed before
// their rename. Only call it holding the tree lock exclusively: a live
// writer's temporary file looks the same.
func (r *Root) sweepTemps() (int, error) {
	n, err := r.sweepIncoming()
	if err != nil {
		return n, err
	}
	err = r.walkDir(r.v2Dir(), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if absentOrOutside(err) {
				return nil
			}
			return err
		}
		// regular files, and the symlinks of nginx's tag links
		if (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) && isTempName(e.Name()) {
			if err := r.unlink(path); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// isTempName matches our temporary names: "." + target + digits. The
// target may be all digits itself (a tag "2019"), so ".2019" + digits is
// one too: no name of the layout is a dot and digits alone.
func isTempName(name string) bool {
	if !strings.HasPrefix(name, ".") || name == headersFile {
		return false
	}
	return strings.TrimRight(name, "0123456789") != name
}

// sweepRepoTemps is sweepTemps for one repository: the temporary files in
// its blobs, manifests (digest and link directories included), tags and
// referrers directories. A collection sweeps repository by repository,
// several at once, instead of walking the tree a second time. The same
// rule holds: only call it holding the tree lock exclusively.
func (r *Root) sweepRepoTemps(repo string) (int, error) {
	if err := ValidateRepo(repo); err != nil {
		return 0, err
	}
	n := 0
	for _, sub := range []string{blobsDir, manifestsDir, tagsDir, referrersDir} {
		m, err := r.sweepDirTemps(filepath.Join(r.repoDir(repo), sub))
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sweepDirTemps removes the temporary files below dir, and returns how
// many. dir is opened once, resolved inside the tree, and every
// directory below it through its parent's descriptor (openChildDir): a
// collection sweeps every repository, each with a directory per
// manifest, and resolving each of their paths from the root again cost
// a tenth of it. A dir that is missing, a symlink or leads out of the
// tree holds nothing to sweep; so do directories below it that cannot
// be read, as walkDir skips them.
func (r *Root) sweepDirTemps(dir string) (int, error) {
	n := 0
	fallback := false
	err := r.at("open", dir, func(t *dirHandle, name string) error {
		fd, err := t.openat2(name, dirFlags|unix.O_NOFOLLOW)
		switch {
		case err == errNoOpenat2:
			fallback = true
			return nil
		case err == syscall.ELOOP || err == syscall.ENOTDIR:
			return nil // a link or a file: not entered, as walkDir does not
		case err != nil:
			return err
		}
		defer syscall.Close(fd)
		return r.sweepOpenDir(fd, dir, &n)
	})
	if fallback {
		return r.sweepDirTempsByName(dir)
	}
	if absentOrOutside(err) {
		return n, nil
	}
	return n, err
}

// sweepOpenDir is sweepDirTemps of the open directory fd, whose path is
// dir: its entries in lexical order, as walkDir visits them.
func (r *Root) sweepOpenDir(fd int, dir string, n *int) error {
	entries, err := readDirents(fd, dir, r)
	var re *readError
	if errors.As(err, &re) {
		return &fs.PathError{Op: "readdirent", Path: dir, Err: re.err}
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range entries {
		if !isTempEntry(e) && !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if len(p)-len(r.dir) > maxWalkPath {
			continue // too deep to resolve: walkDir skips it too
		}
		if isTempEntry(e) {
			if err := r.unlink(p); err != nil {
				return err
			}
			*n++
			continue
		}
		sub, err := openChildDir(fd, e.Name())
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || err == syscall.ENOTDIR || isUnreadableDir(err) {
				continue // gone, replaced, or not readable: skipped as walkDir skips it
			}
			return &fs.PathError{Op: "open", Path: p, Err: err}
		}
		err = r.sweepOpenDir(sub, p, n)
		syscall.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// sweepDirTempsByName is sweepDirTemps where openat2 is missing: a walk
// resolving every directory by its path, through os.Root.
func (r *Root) sweepDirTempsByName(dir string) (int, error) {
	n := 0
	err := r.walkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if absentOrOutside(err) {
				return nil
			}
			return err
		}
		if !isTempEntry(e) {
			return nil
		}
		if err := r.unlink(path); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// sweepIncoming removes the blob downloads that writers which crashed
// left in the incoming directory. Same rule as sweepTemps.
func (r *Root) sweepIncoming() (int, error) {
	entries, err := r.readDir(r.incomingDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if isTempEntry(e) {
			if err := r.unlink(filepath.Join(r.incomingDir(), e.Name())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// sweepCatalogTemps removes the temporary files of _catalog writers that
// crashed: those in the v2 directory itself, and those of the catalog
// page, written with _catalog, in the root directory (only the page's:
// anything else there is the administrator's) and of its sections in the
// state directory. Same rule as sweepTemps.
func (r *Root) sweepCatalogTemps() (int, error) {
	n := 0
	for _, dir := range []struct {
		path string
		ours func(name string) bool
	}{
		{r.v2Dir(), func(string) bool { return true }},
		{r.dir, func(name string) bool { return strings.TrimRight(name, "0123456789") == "."+pageFile }},
		{filepath.Join(r.dir, stateDir), func(name string) bool {
			return strings.TrimRight(name, "0123456789") == "."+pageSectionsFile
		}},
	} {
		entries, err := r.readDir(dir.path)
		if err != nil {
			return n, err
		}
		for _, e := range entries {
			if isTempEntry(e) && dir.ours(e.Name()) {
				if err := r.unlink(filepath.Join(dir.path, e.Name())); err != nil {
					return n, err
				}
				n++
			}
		}
	}
	return n, nil
}

// isTempEntry matches what sweepTemps removes: temporary regular files,
// and the temporary symlinks of nginx's tag links.
func isTempEntry(e fs.DirEntry) bool {
	return (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) && isTempName(e.Name())
}

// sweepEmptyDirs removes the empty directories under v2 that are no
// repository: what a remover killed between emptying a repository and
// removing its directory leaves, which no later removal would find (a
// directory without blobs/, manifests/, tags/ or referrers/ is not a
// repository). Parents left empty go too. It never enters a repository's
// own directories. Same rule as sweepTemps: only call it holding the tree
// lock exclusively, or an export may be about to fill a new directory.
func (r *Root) sweepEmptyDirs() (int, error) {
	n := 0
	var sweep func(dir, repo string) (bool, error)
	sweep = func(dir, repo string) (empty bool, err error) {
		entries, err := r.readDir(dir)
		if err != nil && repo != "" && isUnreadableDir(err) {
			return false, nil // verify names it; nothing of the tree is known there
		}
		if err != nil {
			return false, err
		}
		left := len(entries)
		for _, e := range entries {
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || layoutDirs[e.Name()] {
				continue
			}
			sub := filepath.Join(dir, e.Name())
			if ValidateRepo(path.Join(repo, e.Name())) != nil || r.isRepoDir(sub) {
				continue // no repository's path: not ours to remove
			}
			gone, err := sweep(sub, path.Join(repo, e.Name()))
			if err != nil {
				return false, err
			}
			if gone {
				left--
			}
		}
		if left > 0 || dir == r.v2Dir() {
			return false, nil
		}
		if err := r.removeDir(dir); err != nil {
			return false, err
		}
		n++
		return true, r.syncDir(filepath.Dir(dir))
	}
	_, err := sweep(r.v2Dir(), "")
	return n, err
}
