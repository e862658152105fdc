package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// createTemp creates a new entry with create at a temporary name next to
// path: a dot name ending in digits, as renameio's, so that no server
// serves it and sweepTemps recognises it.
func createTemp(path string, create func(tmp string) error) (string, error) {
	for range 100 {
		tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+strconv.FormatUint(rand.Uint64(), 10))
		err := create(tmp)
		if err == nil {
			return tmp, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
	}
	return "", fmt.Errorf("%s: no free temporary name", path)
}

// mkdirAll creates dir and its missing parents with dirMode, whatever the
// umask. Below the root it resolves dir inside the tree: a symlink on the
// way that leads outside is an error, never a directory made out there.
func (r *Root) mkdirAll(dir string) error { return r.mkdirs(dir, true) }

// mkdirInTree is mkdirAll for the tree's own bookkeeping (lock files):
// it creates what is missing below the root, never the root itself, so
// a command whose root was moved or removed meanwhile fails instead of
// making an empty tree by its name — into which an operator's
// `mv new root` would then nest the new one.
func (r *Root) mkdirInTree(dir string) error { return r.mkdirs(dir, false) }

// mkdirs is mkdirAll, making the root and above only when withRoot.
func (r *Root) mkdirs(dir string, withRoot bool) error {
	stat := os.Stat // the root and above: the administrator's path
	if r.inTree(dir) {
		stat = r.stat
	}
	fi, err := stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s: not a directory", dir)
	case err == nil:
		return nil
	case !r.inTree(dir) && !withRoot:
		return fmt.Errorf("root %s: %w", r.dir, err)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	if err := r.mkdirs(filepath.Dir(dir), withRoot); err != nil {
		return err
	}
	return r.makeDir(dir)
}

// publish atomically replaces path with data.
func (r *Root) publish(path string, data []byte) error { return r.publishTo(path, data, nil) }

// publishTo is publish with the sync of path's directory left to ds (nil:
// at once).
func (r *Root) publishTo(path string, data []byte, ds *dirSyncs) error {
	f, err := r.pendingFile(path)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if ds == nil {
		return r.renamePending(f)
	}
	if err := r.renamePendingUnsynced(f); err != nil {
		return err
	}
	return ds.sync(r, filepath.Dir(path))
}

// writeIfChanged publishes data at path unless the file already holds it.
// An old file that cannot be read as one of the tree (a symlink leading
// outside it, a FIFO) is replaced: the rename replaces the entry, never
// what it names, and never opens it.
func (r *Root) writeIfChanged(path string, data []byte) error {
	return r.writeIfChangedTo(path, data, nil)
}

// writeIfChangedTo is writeIfChanged with the sync of path's directory
// left to ds (nil: at once).
func (r *Root) writeIfChangedTo(path string, data []byte, ds *dirSyncs) error {
	old, err := r.readSmall(path, len(data))
	switch {
	case err == nil && string(old) == string(data):
		return nil
	case err == nil, absentOrOutside(err), errors.Is(err, errOverLimit), errors.Is(err, ErrNotRegular):
		return r.publishTo(path, data, ds)
	default:
		return err
	}
}

// dirSyncs defers directory syncs to one per directory. A batch of blobs
// renamed or linked into their repositories is made durable together,
// before any manifest names one of them: the order the crash-safety
// argument needs (docs/crash-safety.md) holds at the batch's end instead
// of after each file, and a repository receiving fifty blobs syncs its
// blobs directory once. A nil *dirSyncs syncs at once.
type dirSyncs struct {
	mu   sync.Mutex
	dirs map[string]bool
}

func newDirSyncs() *dirSyncs { return &dirSyncs{dirs: map[string]bool{}} }

// sync syncs dir now (s nil) or at flush.
func (s *dirSyncs) sync(r *Root, dir string) error {
	if s == nil {
		return r.syncDir(dir)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirs[dir] = true
	return nil
}

// flush syncs every directory noted, in order, and forgets them.
func (s *dirSyncs) flush(r *Root) error {
	s.mu.Lock()
	dirs := slices.Sorted(maps.Keys(s.dirs))
	clear(s.dirs)
	s.mu.Unlock()
	for _, dir := range dirs {
		if err := r.syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}
