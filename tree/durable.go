package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// The durable steps. Every change this package makes to the tree goes
// through one of these functions, each a crash point (crashpoint.go), so
// that a crash test can stop a writer between any two of them. A test
// (durable_test.go) fails when another file of the package calls the
// operating system's (or an os.Root's) rename, link, symlink, remove,
// mkdir, chmod, create, sync or flock itself.
//
// Every path below the root is resolved inside the tree (confine.go): a
// step never follows a symlink out of the root, and a removal never
// follows the entry it removes. Only the root directory and those above
// it, which Init may have to make, are made by name.

// makeDir creates one directory with dirMode, whatever the umask.
func (r *Root) makeDir(dir string) error {
	crashPoint(stepMkdir, dir)
	if !r.inTree(dir) {
		// The root itself or above: the administrator's --root.
		if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return os.Chmod(dir, dirMode)
	}
	err := r.in("mkdir", dir, func(root *os.Root, name string) error { return root.Mkdir(name, dirMode) })
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return r.in("chmod", dir, func(root *os.Root, name string) error { return root.Chmod(name, dirMode) })
}

// pendingFile is a file being written under a temporary name in the
// directory of its final path: renameio's dot name ending in digits,
// which no server serves and isTempName recognises. The directory is
// opened once, inside the tree, as an os.Root of its own, and the
// temporary file is created, renamed into place and the directory synced
// through that descriptor: between creating and publishing no path is
// resolved again, so nothing a symlink planted meanwhile names is
// written.
type pendingFile struct {
	*renameio.PendingFile
	dir  *os.Root // the directory of path
	path string   // the final name, absolute
}

// pendingFile starts an atomic write of path, making its directory if
// needed.
func (r *Root) pendingFile(path string) (*pendingFile, error) {
	dirPath := filepath.Dir(path)
	if err := r.mkdirAll(dirPath); err != nil {
		return nil, err
	}
	var dir *os.Root
	if err := r.in("open", dirPath, func(root *os.Root, name string) (err error) {
		dir, err = root.OpenRoot(name)
		return err
	}); err != nil {
		return nil, err
	}
	f, err := renameio.NewPendingFile(filepath.Base(path),
		renameio.WithRoot(dir),
		renameio.WithStaticPermissions(fileMode))
	if err != nil {
		dir.Close()
		return nil, err
	}
	return &pendingFile{PendingFile: f, dir: dir, path: path}, nil
}

// Cleanup removes the temporary file unless it was renamed into place,
// and releases the directory. It is for deferring.
func (f *pendingFile) Cleanup() {
	_ = f.PendingFile.Cleanup()
	f.dir.Close()
}

// renamePending renames a pending file into place and makes the rename
// durable.
func (r *Root) renamePending(f *pendingFile) error {
	if err := r.renamePendingUnsynced(f); err != nil {
		return err
	}
	dir := filepath.Dir(f.path)
	crashPoint(stepSyncDir, dir)
	d, err := f.dir.OpenFile(".", dirFlags, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: cause(err)}
	}
	defer d.Close()
	return d.Sync()
}

// renamePendingUnsynced renames a pending file into place and leaves the
// sync of its directory to the caller, who syncs it (syncDir) before
// anything that names the file is published.
func (r *Root) renamePendingUnsynced(f *pendingFile) error {
	crashPoint(stepRename, f.path)
	if err := f.CloseAtomicallyReplace(); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) { // names relative to the directory
			return &os.LinkError{Op: "rename", Old: filepath.Join(filepath.Dir(f.path), le.Old), New: f.path, Err: cause(le.Err)}
		}
		return err
	}
	return nil
}

// renameEntry renames tmp, a temporary entry next to path, over path. The
// caller syncs the directory.
func (r *Root) renameEntry(tmp, path string) error {
	crashPoint(stepRename, path)
	return r.in2("rename", tmp, path, func(root *os.Root, oldname, newname string) error { return root.Rename(oldname, newname) })
}

// chmodEntry sets the permission bits of the file or directory at path
// to mode: a tree another writer left under a umask of 077 (0600 files,
// 0700 directories) becomes readable by the web server. A symlink at path
// is left alone, never what it names changed.
func (r *Root) chmodEntry(path string, mode fs.FileMode) error {
	fi, err := r.lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil // no step: nothing changes
	}
	crashPoint(stepChmod, path)
	return r.in("chmod", path, func(root *os.Root, name string) error { return root.Chmod(name, mode) })
}

// hardLink makes dst another name of src. A symlink at src is linked as
// itself, never followed.
func (r *Root) hardLink(src, dst string) error {
	crashPoint(stepLink, dst)
	return r.in2("link", src, dst, func(root *os.Root, oldname, newname string) error { return root.Link(oldname, newname) })
}

