package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"syscall"

	"github.com/google/renameio/v2"
)

// The durable steps. Every change this package makes to the tree goes
// through one of these functions, each a crash point (crashpoint.go), so
// that a crash test can stop a writer between any two of them. A test
// (durable_test.go) fails when another file of the package calls the
// operating system's rename, link, symlink, remove, mkdir, sync or flock
// itself.

// makeDir creates one directory with dirMode, whatever the umask.
func makeDir(dir string) error {
	crashPoint(stepMkdir, dir)
	if err := os.Mkdir(dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return os.Chmod(dir, dirMode)
}

// renamePending renames a pending file into place at path and makes the
// rename durable.
func renamePending(f *renameio.PendingFile, path string) error {
	crashPoint(stepRename, path)
	if err := f.CloseAtomicallyReplace(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// renameEntry renames tmp, a temporary entry next to path, over path. The
// caller syncs the directory.
func renameEntry(tmp, path string) error {
	crashPoint(stepRename, path)
	return os.Rename(tmp, path)
}

// hardLink makes dst another name of src.
func hardLink(src, dst string) error {
	crashPoint(stepLink, dst)
	return os.Link(src, dst)
}

// makeSymlink creates a symlink at path to target.
func makeSymlink(target, path string) error {
	crashPoint(stepSymlink, path)
	return os.Symlink(target, path)
}

// unlink removes the file or symlink at path; a missing one is not an
// error, and takes no step. The caller syncs the directory when the
// removal must last.
func unlink(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil // no step: nothing changes
	}
	crashPoint(stepUnlink, path)
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// removeDir removes the empty directory dir; a missing one is not an
// error.
func removeDir(dir string) error {
	crashPoint(stepRmdir, dir)
	err := os.Remove(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// removeTree removes dir and everything below it, one entry at a time and
// each a step of its own, files before the directory that holds them. It
// follows no symlink: a link is removed, not what it names. A missing dir
// is not an error.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			err = removeTree(p)
		} else {
			err = unlink(p)
		}
		if err != nil {
			return err
		}
	}
	return removeDir(dir)
}

// syncDir makes renames, links and removals in dir survive a crash;
// renameio syncs the file but not its directory entry.
func syncDir(dir string) error {
	crashPoint(stepSyncDir, dir)
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockFile takes a flock on path, creating the file. how is LOCK_SH or
// LOCK_EX, optionally with LOCK_NB; with LOCK_NB a held lock returns
// (nil, nil). Otherwise a lock another process holds is waited for as w
// says; what names it in messages ("the tree", "blob sha256:…").
func lockFile(path string, how int, what string, w Waits) (*Lock, error) {
	if err := mkdirAll(filepath.Dir(path)); err != nil {
		return nil, err
	}
	crashPoint(stepLock, path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, err // *PathError: names the lock file and the cause
	}
	try := func() (bool, error) {
		held, err := flock(f, how|syscall.LOCK_NB)
		if err != nil {
			return false, fmt.Errorf("lock %s: %w", path, err)
		}
		return held, nil
	}
	held, err := try()
	if err == nil && !held && how&syscall.LOCK_NB == 0 {
		err = w.wait(try, what+lockHolders(f))
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
	return &Lock{f: f}, nil
}

// flock locks f, retrying when a signal interrupts the wait. It reports
// false when how has LOCK_NB and another holder has the lock.
func flock(f *os.File, how int) (bool, error) {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		switch {
		case err == nil:
			return true, nil
		case err == syscall.EINTR:
			continue
		case err == syscall.EWOULDBLOCK && how&syscall.LOCK_NB != 0:
			return false, nil
		default:
			return false, err
		}
	}
}
