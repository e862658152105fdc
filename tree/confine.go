package tree

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
	"time"

	"golang.org/x/sys/unix"
)

// Confinement. The tree is served and collected by programs that trust
// nothing in it: a symlink planted anywhere below the root — a blob, a
// manifest's index.json, a tags/list, a type map, a whole repository or
// its blobs/ directory — must never make a server send, or a collector
// read or remove, a file outside the root. So this package resolves every
// path of the tree (each path the functions of root.go name) relative to
// a descriptor of the root directory, never by its absolute name: reads
// with openat2(2) and RESOLVE_BENEATH; reading a link and removing an
// entry with openat2 of its directory and readlinkat / unlinkat of its
// last component (openParent); descending a walk one component at a time
// from a directory already open, never following a link (openChildDir);
// everything else (and all of these where the kernel has no openat2)
// with Go's os.Root, one component at a time. All give the same answer:
// a symlink that stays inside the root is followed, one that leaves it
// (by "..", or an absolute target) is an error, ErrOutsideRoot, and
// nothing outside is opened, listed, followed or removed. Removals never
// follow the last component: a planted link is removed, not what it
// names.
//
// The root directory itself, and the path leading to it, are the
// administrator's --root and are trusted: the root is opened by name, and
// the directories above it are made by name (Init on a fresh root).
//
// No descriptor of the root is kept for good: each operation opens the
// root, resolves its path inside it and closes it again, except while
// this Root holds a lock of the tree (a writer's or a collector's run),
// and except for the operations of an FS held for one request (FS.Hold,
// until its Close), which share one descriptor. A descriptor kept for
// good would keep the file system busy (umount fails) and keep serving a
// root directory that has been replaced (a restored tree); and a server
// may be started before the tree exists. A descriptor held for one run
// or one request delays none of these for longer than that run or that
// request, and spares each of its stats and opens an open of the root by
// name and a close.

// ErrOutsideRoot reports a path of the tree that would leave the root: a
// symlink in the tree pointing outside it, or an absolute one, on the way.
// Every operation on a path of the tree returns it as the cause (Err) of a
// *fs.PathError (an *os.LinkError for the calls of two paths), naming the
// path in the tree. It is not fs.ErrNotExist: something is there, a link
// planted by someone, and a writer or a collector must neither take it
// for a missing file nor act through it. Who answers it as missing says
// so by name: the embedded server maps it to a 404 in one place (its
// missing), and this package's readers that skip what is not in the tree
// use absentOrOutside.
var ErrOutsideRoot = errors.New("symlink leads outside the tree")

// absentOrOutside reports whether err says a path is not in the tree:
// nothing there (fs.ErrNotExist), or a path leading outside the root
// (ErrOutsideRoot). It is the rule of the readers for which what lies
// outside the tree is not in it — a listing, a walk, a check whether a
// file is there — as opposed to the writers and removals, which must
// tell the two apart.
func absentOrOutside(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrOutsideRoot)
}

// tree is the open root directory. Reads resolve their path with one
// openat2(2) call, RESOLVE_BENEATH, relative to dir: the kernel refuses
// any component, ".." or symlink, that would leave the directory, the
// confinement os.Root gives, at the cost of one system call instead of
// two per component (os.Root opens and closes each directory on the
// way). Everything else, and every read where openat2 is missing, goes
// through an os.Root of the same directory.
type dirHandle struct {
	dir  int    // O_PATH descriptor of the root, the base of openat2; -1 without openat2
	path string // the root's name, to open the os.Root

	mu     sync.Mutex
	root   *os.Root // opened on first need
	refs   int      // operations using the tree
	closed bool     // close when refs drops to 0
}

// rootState is what a Root keeps open while it holds locks.
type rootState struct {
	mu   sync.Mutex // serialises hold and let
	held int        // locks of the tree held through this Root
	kept atomic.Pointer[dirHandle]
	// osRootOnly resolves every path through os.Root, as where openat2
	// is missing (tests).
	osRootOnly bool
}

// escapes is os.Root's error for a path that leaves it, learnt once (os
// does not export it).
var (
	escapesOnce sync.Once
	escapes     error
)

