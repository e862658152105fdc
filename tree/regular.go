package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Only regular files are read. Anyone who can write to the tree can plant
// a FIFO where a blob, a manifest's index.json, a type map or a listing
// belongs, and open(2) of a FIFO waits for a writer: in a tree, forever.
// A server thread and its descriptors would be lost with each request for
// it, and a collector holding the tree lock exclusively would hang every
// export with it. So every file of the tree that is read is opened here,
// by openRegular: without blocking (O_NONBLOCK), then fstat(2) on the
// descriptor it opened — not a stat of the name before, which another
// process could swap in between — and anything but a regular file is
// closed unread and refused with ErrNotRegular. Directories are opened
// with O_DIRECTORY (openDirectory), which refuses a FIFO without opening
// it.

// ErrNotRegular reports a file of the tree that is not a regular file: a
// FIFO, a socket, a device, or a directory where the layout keeps a file.
// Reads refuse it before reading a byte, with an *fs.PathError naming the
// path whose cause is a *NotRegularError. It is not fs.ErrNotExist:
// servers answer it as a missing file, as Apache and nginx do, but for
// the commands it is damage, which they report.
var ErrNotRegular = errors.New("not a regular file")

// NotRegularError is what stands where a file of the tree was read: its
// type. It matches ErrNotRegular.
type NotRegularError struct {
	Type fs.FileMode // the type bits (fs.ModeType) of the entry
}

func (e *NotRegularError) Error() string { return "not a regular file (" + typeName(e.Type) + ")" }

func (e *NotRegularError) Is(target error) bool { return target == ErrNotRegular }

// typeName names a file type as messages say it.
func typeName(t fs.FileMode) string {
	switch {
	case t == 0:
		return "regular file"
	case t&fs.ModeNamedPipe != 0:
		return "fifo"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "block device"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "unknown type"
}

// The flags every read opens with. readFlags open a file: O_NONBLOCK
// makes the open of a FIFO (or of a device waiting for a carrier) return
// at once, and a read of a regular file ignores it; O_NOCTTY keeps a
// terminal planted in the tree from becoming the process's controlling
// terminal. dirFlags open a directory, and refuse anything else (ENOTDIR)
// without opening it.
const (
	readFlags = syscall.O_RDONLY | syscall.O_NONBLOCK | syscall.O_NOCTTY
	dirFlags  = syscall.O_RDONLY | syscall.O_DIRECTORY
)

// openRegular opens the file at name, below the tree, for reading, and
// returns its descriptor and its fstat: the one way this package opens a
// file of the tree to read it. The open never blocks (readFlags), and
// anything but a regular file — a FIFO, a socket, a device, a directory —
// is closed before a byte is read and refused with a *NotRegularError.
// The descriptor keeps O_NONBLOCK, which reads of a regular file ignore.
func (t *dirHandle) openRegular(name string) (int, *statInfo, error) {
	fd, err := t.openat2(name, readFlags)
	if err == errNoOpenat2 {
		fd, err = t.osOpen(name, false)
	}
	if errors.Is(err, syscall.ENXIO) {
		// open(2) refuses a socket, and a device without its driver.
		return -1, nil, &NotRegularError{Type: t.typeOf(name)}
	}
	if err != nil {
		return -1, nil, err
	}
	st := &statInfo{name: filepath.Base(name)}
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st.sys) }); err != nil {
		syscall.Close(fd)
		return -1, nil, err
	}
	if m := st.Mode(); !m.IsRegular() {
		syscall.Close(fd)
		return -1, nil, &NotRegularError{Type: m.Type()}
	}
	return fd, st, nil
}

// openDirectory opens the directory at name, below the tree, for reading
// its entries or syncing it (dirFlags).
func (t *dirHandle) openDirectory(name string) (int, error) {
	fd, err := t.openat2(name, dirFlags)
	if err == errNoOpenat2 {
		fd, err = t.osOpen(name, true)
	}
	return fd, err
}

