package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// Confinement. The tree is served and collected by programs that trust
// nothing in it: a symlink planted anywhere below the root — a blob, a
// manifest's index.json, a tags/list, a type map, a whole repository or
// its blobs/ directory — must never make a server send, or a collector
// read or remove, a file outside the root. So this package resolves every
// path of the tree (each path the functions of root.go name) relative to
// one descriptor of the root directory, an os.Root, one component at a
// time: a symlink that stays inside the root is followed, one that leaves
// it (by "..", or an absolute target) is an error, ErrOutsideRoot, and
// nothing outside is opened, listed, followed or removed. Removals never
// follow the last component: a planted link is removed, not what it
// names.
//
// The root directory itself, and the path leading to it, are the
// administrator's --root and are trusted: the root is opened by name, and
// the directories above it are made by name (Init on a fresh root).
//
// No descriptor of the root is kept between operations, except while
// this Root holds a lock of the tree (a writer's or a collector's run):
// each operation opens the root, resolves its path inside it and closes
// it again. A descriptor kept for good would keep the file system busy
// (umount fails) and keep serving a root directory that has been replaced
// (a restored tree); and a server may be started before the tree exists.

// ErrOutsideRoot reports a path of the tree that would leave the root: a
// symlink in the tree pointing outside it, or an absolute one, on the way.
// It is also fs.ErrNotExist: for every reader, what lies outside the
// tree is not in the tree, so servers answer it as a missing file.
var ErrOutsideRoot error = outsideError{}

type outsideError struct{}

func (outsideError) Error() string { return "symlink leads outside the tree" }

func (outsideError) Is(target error) bool { return target == fs.ErrNotExist }

// tree is the open root directory.
type tree struct {
	root *os.Root
	kept bool // the descriptor kept while a lock is held: not closed after use
}

// rootState is what a Root keeps open while it holds locks.
type rootState struct {
	mu   sync.Mutex // serialises hold and let
	held int        // locks of the tree held through this Root
	kept atomic.Pointer[tree]
}

// escapes is os.Root's error for a path that leaves it, learnt from the
// first root opened (os does not export it).
var (
	escapesOnce sync.Once
	escapes     error
)

// tree returns the root directory, open: the one kept while a lock is
// held, or a new descriptor that done closes.
func (r *Root) tree() (*tree, error) {
	if t := r.state.kept.Load(); t != nil {
		return t, nil
	}
	return r.openTree()
}

func (r *Root) openTree() (*tree, error) {
	root, err := os.OpenRoot(r.dir)
	if err != nil {
		return nil, err
	}
	escapesOnce.Do(func() {
		// ".." out of the root is refused before any system call.
		_, err := root.Lstat("..")
		escapes = errors.Unwrap(err)
	})
	return &tree{root: root}, nil
}

// done releases t after an operation.
func (t *tree) done() {
	if !t.kept {
		t.root.Close()
	}
}

// hold keeps the root open until the matching let: a lock of the tree
// was taken, and the operations of its holder follow.
func (r *Root) hold() {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	r.state.held++
	if r.state.held == 1 {
		if t, err := r.openTree(); err == nil {
			t.kept = true
			r.state.kept.Store(t)
		} // else: each operation opens the root itself
	}
}

// let undoes a hold; with the last, the root is closed.
func (r *Root) let() {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	r.state.held--
	if r.state.held == 0 {
		if t := r.state.kept.Swap(nil); t != nil {
			t.root.Close() // os.Root lets operations in flight finish first
		}
	}
}

// name is path relative to the root: "." for the root itself. Every path
// this package names is below the root; anything else is refused.
func (r *Root) name(path string) (string, error) {
	if path == r.dir {
		return ".", nil
	}
	prefix := r.dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	rel, ok := strings.CutPrefix(path, prefix)
	if !ok || rel == "" || filepath.Clean(rel) != rel || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("not a path of the tree %s", r.dir)
	}
	return rel, nil
}

// inTree reports whether path is below the root (not the root itself, nor
// above it): a path to resolve inside the tree.
func (r *Root) inTree(path string) bool {
	name, err := r.name(path)
	return err == nil && name != "."
}

// in runs op, one call of os.Root, on path's name in the tree, and
// returns its error as the path-based call would have: a *fs.PathError
// of op and path, the cause ErrOutsideRoot when the path leaves the tree.
func (r *Root) in(op, path string, do func(t *tree, name string) error) error {
	name, err := r.name(path)
	if err == nil {
		err = r.with(func(t *tree) error { return do(t, name) })
	}
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: cause(err)}
}

