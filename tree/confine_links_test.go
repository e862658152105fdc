package tree

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestReadDirLinks: readDirLinks lists a directory as readDir does and
// reads each link's target as readlink does — a link leading inside the
// tree, one leading out (its text, never followed), an absolute one — the
// same with openat2 and through os.Root; a directory reached through a
// link out of the tree is refused as readDir refuses it.
func TestReadDirLinks(t *testing.T) {
	for _, viaOSRoot := range []bool{false, true} {
		r := newTree(t)
		if viaOSRoot {
			WithoutOpenat2(r)
		}
		dir := filepath.Join(r.Dir(), "v2", "app", "manifests", tagLinksDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		outside := t.TempDir()
		want := map[string]string{"in": "../sha256:abc", "out": "../../../../../" + filepath.Base(outside), "abs": outside}
		for name, target := range want {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		entries, targets, err := r.readDirLinks(dir)
		if err != nil {
			t.Fatalf("os.Root %v: %v", viaOSRoot, err)
		}
		listed, err := r.readDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(listed) {
			t.Errorf("os.Root %v: %d entries, readDir lists %d", viaOSRoot, len(entries), len(listed))
		}
		for i := range min(len(entries), len(listed)) {
			if entries[i].Name() != listed[i].Name() || entries[i].Type() != listed[i].Type() {
				t.Errorf("os.Root %v: entry %d is %v, readDir's %v", viaOSRoot, i, entries[i], listed[i])
			}
		}
		if !maps.Equal(targets, want) {
			t.Errorf("os.Root %v: targets %v, want %v", viaOSRoot, targets, want)
		}
		for name, target := range want {
			if got, err := r.readlink(filepath.Join(dir, name)); err != nil || got != target {
				t.Errorf("os.Root %v: readlink %s = %q, %v; want %q", viaOSRoot, name, got, err, target)
			}
		}
		link := filepath.Join(r.Dir(), "v2", "evil")
		if err := os.Symlink(outside, link); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.readDirLinks(link); !errors.Is(err, ErrOutsideRoot) {
			t.Errorf("os.Root %v: a directory out of the tree: %v, want ErrOutsideRoot", viaOSRoot, err)
		}
		if _, _, err := r.readDirLinks(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("os.Root %v: a missing directory: %v, want fs.ErrNotExist", viaOSRoot, err)
		}
	}
}

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
