package tree

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestState: a root holds a tree, or awaits one as an existing empty
// directory (lost+found aside); anything else is an error naming the root
// and what is wrong — and asking changes nothing on the disk.
func TestState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		make  func(t *testing.T, dir string) // dir does not exist yet
		want  RootState
		noTr  bool   // the error wraps ErrNoTree
		cause string // in the error
	}{
		{"no such directory", func(*testing.T, string) {}, 0, true, "no registry tree here: no such directory"},
		{"a file", func(t *testing.T, dir string) { write(t, dir, "") }, 0, true, "no registry tree here: not a directory"},
		{"empty", mkdir, AwaitsTree, false, ""},
		{"lost+found only", func(t *testing.T, dir string) { mkdir(t, filepath.Join(dir, "lost+found")) }, AwaitsTree, false, ""},
		{"something else", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "etc"), "") }, 0, true,
			"no registry tree here, and the directory is not empty (it holds etc)"},
		{"a dot file", func(t *testing.T, dir string) { write(t, filepath.Join(dir, ".bashrc"), "") }, 0, true, "(it holds .bashrc)"},
		{"v2 a file", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "v2"), "") }, 0, false, "is not a directory"},
		{"a tree", func(t *testing.T, dir string) {
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Init(); err != nil {
				t.Fatal(err)
			}
		}, HoldsTree, false, ""},
		{"v2 alone", func(t *testing.T, dir string) { mkdir(t, filepath.Join(dir, "v2")) }, HoldsTree, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "root")
			tc.make(t, dir)
			before := listing(t, dir)
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.State()
			if got != tc.want || (err == nil) != (tc.cause == "") || err != nil && !strings.Contains(err.Error(), tc.cause) {
				t.Errorf("State() = %v, %v; want %v and an error saying %q", got, err, tc.want, tc.cause)
			}
			if err != nil && (!strings.Contains(err.Error(), dir) || errors.Is(err, ErrNoTree) != tc.noTr) {
				t.Errorf("error %q: want it to name %s, and ErrNoTree %v", err, dir, tc.noTr)
			}
			if after := listing(t, dir); !slices.Equal(before, after) {
				t.Errorf("State changed the disk: %v, then %v", before, after)
			}
		})
	}
}

// TestInitCatalog: Init writes _catalog from the disk when there is none —
// an empty tree lists no repository instead of answering 404 — and never
// replaces one that is there, even when it is out of step.
func TestInitCatalog(t *testing.T) {
	r := newTree(t)
	if got, err := r.readCatalog(); err != nil || len(got) != 0 {
		t.Errorf("after Init of an empty root: _catalog %v, %v; want it empty", got, err)
	}
	if _, err := r.Publish(context.Background(), []Image{newTestImage("a", "v1", []byte("a")).Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	stale := []byte(`{"repositories":["gone"]}`)
	if err := os.WriteFile(r.catalogPath(), stale, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(r.catalogPath()); string(b) != string(stale) {
		t.Errorf("Init replaced a _catalog that was there: %s", b)
	}
	if err := os.Remove(r.catalogPath()); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.readCatalog(); err != nil || !slices.Equal(got, []string{"a"}) {
		t.Errorf("Init after _catalog was removed: %v, %v; want [a] from the disk", got, err)
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// listing is every path below dir (dir itself: "." or nothing).
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err == nil {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	return out
}
