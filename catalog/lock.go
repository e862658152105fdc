package catalog

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/opencontainers/go-digest"
)

// Locks are flock(2) locks on files under ROOT/.image-serve, so they hold
// across processes (TripleO ran four exports at once) and vanish with a
// crashed holder: no stale lock ever needs breaking.
//
//	tree.lock             shared by writers that add content; exclusive for
//	                      whoever must see the tree at rest (gc, temp sweep)
//	locks/blob-<digest>   one fetch of a blob at a time, tree-wide
//	locks/repo-<name>     one update of a repository's tags at a time
//	locks/catalog         one rewrite of _catalog at a time
//	locks/gc.lock         one collector at a time (TryLockGC)

// Lock is a held lock. Unlock releases it. While a Root holds a lock, it
// keeps the root directory open for the operations of the holder
// (confine.go).
type Lock struct {
	f *os.File
	r *Root
}

// Unlock releases the lock.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	if l.r != nil {
		l.r.let()
	}
	return err
}

func (r *Root) locksDir() string { return filepath.Join(r.dir, stateDir, "locks") }

func (r *Root) treeLockPath() string { return filepath.Join(r.dir, stateDir, "tree.lock") }

func (r *Root) blobLockPath(d digest.Digest) string {
	return filepath.Join(r.locksDir(), "blob-"+d.Algorithm().String()+"-"+d.Encoded())
}

func (r *Root) repoLockPath(repo string) string {
	// '+' is outside the name grammar, so the flattening is unambiguous.
	return filepath.Join(r.locksDir(), "repo-"+strings.ReplaceAll(repo, "/", "+"))
}

func (r *Root) catalogLockPath() string { return filepath.Join(r.locksDir(), "catalog") }

// LockShared takes the tree lock shared: many exports may add content at
// once, but never while an exclusive holder (gc) runs.
func (r *Root) LockShared() (*Lock, error) {
	return r.lockFile(r.treeLockPath(), syscall.LOCK_SH)
}

// LockExclusive takes the tree lock exclusively, waiting for every writer.
func (r *Root) LockExclusive() (*Lock, error) {
	return r.lockFile(r.treeLockPath(), syscall.LOCK_EX)
}

// TryLockExclusive takes the tree lock exclusively if nobody holds it, and
// returns nil otherwise.
func (r *Root) TryLockExclusive() (*Lock, error) {
	return r.lockFile(r.treeLockPath(), syscall.LOCK_EX|syscall.LOCK_NB)
}

func (r *Root) lockBlob(d digest.Digest) (*Lock, error) {
	return r.lockFile(r.blobLockPath(d), syscall.LOCK_EX)
}

func (r *Root) lockRepo(repo string) (*Lock, error) {
	return r.lockFile(r.repoLockPath(repo), syscall.LOCK_EX)
}

func (r *Root) lockCatalog() (*Lock, error) {
	return r.lockFile(r.catalogLockPath(), syscall.LOCK_EX)
}