// EscapesRoot reports whether err is an os.Root's refusal of a path that
// leaves its root: a ".." above it, or a symlink leading outside. Readers
// of untrusted directories (oci: layouts) use it to say so in their own
// words.
func EscapesRoot(err error) bool {
	escapesOnce.Do(func() {
		root, err := os.OpenRoot("/")
		if err != nil {
			return
		}
		defer root.Close()
		// ".." out of the root is refused before any system call.
		_, err = root.Lstat("..")
		escapes = errors.Unwrap(err)
	})
	return err != nil && escapes != nil && errors.Is(err, escapes)
}

// noOpenat2 is set once openat2 turns out to be missing (Linux before
// 5.6, or a seccomp filter that does not know it).
var noOpenat2 atomic.Bool

// handleVia returns the root directory, open, for one operation, which
// releases it: the one p holds for an FS (when p is not nil and still
// open), else the tree kept while a lock is held, else a new one.
func (r *Root) handleVia(p *pin) (*dirHandle, error) {
	if p != nil && p.t.acquire() {
		return p.t, nil
	}
	if t := r.state.kept.Load(); t != nil && t.acquire() {
		return t, nil
	}
	t, err := r.openTree()
	if err != nil {
		return nil, err
	}
	t.refs, t.closed = 1, true // the release closes it
	return t, nil
}

func (r *Root) openTree() (*dirHandle, error) {
	t := &dirHandle{dir: -1, path: r.dir}
	if !noOpenat2.Load() && !r.state.osRootOnly {
		fd, err := openDir(r.dir)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: r.dir, Err: err}
		}
		t.dir = fd
		return t, nil
	}
	if _, err := t.os(); err != nil {
		return nil, err
	}
	return t, nil
}

// os returns the tree's os.Root, opening it on first use.
func (t *dirHandle) os() (*os.Root, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.root != nil {
		return t.root, nil
	}
	root, err := os.OpenRoot(t.path)
	if err != nil {
		return nil, err
	}
	t.root = root
	return root, nil
}

func (t *dirHandle) acquire() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.refs++
	return true
}

func (t *dirHandle) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refs--
	if t.closed && t.refs == 0 {
		t.closeLocked()
	}
}

// shut closes t once no operation uses it any more.
func (t *dirHandle) shut() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.refs == 0 {
		t.closeLocked()
	}
}

func (t *dirHandle) closeLocked() {
	if t.dir >= 0 {
		syscall.Close(t.dir)
		t.dir = -1
	}
	if t.root != nil {
		t.root.Close()
		t.root = nil
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
			r.state.kept.Store(t)
		} // else: each operation opens the root itself
	}
}

// let undoes a hold; with the last, the root is closed as soon as the
// operations in flight are done with it.
func (r *Root) let() {
	r.state.mu.Lock()
	defer r.state.mu.Unlock()
	r.state.held--
	if r.state.held == 0 {
		if t := r.state.kept.Swap(nil); t != nil {
			t.shut()
		}
	}
}

// A pin keeps a descriptor of the root open for the operations of one
// held FS (FS.Hold) until its close: the tree kept under a lock, when one
// is held, else one of its own.
type pin struct {
	t    *dirHandle
	own  bool        // t was opened for this pin: close shuts it
	done atomic.Bool // closed: a second close does nothing
}

// pin opens the root for the operations of one held FS; nil when the
// root cannot be opened, so that each operation opens it itself and
// reports the error, as without a hold (a server started before the
// tree exists).
func (r *Root) pin() *pin {
	if t := r.state.kept.Load(); t != nil && t.acquire() {
		return &pin{t: t}
	}
	t, err := r.openTree()
	if err != nil {
		return nil
	}
	t.refs = 1 // the pin's own, which close releases
	return &pin{t: t, own: true}
}