// in2 is in for the calls of two paths of the tree (rename, link). A
// symlink's target is no path of the tree: its name is the target itself.
func (r *Root) in2(op, oldpath, newpath string, do func(t *tree, oldname, newname string) error) error {
	oldname, err := r.name(oldpath)
	if op == "symlink" {
		oldname, err = oldpath, nil
	}
	newname, err2 := r.name(newpath)
	if err == nil {
		err = err2
	}
	if err == nil {
		err = r.with(func(t *tree) error { return do(t, oldname, newname) })
	}
	if err == nil {
		return nil
	}
	return &os.LinkError{Op: op, Old: oldpath, New: newpath, Err: cause(err)}
}

// with runs do on the open root. The kept root may be closed by the last
// unlock while do runs outside any lock: then do runs again on a root of
// its own.
func (r *Root) with(do func(t *tree) error) error {
	t, err := r.tree()
	if err != nil {
		return err
	}
	err = do(t)
	t.done()
	if t.kept && errors.Is(err, os.ErrClosed) {
		if t, err = r.openTree(); err != nil {
			return err
		}
		err = do(t)
		t.done()
	}
	return err
}

// cause is the system's error inside err, ErrOutsideRoot for a path that
// leaves the root.
func cause(err error) error {
	if isEscape(err) {
		return ErrOutsideRoot
	}
	for {
		switch e := err.(type) {
		case *fs.PathError:
			err = e.Err
		case *os.LinkError:
			err = e.Err
		case *os.SyscallError:
			err = e.Err
		default:
			return err
		}
	}
}

func isEscape(err error) bool {
	return err != nil && (errors.Is(err, ErrOutsideRoot) || (escapes != nil && errors.Is(err, escapes)))
}

// The reads. Each resolves its path inside the tree; none follows a
// symlink out of it.

// open opens the file at path for reading. The file outlives the root
// descriptor it was opened through.
func (r *Root) open(path string) (*os.File, error) {
	var f *os.File
	err := r.in("open", path, func(t *tree, name string) (err error) {
		f, err = t.root.Open(name)
		return err
	})
	return f, err
}

// stat describes the file at path, following symlinks inside the tree.
func (r *Root) stat(path string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := r.in("stat", path, func(t *tree, name string) (err error) {
		fi, err = t.root.Stat(name)
		return err
	})
	return fi, err
}

// lstat describes the entry at path: a symlink as itself.
func (r *Root) lstat(path string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := r.in("lstat", path, func(t *tree, name string) (err error) {
		fi, err = t.root.Lstat(name)
		return err
	})
	return fi, err
}

// readlink returns the target of the symlink at path.
func (r *Root) readlink(path string) (string, error) {
	var target string
	err := r.in("readlink", path, func(t *tree, name string) (err error) {
		target, err = t.root.Readlink(name)
		return err
	})
	return target, err
}

// readDir lists the directory at path, sorted by name, as os.ReadDir.
func (r *Root) readDir(path string) ([]fs.DirEntry, error) {
	f, err := r.open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	entries, err := f.ReadDir(-1)
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, err
}

