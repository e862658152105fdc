package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/image-serve/image-serve/distribution"
)

// storedRepositories lists every repository directory with a valid name,
// tagged or not, sorted. Unlike Repositories it includes repositories
// whose last tag is gone: a collector must find those to empty them.
func (r *Root) storedRepositories() ([]string, error) {
	dirs, _, err := r.repoDirs()
	if err != nil {
		return nil, err
	}
	repos := dirs[:0]
	for _, repo := range dirs {
		if ValidateRepo(repo) == nil {
			repos = append(repos, repo)
		}
	}
	sort.Strings(repos)
	return repos, nil
}

// readCatalog returns the repositories _catalog names.
func (r *Root) readCatalog() ([]string, error) {
	b, err := r.readSmall(r.catalogPath(), maxListSize)
	if err != nil {
		return nil, err
	}
	c, err := distribution.ParseCatalog(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", r.catalogPath(), err)
	}
	return c.Repositories, nil
}

// removeRepo removes repository repo from the tree if it holds nothing:
// no manifest directory or type map and no blob (dot files, such as a
// TripleO manifests/.htaccess or stale temporary files, do not count). It
// reports whether the repository is gone. Empty parent directories go
// too, up to v2, unless they are repositories themselves. Only call it
// holding the tree lock exclusively: an export may be about to fill it.
func (r *Root) removeRepo(repo string) (bool, error) {
	if err := ValidateRepo(repo); err != nil {
		return false, err
	}
	dir := r.repoDir(repo)
	for _, sub := range []string{manifestsDir, blobsDir} {
		if empty, err := r.onlyDotEntries(filepath.Join(dir, sub)); err != nil || !empty {
			return false, err
		}
	}
	// tags/ first: without tags/list nobody lists the repository, and a
	// crash part way leaves a repository the next collection finds again.
	// referrers/ next: with no manifest left, its indexes list nothing
	// that exists.
	for _, sub := range []string{tagsDir, referrersDir, manifestsDir, blobsDir} {
		if err := r.removeTree(filepath.Join(dir, sub)); err != nil {
			return false, fmt.Errorf("repository %s: %w", repo, err)
		}
	}
	_ = r.unlink(r.repoLockPath(repo)) // nobody holds it under the exclusive tree lock
	d := dir
	for ; d != r.v2Dir() && !r.isRepoDir(d); d = filepath.Dir(d) {
		if err := r.removeDir(d); err != nil {
			break // not empty: a nested repository, or something of the admin's
		}
	}
	for ; ; d = filepath.Dir(d) {
		// A nested repository removed meanwhile may have taken d along.
		err := r.syncDir(d)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || d == r.v2Dir() {
			return true, fmt.Errorf("repository %s: %w", repo, err)
		}
	}
}

// onlyDotEntries reports whether dir is missing or holds nothing but dot
// files. A dir that is a symlink holds nothing of the tree: removing the
// repository removes the link.
func (r *Root) onlyDotEntries(dir string) (bool, error) {
	if fi, err := r.lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return true, nil
	}
	entries, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			return false, nil
		}
	}
	return true, nil
}

// layoutDirs are the directories of a repository; anything else below a
// repository directory is a nested repository.
var layoutDirs = map[string]bool{blobsDir: true, manifestsDir: true, tagsDir: true, referrersDir: true}

// repoDirs lists every repository directory of the tree: a directory with
// any of blobs/, manifests/, tags/ or referrers/, published or still being
// written. Each directory is read once, and what its entries are tells a
// repository: no stat of its layout directories, no symlink descended, no
// directory descended whose path is no repository name's beginning (the
// distribution grammar bounds a name to 255 characters, so a directory
// deeper than the system's path limit is never reached). A directory
// below v2 that cannot be read is skipped — one directory, not the whole
// tree, is then unknown — and listed in unreadable.
func (r *Root) repoDirs() (repos, unreadable []string, err error) {
	var visit func(dir, repo string) error
	visit = func(dir, repo string) error {
		entries, err := r.readDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while we walked
		}
		if err != nil && repo != "" && isUnreadableDir(err) {
			unreadable = append(unreadable, dir)
			return nil
		}
		if err != nil {
			return err
		}
		if repo != "" && slices.ContainsFunc(entries, func(e fs.DirEntry) bool {
			return layoutDirs[e.Name()] && (e.IsDir() || e.Type()&fs.ModeSymlink != 0 && r.isDir(filepath.Join(dir, e.Name())))
		}) {
			repos = append(repos, repo)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || layoutDirs[name] || strings.HasPrefix(name, ".") {
				continue // a symlink to a directory is no repository: never followed
			}
			if ValidateRepo(path.Join(repo, name)) != nil {
				continue // nothing below is a repository
			}
			if err := visit(filepath.Join(dir, name), path.Join(repo, name)); err != nil {
				return err
			}
		}
		return nil
	}
	err = visit(r.v2Dir(), "")
	return repos, unreadable, err
}