// close lets go of the root: its own descriptor is closed as soon as no
// operation uses it any more, and no operation started later takes it
// (acquire refuses a shut dirHandle).
func (p *pin) close() {
	if p == nil || !p.done.CompareAndSwap(false, true) {
		return
	}
	if p.own {
		p.t.shut()
	}
	p.t.release()
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

// in runs do, one call of os.Root, on path's name in the tree, and
// returns its error as the path-based call would have: a *fs.PathError
// of op and path, the cause ErrOutsideRoot when the path leaves the tree.
func (r *Root) in(op, path string, do func(root *os.Root, name string) error) error {
	return r.at(op, path, func(t *dirHandle, name string) error {
		root, err := t.os()
		if err != nil {
			return err
		}
		return do(root, name)
	})
}

// at is in for the reads that resolve with openat2 themselves: do gets
// the tree.
func (r *Root) at(op, path string, do func(t *dirHandle, name string) error) error {
	return r.atVia(nil, op, path, do)
}

// atVia is at for an operation of an FS held by p (nil: none).
func (r *Root) atVia(p *pin, op, path string, do func(t *dirHandle, name string) error) error {
	name, err := r.name(path)
	if err != nil {
		return &fs.PathError{Op: op, Path: path, Err: cause(err)}
	}
	return r.atName(p, op, path, name, do)
}

// atName is atVia for path whose name in the tree is known: an FS's
// names are, and cost no second cleaning.
func (r *Root) atName(p *pin, op, path, name string, do func(t *dirHandle, name string) error) error {
	err := r.withVia(p, func(t *dirHandle) error { return do(t, name) })
	if err == nil {
		return nil
	}
	return &fs.PathError{Op: op, Path: path, Err: cause(err)}
}

// in2 is in for the calls of two paths of the tree (rename, link). A
// symlink's target is no path of the tree: its name is the target itself.
func (r *Root) in2(op, oldpath, newpath string, do func(root *os.Root, oldname, newname string) error) error {
	oldname, err := r.name(oldpath)
	if op == "symlink" {
		oldname, err = oldpath, nil
	}
	newname, err2 := r.name(newpath)
	if err == nil {
		err = err2
	}
	if err == nil {
		err = r.with(func(t *dirHandle) error {
			root, err := t.os()
			if err != nil {
				return err
			}
			return do(root, oldname, newname)
		})
	}
	if err == nil {
		return nil
	}
	return &os.LinkError{Op: op, Old: oldpath, New: newpath, Err: cause(err)}
}

// with runs do on the open root.
func (r *Root) with(do func(t *dirHandle) error) error { return r.withVia(nil, do) }

// withVia is with for an operation of an FS held by p (nil: none).
func (r *Root) withVia(p *pin, do func(t *dirHandle) error) error {
	t, err := r.handleVia(p)
	if err != nil {
		return err
	}
	defer t.release()
	return do(t)
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
	return err != nil && (errors.Is(err, ErrOutsideRoot) || EscapesRoot(err))
}

// The reads. Each resolves its path inside the tree; none follows a
// symlink out of it.

// open opens the regular file at path for reading (openRegular): a FIFO,
// a socket, a device or a directory there is ErrNotRegular. The file is a
// blocking one, as os.Open's, and outlives the root descriptor it was
// opened through.
func (r *Root) open(path string) (*os.File, error) {
	name, err := r.name(path)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: cause(err)}
	}
	f, _, err := r.openName(nil, path, name)
	return f, err
}

// openName is open of path, whose name in the tree is name, for an FS
// held by p (nil: none). It also returns the file's fstat(2) that
// openRegular took to check its type.
func (r *Root) openName(p *pin, path, name string) (*os.File, fs.FileInfo, error) {
	var f *os.File
	var fi fs.FileInfo
	err := r.atName(p, "open", path, name, func(t *dirHandle, name string) error {
		fd, st, err := t.openRegular(name)
		if err != nil {
			return err
		}
		// F_SETFL with no flag clears O_NONBLOCK, the only one set: the
		// file's users (sendfile, io.Copy) get the descriptor os.Open
		// gives, and os.NewFile does not try the runtime poller on it.
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, 0); err != nil {
			syscall.Close(fd)
			return err
		}
		f, fi = os.NewFile(uintptr(fd), path), st
		return nil
	})
	return f, fi, err
}