// isFile reports whether path is a regular file of the tree.
func (r *Root) isFile(path string) bool {
	fi, err := r.stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// isDir reports whether path is a directory of the tree.
func (r *Root) isDir(path string) bool {
	fi, err := r.stat(path)
	return err == nil && fi.IsDir()
}

// statT is the system's stat of path, following symlinks inside the tree
// when follow is set.
func (r *Root) statT(path string, follow bool) (*syscall.Stat_t, error) {
	stat := r.lstat
	if follow {
		stat = r.stat
	}
	fi, err := stat(path)
	if err != nil {
		return nil, err
	}
	return fi.Sys().(*syscall.Stat_t), nil
}

// walkDir walks the tree at dir as filepath.WalkDir does — parents
// before their entries, in lexical order, dir itself not followed if it
// is a symlink, fs.SkipDir and fs.SkipAll obeyed — reading every
// directory inside the tree. Symlinks are reported, never followed.
func (r *Root) walkDir(dir string, fn fs.WalkDirFunc) error {
	fi, err := r.lstat(dir)
	if err != nil {
		err = fn(dir, nil, err)
	} else {
		err = r.walk(dir, fs.FileInfoToDirEntry(fi), fn)
	}
	if err == fs.SkipDir || err == fs.SkipAll {
		return nil
	}
	return err
}

func (r *Root) walk(path string, d fs.DirEntry, fn fs.WalkDirFunc) error {
	if err := fn(path, d, nil); err != nil || !d.IsDir() {
		if err == fs.SkipDir && d.IsDir() {
			err = nil
		}
		return err
	}
	entries, err := r.readDir(path)
	if err != nil {
		if err = fn(path, d, err); err != nil {
			if err == fs.SkipDir && d.IsDir() {
				err = nil
			}
			return err
		}
	}
	for _, e := range entries {
		if err := r.walk(filepath.Join(path, e.Name()), e, fn); err != nil {
			if err == fs.SkipDir {
				break
			}
			return err
		}
	}
	return nil
}

// OpenInTree opens the file at path — one of the tree's paths as this
// package names them (PingPath, CatalogPath, TagsListPath, ManifestPath,
// …) — for reading, resolved inside the tree: a symlink on the way that
// leads out of the root is ErrOutsideRoot, which is fs.ErrNotExist. A
// server opens every file it serves with it (or with OpenBlob), so that
// it never sends a byte from outside the root.
func (r *Root) OpenInTree(path string) (*os.File, error) { return r.open(path) }

// StatInTree describes the file at path, resolved inside the tree as
// OpenInTree resolves it.
func (r *Root) StatInTree(path string) (fs.FileInfo, error) { return r.stat(path) }

// OutsideLink is a symlink in the tree that leads outside the root: no
// server serves through it, and no command reads, follows or removes
// through it.
type OutsideLink struct {
	Path   string // the symlink, absolute
	Target string // its content
}

func (l OutsideLink) String() string { return l.Path + " -> " + l.Target }

// outsideLink reports the symlink at path if it leads outside the tree.
func (r *Root) outsideLink(path string) (OutsideLink, bool) {
	if _, err := r.stat(path); !errors.Is(err, ErrOutsideRoot) {
		return OutsideLink{}, false
	}
	target, _ := r.readlink(path)
	return OutsideLink{Path: path, Target: target}, true
}

// outsideRepoDir finds a symlink leading outside the tree among the
// directories of repo's name, the outermost first: a link there takes the
// whole repository out of the tree.
func (r *Root) outsideRepoDir(repo string) (OutsideLink, bool) {
	p := r.V2Dir()
	for c := range strings.SplitSeq(repo, "/") {
		p = filepath.Join(p, c)
		fi, err := r.lstat(p)
		if err != nil {
			return OutsideLink{}, false
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return r.outsideLink(p)
		}
	}
	return OutsideLink{}, false
}

// OutsideLinks lists every symlink that leads outside the root, anywhere
// under v2/ and the state directory, or, for a repository, under its
// directory and on the path to it: what verify reports. It reads no
// directory through a symlink.
func (r *Root) OutsideLinks(repo string) ([]OutsideLink, error) {
	dirs := []string{r.V2Dir(), filepath.Join(r.dir, stateDir)}
	var links []OutsideLink
	if repo != "" {
		if err := ValidateRepo(repo); err != nil {
			return nil, err
		}
		if l, ok := r.outsideRepoDir(repo); ok {
			return []OutsideLink{l}, nil
		}
		dirs = []string{r.RepoDir(repo)}
	}
	for _, dir := range dirs {
		err := r.walkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // nothing there, or removed meanwhile
				}
				return err
			}
			if e.Type()&fs.ModeSymlink != 0 {
				if l, ok := r.outsideLink(path); ok {
					links = append(links, l)
				}
			}
			return nil
		})
		if err != nil {
			return links, err
		}
	}
	return links, nil
}

// OutsideLayout lists the directories of repo's layout — the repository
// directory, blobs/, manifests/ and nginx's link directories in it,
// tags/ and referrers/ — that are symlinks leading outside the root. A
// collector leaves such a repository alone: what it stores is not in the
// tree. Files that are such links (a blob, a type map, an index.json) are
// not listed here: reading them fails with ErrOutsideRoot, and listings
// skip them. It costs a directory read and two lstats.
func (r *Root) OutsideLayout(repo string) ([]OutsideLink, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	dir := r.RepoDir(repo)
	entries, err := r.readDir(dir)
	if errors.Is(err, ErrOutsideRoot) {
		if l, ok := r.outsideRepoDir(repo); ok {
			return []OutsideLink{l}, nil
		}
		return []OutsideLink{{Path: dir}}, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var links []OutsideLink
	for _, e := range entries {
		if layoutDirs[e.Name()] && e.Type()&fs.ModeSymlink != 0 {
			if l, ok := r.outsideLink(filepath.Join(dir, e.Name())); ok {
				links = append(links, l)
			}
		}
	}
	if len(links) > 0 {
		return links, nil
	}
	for _, sub := range []string{tagLinksDir, fallbackLinksDir} {
		p := filepath.Join(r.manifestsDir(repo), sub)
		if fi, err := r.lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			if l, ok := r.outsideLink(p); ok {
				links = append(links, l)
			}
		}
	}
	return links, nil
}
