package tree

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestRemoveKinds: remove takes a file, a symlink (never what it names)
// and an empty directory, whichever it is told to expect, and refuses a
// directory that is not empty and an entry whose directory leads out of
// the tree, with openat2 and through os.Root alike.
func TestRemoveKinds(t *testing.T) {
	for _, viaOSRoot := range []bool{false, true} {
		r := newTree(t)
		if viaOSRoot {
			WithoutOpenat2(r)
		}
		base := filepath.Join(r.Dir(), "v2", "app")
		outside := t.TempDir()
		if err := os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []bool{false, true} {
			for _, kind := range []string{"file", "link", "dir"} {
				p := filepath.Join(base, kind)
				if err := os.MkdirAll(base, 0o755); err != nil {
					t.Fatal(err)
				}
				var err error
				switch kind {
				case "file":
					err = os.WriteFile(p, nil, 0o644)
				case "link":
					err = os.Symlink(outside, p)
				case "dir":
					err = os.Mkdir(p, 0o755)
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := r.remove(p, dir); err != nil {
					t.Errorf("os.Root %v: remove %s (dir %v): %v", viaOSRoot, kind, dir, err)
				}
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("os.Root %v: %s (dir %v) still there: %v", viaOSRoot, kind, dir, err)
				}
			}
		}
		full := filepath.Join(base, "full")
		if err := os.MkdirAll(filepath.Join(full, "x"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, dir := range []bool{false, true} {
			if err := r.remove(full, dir); err == nil {
				t.Errorf("os.Root %v: a directory not empty (dir %v) removed", viaOSRoot, dir)
			}
		}
		if err := os.Symlink(outside, filepath.Join(base, "evil")); err != nil {
			t.Fatal(err)
		}
		if err := r.remove(filepath.Join(base, "evil", "keep"), false); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("os.Root %v: through a link out of the tree: %v, want ErrOutsideRoot", viaOSRoot, err)
		}
		if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
			t.Errorf("os.Root %v: the file outside: %v", viaOSRoot, err)
		}
	}
}