// stat describes the file at path, following symlinks inside the tree.
func (r *Root) stat(path string) (fs.FileInfo, error) { return r.statAt("stat", path, true) }

// lstat describes the entry at path: a symlink as itself.
func (r *Root) lstat(path string) (fs.FileInfo, error) { return r.statAt("lstat", path, false) }

func (r *Root) statAt(op, path string, follow bool) (fs.FileInfo, error) {
	name, err := r.name(path)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: path, Err: cause(err)}
	}
	return r.statName(nil, op, path, name, follow)
}

// statName is stat (follow) or lstat of path, whose name in the tree is
// name, for an FS held by p (nil: none).
func (r *Root) statName(p *pin, op, path, name string, follow bool) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := r.atName(p, op, path, name, func(t *dirHandle, name string) error {
		flags := unix.O_PATH
		if !follow {
			flags |= syscall.O_NOFOLLOW // O_PATH opens the symlink itself
		}
		fd, err := t.openat2(name, flags)
		if err == nil {
			st := &statInfo{name: filepath.Base(path)}
			err = ignoringEINTR(func() error { return syscall.Fstat(fd, &st.sys) })
			syscall.Close(fd)
			fi = st
			return err
		}
		if err != errNoOpenat2 {
			return err
		}
		root, err := t.os()
		if err != nil {
			return err
		}
		if follow {
			fi, err = root.Stat(name)
		} else {
			fi, err = root.Lstat(name)
		}
		return err
	})
	return fi, err
}

// readlink returns the target of the symlink at path. Its directory is
// resolved with one openat2 (os.Root opens and closes every directory on
// the way: ten system calls for a tag link, and a collection reads one
// per tag), the link itself read with readlinkat, never followed.
func (r *Root) readlink(path string) (string, error) {
	var target string
	err := r.at("readlink", path, func(t *dirHandle, name string) error {
		dir, base, err := t.openParent(name)
		if err == errNoOpenat2 {
			root, err := t.os()
			if err != nil {
				return err
			}
			target, err = root.Readlink(name)
			return err
		}
		if err != nil {
			return err
		}
		defer syscall.Close(dir)
		target, err = readlinkat(dir, base)
		return err
	})
	return target, err
}

// readlinkat reads the symlink base in the directory dir.
func readlinkat(dir int, base string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = unix.Readlinkat(dir, base, buf)
			return err
		})
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// openParent opens the directory holding name, resolved beneath the
// root as openat2 resolves every read, and returns it (an O_PATH
// descriptor the caller closes) with name's last component: a step on
// that entry itself — reading a link, removing it — goes through the
// descriptor and never follows the entry. It is errNoOpenat2 where the
// system has no openat2: the caller takes os.Root's way.
func (t *dirHandle) openParent(name string) (int, string, error) {
	dir, base := filepath.Split(name)
	if dir == "" {
		dir = "."
	}
	if base == "" || base == "." || base == ".." {
		return -1, "", fmt.Errorf("not an entry of the tree: %q", name)
	}
	fd, err := t.openat2(dir, unix.O_PATH|syscall.O_DIRECTORY)
	return fd, base, err
}

