package tree

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
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

func (r *Root) locksDir() string { return filepath.Join(r.dir, stateDir, locksDir) }

func (r *Root) treeLockPath() string { return filepath.Join(r.dir, stateDir, treeLockFile) }

func (r *Root) blobLockPath(d digest.Digest) string {
	return filepath.Join(r.locksDir(), blobLockPrefix+d.Algorithm().String()+"-"+d.Encoded())
}

func (r *Root) repoLockPath(repo string) string {
	// '+' is outside the name grammar, so the flattening is unambiguous.
	return filepath.Join(r.locksDir(), repoLockPrefix+strings.ReplaceAll(repo, "/", "+"))
}

func (r *Root) catalogLockPath() string { return filepath.Join(r.locksDir(), catalogLock) }

// lockShared takes the tree lock shared: many exports may add content at
// once, but never while an exclusive holder (gc) runs.
func (r *Root) lockShared() (*Lock, error) {
	return r.lockFile(r.treeLockPath(), unix.LOCK_SH, "the tree: maintenance (gc, delete, repair, migrate or watch) holds it")
}

// lockExclusive takes the tree lock exclusively, waiting for every writer.
func (r *Root) lockExclusive() (*Lock, error) {
	return r.lockFile(r.treeLockPath(), unix.LOCK_EX, "the tree: exports or deletes are writing it")
}

// tryLockExclusive takes the tree lock exclusively if nobody holds it, and
// returns nil otherwise.
func (r *Root) tryLockExclusive() (*Lock, error) {
	return r.lockFile(r.treeLockPath(), unix.LOCK_EX|unix.LOCK_NB, "")
}

func (r *Root) lockBlob(d digest.Digest) (*Lock, error) {
	return r.lockFile(r.blobLockPath(d), unix.LOCK_EX, "blob "+d.String()+": another export, or another image of this run, is writing it")
}

func (r *Root) lockRepo(repo string) (*Lock, error) {
	return r.lockFile(r.repoLockPath(repo), unix.LOCK_EX, "repository "+repo+": another command is updating its tags")
}

func (r *Root) lockCatalog() (*Lock, error) {
	return r.lockFile(r.catalogLockPath(), unix.LOCK_EX, "_catalog: another command is rewriting it")
}

// Waits says how a Root waits for a lock another process holds. The zero
// value waits as long as it takes, silently.
type Waits struct {
	// Context ends a wait when it is done, with its cause: an interrupted
	// command stops waiting at once, holding nothing.
	Context context.Context
	// Timeout ends a wait that lasts longer, with an error naming the
	// lock; 0 waits as long as it takes.
	Timeout time.Duration
	// Notify, if set, is told once when a lock has to be waited for, with
	// a sentence saying what for ("waiting for the tree: …").
	Notify func(msg string)
	// Warn, if set, is told of damage the tree worked around, with a
	// sentence naming the file and what to do (an invalid journal set
	// aside).
	Warn func(msg string)
}

// warn tells r's Warn of msg, if it has one.
func (r *Root) warn(msg string) {
	if r.waits.Warn != nil {
		r.waits.Warn(msg)
	}
}

// Context is the context of r's waits: what ends its lock waits, and what
// long walks over the tree watch between steps. It is never nil.
func (r *Root) Context() context.Context {
	if r.waits.Context == nil {
		return context.Background()
	}
	return r.waits.Context
}

// WithWaits returns a Root like r whose lock waits follow w.
func (r *Root) WithWaits(w Waits) *Root {
	c := *r
	c.waits = w
	return &c
}

// Polling bounds for a lock wait: flock(2) cannot be interrupted by a
// context, so a wait retries the non-blocking lock, backing off.
const (
	firstLockPoll = time.Millisecond
	maxLockPoll   = 50 * time.Millisecond
)

// wait retries try until it takes the lock, the context is done or the
// timeout passes.
func (w Waits) wait(try func() (bool, error), what string) error {
	ctx := w.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if w.Notify != nil {
		w.Notify("waiting for " + what)
	}
	var deadline <-chan time.Time
	if w.Timeout > 0 {
		t := time.NewTimer(w.Timeout)
		defer t.Stop()
		deadline = t.C
	}
	for poll := firstLockPoll; ; poll = min(2*poll, maxLockPoll) {
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-deadline:
			t.Stop()
			return fmt.Errorf("waiting for %s: gave up after %v (--lock-timeout)", what, w.Timeout)
		case <-t.C:
		}
		held, err := try()
		if err != nil || held {
			return err
		}
	}
}

// lockHolders names the processes holding a lock on f, as the kernel
// lists them in /proc/locks, for a message: " (held by pid 1234:
// image-serve gc)". It returns "" when it cannot tell.
func lockHolders(f *os.File) string {
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return ""
	}
	// "1: FLOCK  ADVISORY  WRITE 4211 08:01:1234567 0 EOF"; waiters have "->".
	ino := ":" + strconv.FormatUint(st.Ino, 10)
	var holders []string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[1] == "->" || f[1] != "FLOCK" || !strings.HasSuffix(f[5], ino) {
			continue
		}
		pid := f[4]
		if pid == strconv.Itoa(os.Getpid()) {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		h := "pid " + pid
		if c := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")); c != "" {
			if len(c) > 80 {
				c = c[:77] + "..."
			}
			h += ": " + c
		}
		holders = append(holders, h)
	}
	if len(holders) == 0 {
		return ""
	}
	if len(holders) > 3 {
		holders = append(holders[:3], fmt.Sprintf("%d more", len(holders)-3))
	}
	return " (held by " + strings.Join(holders, "; ") + ")"
}

// tryLockGC takes locks/gc.lock, which only collectors take, if nobody holds
// it; otherwise it returns nil. It keeps two collections from queueing
// behind each other on the tree lock: cron may start the next one while
// the last still runs.
func (r *Root) tryLockGC() (*Lock, error) {
	return r.lockFile(filepath.Join(r.locksDir(), gcLockFile), unix.LOCK_EX|unix.LOCK_NB, "")
}

// blobLocks lists the digests that have a blob lock file.
func (r *Root) blobLocks() ([]digest.Digest, error) {
	return r.digestsNamed(r.locksDir(), func(e fs.DirEntry) digest.Digest {
		name, ok := strings.CutPrefix(e.Name(), "blob-")
		alg, hex, ok2 := strings.Cut(name, "-")
		if !ok || !ok2 {
			return ""
		}
		return digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	})
}

// removeBlobLock removes the lock file of blob d. Only call it holding
// the tree lock exclusively: blob locks are taken only under the shared
// tree lock, so nobody holds or waits for it then, and removing a lock
// file someone waits on would let two writers lock different files.
func (r *Root) removeBlobLock(d digest.Digest) error {
	return r.unlink(r.blobLockPath(d))
}