// makeSymlink creates a symlink at path to target.
func (r *Root) makeSymlink(target, path string) error {
	crashPoint(stepSymlink, path)
	return r.in2("symlink", target, path, func(root *os.Root, oldname, newname string) error { return root.Symlink(oldname, newname) })
}

// unlink removes the file or symlink at path — a symlink itself, never
// what it names; a missing one is not an error, and takes no step. A path
// whose directory leads outside the tree is: nothing out there is
// removed. The caller syncs the directory when the removal must last.
func (r *Root) unlink(path string) error {
	switch _, err := r.lstat(path); {
	case errors.Is(err, ErrOutsideRoot):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return nil // no step: nothing changes
	}
	crashPoint(stepUnlink, path)
	err := r.remove(path, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// removeDir removes the empty directory dir (a symlink there: the link);
// a missing one is not an error.
func (r *Root) removeDir(dir string) error {
	crashPoint(stepRmdir, dir)
	err := r.remove(dir, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// remove removes the entry at path, a file, a symlink or an empty
// directory, as os.Root's Remove does, trying rmdir first when dir says
// it should be a directory. Its directory is resolved with one openat2
// rather than os.Root's open and close of every directory on the way (a
// collection removes tens of thousands of entries); the entry itself is
// never followed.
func (r *Root) remove(path string, dir bool) error {
	return r.at("remove", path, func(t *dirHandle, name string) error {
		parent, base, err := t.openParent(name)
		if err == errNoOpenat2 {
			root, err := t.os()
			if err != nil {
				return err
			}
			return root.Remove(name)
		}
		if err != nil {
			return err
		}
		defer syscall.Close(parent)
		at := func(flags int) error {
			return ignoringEINTR(func() error { return unix.Unlinkat(parent, base, flags) })
		}
		if dir {
			if err := at(unix.AT_REMOVEDIR); err != syscall.ENOTDIR {
				return err
			}
			return at(0) // not a directory: a file or a link
		}
		err = at(0)
		if err == syscall.EISDIR || err == syscall.EPERM {
			// A directory, perhaps (unlink(2) of one is EISDIR on Linux,
			// EPERM by POSIX): os.Root's answer is rmdir's, unless that
			// says it is none.
			if err2 := at(unix.AT_REMOVEDIR); err2 != syscall.ENOTDIR {
				return err2
			}
		}
		return err
	})
}

// removeTree removes dir and everything below it, one entry at a time and
// each a step of its own, files before the directory that holds them. It
// follows no symlink: a link is removed, not what it names — dir itself
// included. A missing dir is not an error.
func (r *Root) removeTree(dir string) error {
	fi, err := r.lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return r.unlink(dir)
	}
	entries, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			err = r.removeTree(p)
		} else {
			err = r.unlink(p)
		}
		if err != nil {
			return err
		}
	}
	return r.removeDir(dir)
}

// heldDir is a directory of the tree opened once for a run of steps on
// its entries: each step resolves one name in it, never the directory's
// path from the root again, and is the same crash point as the step by
// path. It is opened without following a link at its own name (holdDir).
type heldDir struct {
	r    *Root
	fd   int
	path string
}

// holdDir opens the directory at path, resolved inside the tree, for
// steps on its entries. A link there, anything but a directory, a path
// leading out of the tree, a missing one and a system without openat2
// are errors: the caller takes its steps by path, which say what each
// of these means.
func (r *Root) holdDir(path string) (*heldDir, error) {
	h := &heldDir{r: r, fd: -1, path: path}
	err := r.at("open", path, func(t *dirHandle, name string) (err error) {
		h.fd, err = t.openat2(name, dirFlags|unix.O_NOFOLLOW)
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func (h *heldDir) close() { syscall.Close(h.fd) }

// unlink is Root.unlink of h's entry name: a missing one is not an
// error, and takes no step; the entry is never followed.
func (h *heldDir) unlink(name string) error {
	p := filepath.Join(h.path, name)
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(h.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no step: nothing changes
	}
	if err != nil {
		return &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	crashPoint(stepUnlink, p)
	err = ignoringEINTR(func() error { return unix.Unlinkat(h.fd, name, 0) })
	if err == syscall.EISDIR || err == syscall.EPERM {
		// A directory, as Root.unlink's os.Root would remove it.
		if err2 := ignoringEINTR(func() error { return unix.Unlinkat(h.fd, name, unix.AT_REMOVEDIR) }); err2 != syscall.ENOTDIR {
			err = err2
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &fs.PathError{Op: "remove", Path: p, Err: err}
	}
	return nil
}

// sync is Root.syncDir of h.
func (h *heldDir) sync() error {
	crashPoint(stepSyncDir, h.path)
	if err := ignoringEINTR(func() error { return syscall.Fsync(h.fd) }); err != nil {
		return &fs.PathError{Op: "sync", Path: h.path, Err: err}
	}
	return nil
}

// removeAll is Root.removeTree of h, in the same steps: its entries in
// lexical order, files resolved in h, a directory among them by its
// path, and then h's directory itself.
func (h *heldDir) removeAll() error {
	entries, err := readDirents(h.fd, h.path, h.r)
	var re *readError
	if errors.As(err, &re) {
		return &fs.PathError{Op: "readdirent", Path: h.path, Err: re.err}
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range entries {
		if e.IsDir() {
			err = h.r.removeTree(filepath.Join(h.path, e.Name()))
		} else {
			err = h.unlink(e.Name())
		}
		if err != nil {
			return err
		}
	}
	return h.r.removeDir(h.path)
}

// syncDir makes renames, links and removals in dir survive a crash;
// renameio syncs the file but not its directory entry.
func (r *Root) syncDir(dir string) error {
	crashPoint(stepSyncDir, dir)
	var fd int
	if err := r.at("open", dir, func(t *dirHandle, name string) (err error) {
		fd, err = t.openDirectory(name)
		return err
	}); err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := ignoringEINTR(func() error { return syscall.Fsync(fd) }); err != nil {
		return &fs.PathError{Op: "sync", Path: dir, Err: err}
	}
	return nil
}

// lockFile takes a flock on path, creating the file. how is LOCK_SH or
// LOCK_EX, optionally with LOCK_NB; with LOCK_NB a held lock returns
// (nil, nil). Otherwise a lock another process holds is waited for as
// r's waits say; what names it in messages ("the tree", "blob sha256:…").
func (r *Root) lockFile(path string, how int, what string) (*Lock, error) {
	if err := r.mkdirInTree(filepath.Dir(path)); err != nil {
		return nil, err
	}
	crashPoint(stepLock, path)
	// Never read, only locked, and flock(2) holds on any file; opened
	// without blocking, as everything of the tree (regular.go).
	var f *os.File
	err := r.in("open", path, func(root *os.Root, name string) (err error) {
		f, err = root.OpenFile(name, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOCTTY, fileMode)
		return err
	})
	if err != nil {
		return nil, err // *PathError: names the lock file and the cause
	}
	try := func() (bool, error) {
		held, err := flock(f, how|unix.LOCK_NB)
		if err != nil {
			return false, fmt.Errorf("lock %s: %w", path, err)
		}
		return held, nil
	}
	held, err := try()
	if err == nil && !held && how&unix.LOCK_NB == 0 {
		err = r.waits.wait(try, what+lockHolders(f))
		held = err == nil
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if !held {
		f.Close()
		return nil, nil
	}
	r.hold()
	return &Lock{f: f, r: r}, nil
}

// stageFile creates a new temporary file next to path, named as
// createTemp names them, for a blob being downloaded into the incoming
// directory. It takes no step: nothing names the file until renameEntry
// puts it in place. The file is open for reading too: a blob a
// FileCopier put there is hashed from it.
func (r *Root) stageFile(path string) (*os.File, string, error) {
	var f *os.File
	tmp, err := createTemp(path, func(tmp string) error {
		return r.in("create", tmp, func(root *os.Root, name string) (err error) {
			f, err = root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
			return err
		})
	})
	if err != nil {
		return nil, "", err
	}
	if err := f.Chmod(fileMode); err != nil { // whatever the umask
		f.Close()
		r.discardTemp(tmp)
		return nil, "", err
	}
	return f, tmp, nil
}

// syncAndClose makes f's bytes durable before it is renamed into place.
func syncAndClose(f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// discardTemp removes a temporary file of ours that was never put in
// place. It takes no step: nothing in the tree names the file.
func (r *Root) discardTemp(tmp string) {
	_ = r.in("remove", tmp, func(root *os.Root, name string) error { return root.Remove(name) })
}

// flock locks f, retrying when a signal interrupts the wait. It reports
// false when how has LOCK_NB and another holder has the lock.
func flock(f *os.File, how int) (bool, error) {
	for {
		err := unix.Flock(int(f.Fd()), how)
		switch {
		case err == nil:
			return true, nil
		case err == syscall.EINTR:
			continue
		case err == unix.EWOULDBLOCK && how&unix.LOCK_NB != 0:
			return false, nil
		default:
			return false, err
		}
	}
}
