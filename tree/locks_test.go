package tree

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLockNeverCreatesRoot: taking a lock on a tree whose root was moved
// away fails and creates nothing by the root's name, whether the root
// was opened before the move or after. Guards: watch took a lock during a
// pass after the operator's `mv root old`, which made .image-serve/ — and
// so a new, empty root — by name; the next `mv new root` nested the new
// tree inside it and every pull answered 404.
func TestLockNeverCreatesRoot(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	opened, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := opened.Init(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(parent, "old")); err != nil {
		t.Fatal(err)
	}
	fresh, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*Root{"opened before the move": opened, "opened after": fresh} {
		if l, err := r.lockShared(); err == nil {
			l.Unlock()
			if _, serr := os.Lstat(dir); serr == nil {
				t.Errorf("%s: the lock made a root by the old name", name)
			}
		}
		if _, err := os.Lstat(dir); !os.IsNotExist(err) {
			t.Errorf("%s: %s exists after taking a lock (%v)", name, dir, err)
		}
	}
}