// readDir lists the directory at path, sorted by name, as os.ReadDir.
// It reads the entries itself (getdents64), in the four system calls
// listing a directory takes, as os.ReadDir does: an os.File
// made of a descriptor asks it for its flags first, one call more per
// directory, and a collection lists tens of thousands.
func (r *Root) readDir(path string) ([]fs.DirEntry, error) {
	var entries []fs.DirEntry
	err := r.at("open", path, func(t *dirHandle, name string) error {
		fd, err := t.openDirectory(name)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		entries, err = readDirents(fd, path, r)
		return err
	})
	var re *readError
	if errors.As(err, &re) {
		return nil, &fs.PathError{Op: "readdirent", Path: path, Err: re.err}
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

// readDirLinks is readDir of the directory at path, with the target of
// each symlink in it, read through the directory's own descriptor
// (readlinkat, never following the link): one resolution of the
// directory instead of one per link — nginx's link directories hold one
// per tag. A link whose target could not be read is not in targets.
func (r *Root) readDirLinks(path string) ([]fs.DirEntry, map[string]string, error) {
	var entries []fs.DirEntry
	targets := map[string]string{}
	fallback := false
	err := r.at("open", path, func(t *dirHandle, name string) error {
		fd, err := t.openat2(name, dirFlags)
		if err == errNoOpenat2 {
			fallback = true
			return nil
		}
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if entries, err = readDirents(fd, path, r); err != nil {
			return err
		}
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink != 0 {
				if target, err := readlinkat(fd, e.Name()); err == nil {
					targets[e.Name()] = target
				}
			}
		}
		return nil
	})
	if fallback {
		return r.readDirLinksByName(path)
	}
	var re *readError
	if errors.As(err, &re) {
		return nil, nil, &fs.PathError{Op: "readdirent", Path: path, Err: re.err}
	}
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, targets, nil
}

// readDirLinksByName is readDirLinks where openat2 is missing: a
// readlink by name for each link.
func (r *Root) readDirLinksByName(path string) ([]fs.DirEntry, map[string]string, error) {
	entries, err := r.readDir(path)
	if err != nil {
		return nil, nil, err
	}
	targets := map[string]string{}
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 {
			if target, err := r.readlink(filepath.Join(path, e.Name())); err == nil {
				targets[e.Name()] = target
			}
		}
	}
	return entries, targets, nil
}