// unreadableDirs lists the directories below v2 that cannot be read
// (isUnreadableDir), which every walk of the tree skips: verify names
// each, since what they hold is unknown to every command.
func (r *Root) unreadableDirs() ([]string, error) {
	var skipped []string
	err := r.walkDirSkipping(r.v2Dir(), func(_ string, _ fs.DirEntry, err error) error {
		if err != nil && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}, &skipped)
	return skipped, err
}

// isRepoDir reports whether dir is a repository's directory.
func (r *Root) isRepoDir(dir string) bool {
	for d := range layoutDirs {
		if r.isDir(filepath.Join(dir, d)) {
			return true
		}
	}
	return false
}

// repositories lists the published repositories, those with a tags/list,
// sorted: the content of _catalog.
func (r *Root) repositories() ([]string, error) {
	dirs, _, err := r.repoDirs()
	if err != nil {
		return nil, err
	}
	repos := []string{}
	for _, repo := range dirs {
		if ValidateRepo(repo) == nil && r.isFile(r.tagsListPath(repo)) {
			repos = append(repos, repo)
		}
	}
	sort.Strings(repos)
	return repos, nil
}

// hasManifests reports whether repo has a manifests directory: the test
// the static servers make (Apache "-d", nginx "if (-d …)") before they
// answer a referrers request with the empty index rather than
// NAME_UNKNOWN. A repository exists for the referrers API as long as it
// may serve a manifest by digest.
func (r *Root) hasManifests(repo string) bool {
	return r.isDir(r.manifestsDir(repo))
}

// catalogPath answers GET /v2/_catalog.
func (r *Root) catalogPath() string { return filepath.Join(r.v2Dir(), catalogFile) }

// repoDir is the directory of repository repo.
func (r *Root) repoDir(repo string) string {
	return filepath.Join(r.v2Dir(), filepath.FromSlash(repo))
}

// refreshCatalogFor brings _catalog in step for repos alone: when it
// lists each of them exactly when it is a published repository (one with
// a tags/list), nothing is read of the other repositories for it and it
// is not written; otherwise _catalog is rewritten from the disk, as
// RefreshCatalog does. Writers that changed only repos call it, so that a
// tag update does not list a thousand repositories for _catalog; it does
// not set right an entry of another repository a crashed writer left out
// of step (a collection's RefreshCatalog does). The catalog page, which
// shows every tag, is rendered again either way, in the same hold of the
// catalog lock, and written when it changed (catalogpage.go).
func (r *Root) refreshCatalogFor(repos ...string) error {
	l, err := r.lockCatalog()
	if err != nil {
		return err
	}
	defer l.Unlock()
	listed, err := r.readCatalog()
	if err == nil && !slices.ContainsFunc(repos, func(repo string) bool {
		return slices.Contains(listed, repo) != r.isPublished(repo)
	}) {
		return r.writePageFor(repos, false)
	}
	return r.rewriteCatalog(repos, false)
}

// isPublished reports whether Repositories lists repo, looking at repo
// alone: a valid name whose every component is a directory (no symlink,
// as the listing never follows one), with a layout directory and a
// tags/list.
func (r *Root) isPublished(repo string) bool {
	if ValidateRepo(repo) != nil || r.checkRepoPath(repo) != nil {
		return false
	}
	return r.isRepoDir(r.repoDir(repo)) && r.isFile(r.tagsListPath(repo))
}

// ErrRepoThroughLink is the cause of a refusal to write a repository
// whose path leads through a symlink in the tree: written through the
// link, the files would land in another repository (its tags/list naming
// the link), and the listing, which never follows a link, would not show
// it anyway.
var ErrRepoThroughLink = errors.New("a component of the repository's path is a symlink")

// checkRepoPath refuses repo when a component of its path exists and is
// not a directory itself (a symlink, a file); components not yet made
// are fine, for the writer to make.
func (r *Root) checkRepoPath(repo string) error {
	dir := r.v2Dir()
	for _, c := range strings.Split(repo, "/") {
		dir = filepath.Join(dir, c)
		fi, err := r.lstat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			if _, err := r.stat(dir); errors.Is(err, ErrOutsideRoot) {
				return err // leading out of the tree: that is the refusal
			}
			return &fs.PathError{Op: "write", Path: dir, Err: ErrRepoThroughLink}
		case !fi.IsDir():
			return &fs.PathError{Op: "write", Path: dir, Err: syscall.ENOTDIR}
		}
	}
	return nil
}

// refreshCatalog rewrites _catalog and the catalog page from the
// repositories on disk.
func (r *Root) refreshCatalog() error {
	l, err := r.lockCatalog()
	if err != nil {
		return err
	}
	defer l.Unlock()
	return r.rewriteCatalog(nil, true)
}

// rewriteCatalog is RefreshCatalog for a caller holding the catalog lock:
// _catalog, then the catalog page (writePageFor, with repos and all),
// each written when it changed. _catalog goes first, as every derived
// file goes before what shows it.
func (r *Root) rewriteCatalog(repos []string, all bool) error {
	published, err := r.repositories()
	if err != nil {
		return err
	}
	if err := r.writeIfChanged(r.catalogPath(), distribution.Catalog{Repositories: published}.Marshal()); err != nil {
		return err
	}
	return r.writePageFor(repos, all)
}
