package catalog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
)

// readSmall returns the content of the file at path, at most limit bytes
// (more is an error that matches errOverLimit), resolving path inside the
// tree. Reading makes as few system calls as a file allows: a collection
// reads every manifest and every type map of the tree, tens of thousands
// of small files, and spends its time in those calls.
func (r *Root) readSmall(path string, limit int) ([]byte, error) {
	f, err := r.open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, 0, min(4096, limit+1))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, &limitError{path, limit}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

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