// openChildDir opens the directory name, an entry of the open directory
// dir as readDirents lists them (one component, neither "." nor ".."),
// for reading its entries, without following it: a symlink there is
// ELOOP, never entered. One component looked up in a directory already
// inside the tree, no link followed, cannot leave it: a walk descends
// this way instead of resolving each directory's whole path from the
// root again.
func openChildDir(dir int, name string) (int, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return -1, syscall.EINVAL
	}
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(dir, name, dirFlags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// readDirents lists the open directory fd, whose path is dir.
func readDirents(fd int, dir string, r *Root) ([]fs.DirEntry, error) {
	var entries []fs.DirEntry
	buf := make([]byte, 8192)
	for {
		var n int
		err := ignoringEINTR(func() (err error) {
			n, err = syscall.ReadDirent(fd, buf)
			return err
		})
		if err != nil {
			return nil, &readError{err}
		}
		if n <= 0 {
			return entries, nil
		}
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		for b := buf[:n]; len(b) >= 19; {
			reclen := int(b[16]) | int(b[17])<<8
			if reclen < 19 || reclen > len(b) {
				return nil, &readError{syscall.EIO}
			}
			rec := b[:reclen]
			b = b[reclen:]
			ino := uint64(rec[0]) | uint64(rec[1])<<8 | uint64(rec[2])<<16 | uint64(rec[3])<<24 |
				uint64(rec[4])<<32 | uint64(rec[5])<<40 | uint64(rec[6])<<48 | uint64(rec[7])<<56
			name := rec[19:]
			if i := slices.Index(name, 0); i >= 0 {
				name = name[:i]
			}
			if ino == 0 || string(name) == "." || string(name) == ".." {
				continue
			}
			e := &dirEntry{name: string(name), dir: dir, r: r}
			switch rec[18] {
			case syscall.DT_DIR:
				e.typ = fs.ModeDir
			case syscall.DT_REG:
			case syscall.DT_LNK:
				e.typ = fs.ModeSymlink
			case syscall.DT_FIFO:
				e.typ = fs.ModeNamedPipe
			case syscall.DT_SOCK:
				e.typ = fs.ModeSocket
			case syscall.DT_CHR:
				e.typ = fs.ModeDevice | fs.ModeCharDevice
			case syscall.DT_BLK:
				e.typ = fs.ModeDevice
			default: // DT_UNKNOWN: the file system does not say; ask
				var st unix.Stat_t
				if err := ignoringEINTR(func() error { return unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
					continue // removed meanwhile
				}
				e.typ = fileType(st.Mode)
			}
			entries = append(entries, e)
		}
	}
}

// dirEntry is an entry readDirents found.
type dirEntry struct {
	name, dir string
	typ       fs.FileMode
	r         *Root
}

func (e *dirEntry) Name() string { return e.name }

func (e *dirEntry) IsDir() bool { return e.typ.IsDir() }

func (e *dirEntry) Type() fs.FileMode { return e.typ }

func (e *dirEntry) Info() (fs.FileInfo, error) { return e.r.lstat(filepath.Join(e.dir, e.name)) }

func (e *dirEntry) String() string { return fs.FormatDirEntry(e) }

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
// directory inside the tree. Symlinks are reported, never followed. A
// directory below dir that cannot be read (isUnreadableDir: permissions,
// a path deeper than the system allows) is passed to fn and not entered:
// one planted directory does not fail a walk of the whole tree.
// UnreadableDirs names them.
func (r *Root) walkDir(dir string, fn fs.WalkDirFunc) error {
	return r.walkDirSkipping(dir, fn, nil)
}

// walkDirSkipping is walkDir, appending to skipped (when not nil) each
// directory it could not read.
func (r *Root) walkDirSkipping(dir string, fn fs.WalkDirFunc, skipped *[]string) error {
	fi, err := r.lstat(dir)
	if err != nil {
		err = fn(dir, nil, err)
	} else {
		err = r.walk(dir, fs.FileInfoToDirEntry(fi), fn, skipped, true)
	}
	if err == fs.SkipDir || err == fs.SkipAll {
		return nil
	}
	return err
}

// afterReadDir, set only by tests, runs when a walk has read the
// directory at path and not yet visited its entries: the instant a
// writer working meanwhile (a tag delete under the shared lock) may
// remove one of them.
var afterReadDir func(path string)

// isUnreadableDir reports whether err, from reading a directory, says the
// directory cannot be read at all rather than that it is gone or leads
// out of the tree.
func isUnreadableDir(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.ELOOP)
}

// maxWalkPath bounds the length of a path below the root a walk visits:
// the system resolves at most PATH_MAX (4096) bytes in one call, so
// anything deeper can be neither read nor served, and is skipped as an
// unreadable directory.
const maxWalkPath = 4000

func (r *Root) walk(path string, d fs.DirEntry, fn fs.WalkDirFunc, skipped *[]string, top bool) error {
	if !top && len(path)-len(r.dir) > maxWalkPath {
		if skipped != nil && d.IsDir() {
			*skipped = append(*skipped, filepath.Dir(path))
		}
		return fs.SkipDir // the rest of this directory is as deep
	}
	if err := fn(path, d, nil); err != nil || !d.IsDir() {
		if err == fs.SkipDir && d.IsDir() {
			err = nil
		}
		return err
	}
	entries, err := r.readDir(path)
	if afterReadDir != nil {
		afterReadDir(path)
	}
	if err != nil && !top && isUnreadableDir(err) {
		if skipped != nil {
			*skipped = append(*skipped, path)
		}
		return nil
	}
	if err != nil {
		if err = fn(path, d, err); err != nil {
			if err == fs.SkipDir && d.IsDir() {
				err = nil
			}
			return err
		}
	}
	for _, e := range entries {
		if err := r.walk(filepath.Join(path, e.Name()), e, fn, skipped, false); err != nil {
			if err == fs.SkipDir {
				break
			}
			return err
		}
	}
	return nil
}

// openInTree opens the file at path — one of the tree's paths as this
// package names them (PingPath, CatalogPath, TagsListPath, ManifestPath,
// …) — for reading, resolved inside the tree: a symlink on the way that
// leads out of the root is ErrOutsideRoot (not fs.ErrNotExist). It
// opens as FS.Open does, which is what a server opens the files it
// serves with, so that it never sends a byte from outside the root.
func (r *Root) openInTree(path string) (*os.File, error) { return r.open(path) }

// statInTree describes the file at path, resolved inside the tree as
// OpenInTree resolves it.
func (r *Root) statInTree(path string) (fs.FileInfo, error) { return r.stat(path) }

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
	p := r.v2Dir()
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

// outsideLinks lists every symlink that leads outside the root, anywhere
// under v2/ and the state directory, or, for a repository, under its
// directory and on the path to it: what verify reports. It reads no
// directory through a symlink.
func (r *Root) outsideLinks(repo string) ([]OutsideLink, error) {
	dirs := []string{r.v2Dir(), filepath.Join(r.dir, stateDir)}
	var links []OutsideLink
	if repo != "" {
		if err := ValidateRepo(repo); err != nil {
			return nil, err
		}
		if l, ok := r.outsideRepoDir(repo); ok {
			return []OutsideLink{l}, nil
		}
		dirs = []string{r.repoDir(repo)}
	}
	for _, dir := range dirs {
		err := r.walkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				if absentOrOutside(err) {
					return nil // nothing there, or removed meanwhile
				}
				return err
			}
			if e.Type()&fs.ModeSymlink != 0 && !r.isLegacyTagLink(path) {
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

// outsideLayout lists the directories of repo's layout — the repository
// directory, blobs/, manifests/ and nginx's link directories in it,
// tags/ and referrers/ — that are symlinks leading outside the root. A
// collector leaves such a repository alone: what it stores is not in the
// tree. Files that are such links (a blob, a type map, an index.json) are
// not listed here: reading them fails with ErrOutsideRoot, and listings
// skip them. It costs a directory read and two lstats.
func (r *Root) outsideLayout(repo string) ([]OutsideLink, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	dir := r.repoDir(repo)
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

// errNoOpenat2 is what openat2 answers when the system has none: the
// caller resolves through os.Root instead.
var errNoOpenat2 = errors.New("no openat2")

// openat2 opens name below the root with flags (and O_CLOEXEC), the
// kernel resolving every component beneath the root directory: a symlink
// or ".." that would leave it is ErrOutsideRoot, an absolute symlink
// too, as os.Root has it; magic links (/proc) are refused.
func (t *dirHandle) openat2(name string, flags int) (int, error) {
	if t.dir < 0 {
		return -1, errNoOpenat2
	}
	how := unix.OpenHow{Flags: uint64(flags | syscall.O_CLOEXEC), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(t.dir, name, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN && try < 8:
			continue // a rename raced with the resolution of ".."
		case err == syscall.EXDEV:
			return -1, ErrOutsideRoot
		case err == syscall.ENOSYS:
			noOpenat2.Store(true)
			return -1, errNoOpenat2
		case err == syscall.EPERM, err == syscall.EINVAL, err == syscall.EAGAIN:
			// A seccomp filter's answer, or a kernel's that knows no
			// RESOLVE flag: let os.Root have the last word.
			return -1, errNoOpenat2
		}
		return -1, err
	}
}

// openDir opens the root directory, for openat2 to resolve beneath.
func openDir(path string) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(path, unix.O_PATH|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

// statInfo is an fs.FileInfo from fstat(2), as os.Stat's.
type statInfo struct {
	name string
	sys  syscall.Stat_t
}

func (s *statInfo) Name() string { return s.name }

func (s *statInfo) Size() int64 { return s.sys.Size }

func (s *statInfo) ModTime() time.Time { return time.Unix(s.sys.Mtim.Unix()) }

func (s *statInfo) IsDir() bool { return s.Mode().IsDir() }

func (s *statInfo) Sys() any { return &s.sys }

func (s *statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.sys.Mode&0o777) | fileType(s.sys.Mode)
	if s.sys.Mode&syscall.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if s.sys.Mode&syscall.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if s.sys.Mode&syscall.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// fileType is the type bits of a stat(2) mode, as os has them.
func fileType(mode uint32) fs.FileMode {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFBLK:
		return fs.ModeDevice
	case syscall.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case syscall.S_IFDIR:
		return fs.ModeDir
	case syscall.S_IFIFO:
		return fs.ModeNamedPipe
	case syscall.S_IFLNK:
		return fs.ModeSymlink
	case syscall.S_IFSOCK:
		return fs.ModeSocket
	}
	return 0
}
