package tree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
)

// readSmall returns the content of the file at path, at most limit bytes
// (more is an error that matches errOverLimit), resolving path inside the
// tree. It makes the three system calls reading a file needs — openat2,
// read until the end, close — where os.ReadFile makes about eight (an
// os.File tries the runtime poller and sets the descriptor back to
// blocking): a collection reads every manifest and every type map of the
// tree, tens of thousands of small files, and spends its time in those
// calls.
func (r *Root) readSmall(path string, limit int) ([]byte, error) {
	var b []byte
	err := r.at("open", path, func(t *dirHandle, name string) error {
		fd, err := t.openat2(name, syscall.O_RDONLY)
		if err == errNoOpenat2 {
			root, err := t.os()
			if err != nil {
				return err
			}
			f, err := root.Open(name)
			if err != nil {
				return err
			}
			defer f.Close()
			b, err = readLimited(func(p []byte) (int, error) {
				n, err := f.Read(p)
				if err == io.EOF {
					err = nil
				}
				return n, err
			}, path, limit)
			return err
		}
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		b, err = readLimited(func(p []byte) (int, error) {
			for {
				n, err := syscall.Read(fd, p)
				if err != syscall.EINTR {
					return max(n, 0), err
				}
			}
		}, path, limit)
		return err
	})
	var le *limitError
	var re *readError
	switch {
	case errors.As(err, &le):
		return nil, le
	case errors.As(err, &re):
		return nil, &fs.PathError{Op: "read", Path: path, Err: re.err}
	}
	return b, err
}

// readLimited reads with read until it returns 0 bytes, at most limit.
func readLimited(read func([]byte) (int, error), path string, limit int) ([]byte, error) {
	buf := make([]byte, 0, min(4096, limit+1))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := read(buf[len(buf):cap(buf)])
		if err != nil {
			return nil, &readError{cause(err)}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, &limitError{path, limit}
		}
	}
}

// readError is a failed read, told apart from a failed open.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// errOverLimit matches the error of a file longer than readSmall's limit.
var errOverLimit = errors.New("over the limit")

type limitError struct {
	path  string
	limit int
}

func (e *limitError) Error() string {
	return fmt.Sprintf("%s: over the %d byte limit", e.path, e.limit)
}

func (e *limitError) Is(target error) bool { return target == errOverLimit }

// SweepRepoTemps is SweepTemps for one repository: the temporary files in
// its blobs, manifests (digest and link directories included), tags and
// referrers directories. A collection sweeps repository by repository,
// several at once, instead of walking the tree a second time. The same
// rule holds: only call it holding the tree lock exclusively.
func (r *Root) SweepRepoTemps(repo string) (int, error) {
	if err := ValidateRepo(repo); err != nil {
		return 0, err
	}
	n := 0
	for _, sub := range []string{"blobs", "manifests", "tags", referrersDir} {
		err := r.walkDir(filepath.Join(r.RepoDir(repo), sub), func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
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
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// SweepIncoming removes the blob downloads that writers which crashed
// left in the incoming directory. Same rule as SweepTemps.
func (r *Root) SweepIncoming() (int, error) {
	entries, err := r.readDir(r.incomingDir())
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
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

// SweepCatalogTemps removes the temporary files of _catalog writers that
// crashed: those in the v2 directory itself. Same rule as SweepTemps.
func (r *Root) SweepCatalogTemps() (int, error) {
	entries, err := r.readDir(r.V2Dir())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if isTempEntry(e) {
			if err := r.unlink(filepath.Join(r.V2Dir(), e.Name())); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// isTempEntry matches what SweepTemps removes: temporary regular files,
// and the temporary symlinks of nginx's tag links.
func isTempEntry(e fs.DirEntry) bool {
	return (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) && isTempName(e.Name())
}

// SweepEmptyDirs removes the empty directories under v2 that are no
// repository: what a remover killed between emptying a repository and
// removing its directory leaves, which no later removal would find (a
// directory without blobs/, manifests/, tags/ or referrers/ is not a
// repository). Parents left empty go too. It never enters a repository's
// own directories. Same rule as SweepTemps: only call it holding the tree
// lock exclusively, or an export may be about to fill a new directory.
func (r *Root) SweepEmptyDirs() (int, error) {
	n := 0
	var sweep func(dir string) (bool, error)
	sweep = func(dir string) (empty bool, err error) {
		entries, err := r.readDir(dir)
		if err != nil {
			return false, err
		}
		left := len(entries)
		for _, e := range entries {
			if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || layoutDirs[e.Name()] {
				continue
			}
			sub := filepath.Join(dir, e.Name())
			if r.isRepoDir(sub) {
				continue
			}
			gone, err := sweep(sub)
			if err != nil {
				return false, err
			}
			if gone {
				left--
			}
		}
		if left > 0 || dir == r.V2Dir() {
			return false, nil
		}
		if err := r.removeDir(dir); err != nil {
			return false, err
		}
		n++
		return true, r.syncDir(filepath.Dir(dir))
	}
	_, err := sweep(r.V2Dir())
	return n, err
}