// osOpen opens name through the tree's os.Root, where openat2 is missing,
// with readFlags, or dirFlags for a directory, and returns a descriptor
// of its own.
func (t *dirHandle) osOpen(name string, dir bool) (int, error) {
	root, err := t.os()
	if err != nil {
		return -1, err
	}
	var f *os.File
	if dir {
		f, err = root.OpenFile(name, dirFlags, 0)
	} else {
		f, err = root.OpenFile(name, readFlags, 0)
	}
	if err != nil {
		return -1, err
	}
	defer f.Close()
	var fd int
	err = ignoringEINTR(func() (err error) {
		fd, err = unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// typeOf is the type of the entry at name, symlinks inside the tree
// followed, without opening it for reading; fs.ModeIrregular when it
// cannot be told.
func (t *dirHandle) typeOf(name string) fs.FileMode {
	fd, err := t.openat2(name, unix.O_PATH)
	if err == errNoOpenat2 {
		root, err := t.os()
		if err != nil {
			return fs.ModeIrregular
		}
		fi, err := root.Stat(name)
		if err != nil {
			return fs.ModeIrregular
		}
		return fi.Mode().Type()
	}
	if err != nil {
		return fs.ModeIrregular
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := ignoringEINTR(func() error { return syscall.Fstat(fd, &st) }); err != nil {
		return fs.ModeIrregular
	}
	return fileType(st.Mode)
}

// NotRegularFile is an entry of the tree that is neither a regular file,
// a directory nor a symlink: a FIFO, a socket or a device. The layout has
// none anywhere, and no command reads one.
type NotRegularFile struct {
	Path string
	Type fs.FileMode // the type bits (fs.ModeType)
}

// Err is the error a read of f gives: an *fs.PathError naming it, whose
// cause is a *NotRegularError.
func (f NotRegularFile) Err() error {
	return &fs.PathError{Op: "open", Path: f.Path, Err: &NotRegularError{Type: f.Type}}
}

// Message says what f is, without its path.
func (f NotRegularFile) Message() string { return (&NotRegularError{Type: f.Type}).Error() }

func (f NotRegularFile) String() string { return f.Path + ": " + f.Message() }

// notRegularEntry reports whether e is a FIFO, a socket or a device.
func notRegularEntry(e fs.DirEntry) bool {
	t := e.Type()
	return t != 0 && t&(fs.ModeDir|fs.ModeSymlink) == 0
}

// notRegularFiles lists every entry that is not a regular file, a
// directory or a symlink — a FIFO, a socket, a device — anywhere under
// v2/ and the state directory, or, for a repository, under its directory:
// what verify reports and verify --repair removes. It opens no file and
// follows no symlink. Lock files are left out: they are only ever
// locked, never read, and flock(2) holds on any file.
func (r *Root) notRegularFiles(repo string) ([]NotRegularFile, error) {
	dirs := []string{r.v2Dir(), filepath.Join(r.dir, stateDir)}
	if repo != "" {
		if err := ValidateRepo(repo); err != nil {
			return nil, err
		}
		dirs = []string{r.repoDir(repo)}
	}
	var files []NotRegularFile
	for _, dir := range dirs {
		err := r.walkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				if absentOrOutside(err) {
					return nil // nothing there, removed meanwhile, or outside (OutsideLinks)
				}
				return err
			}
			if path == r.locksDir() && e.IsDir() {
				return fs.SkipDir
			}
			if notRegularEntry(e) && path != r.treeLockPath() {
				files = append(files, NotRegularFile{Path: path, Type: e.Type()})
			}
			return nil
		})
		if err != nil {
			return files, err
		}
	}
	return files, nil
}

// notRegularTags lists the entries of repo's manifests directory named as
// type maps that are FIFOs, sockets or devices. Tags leaves them out, as
// every server answers such a tag as missing, so that tags/list never
// lists them; but they are damage, not deleted tags: what the tag named
// is unknown, so a collector leaves the repository alone, and the views
// say so. It costs one directory read.
func (r *Root) notRegularTags(repo string) ([]NotRegularFile, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	dir := r.manifestsDir(repo)
	entries, err := r.readDir(dir)
	if absentOrOutside(err) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil // none, outside the tree (OutsideLayout), or no repository there
	}
	if err != nil {
		return nil, err
	}
	var files []NotRegularFile
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), typeMapExt) && notRegularEntry(e) {
			files = append(files, NotRegularFile{Path: filepath.Join(dir, e.Name()), Type: e.Type()})
		}
	}
	return files, nil
}

// removeNotRegular removes the FIFO, socket or device at path, one that
// NotRegularFiles listed: the entry itself, by unlinkat(2) inside the
// tree, never opened. What is there now but no such entry — a regular
// file, a directory, a symlink — is left alone, and is an error. Call it
// holding the tree lock exclusively (verify --repair).
func (r *Root) removeNotRegular(path string) error {
	fi, err := r.lstat(path)
	if err != nil {
		return err
	}
	if !notRegularEntry(fs.FileInfoToDirEntry(fi)) {
		return fmt.Errorf("%s: a %s now, left alone", path, typeName(fi.Mode().Type()))
	}
	if err := r.unlink(path); err != nil {
		return err
	}
	return r.syncDir(filepath.Dir(path))
}
