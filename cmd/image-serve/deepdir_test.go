package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testserver"
	"golang.org/x/sys/unix"
)

// mkdirDeep makes, below dir, a chain of directories whose path is longer
// than the system resolves in one call (PATH_MAX), one level at a time
// through directory descriptors, and returns the first of them.
func mkdirDeep(t *testing.T, dir string) string {
	t.Helper()
	name := strings.Repeat("d", 200)
	fd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 30 { // 30 × 201 bytes: past 4096
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	return filepath.Join(dir, name)
}

// TestDeepDirectoryIsOneProblem: a directory deeper than the system's
// path limit planted under v2/ is one problem verify names; every other
// command goes on with the rest of the tree. Guards: it failed verify,
// gc, list, du, migrate and repair tree-wide, and made an export exit 1
// after publishing its tag.
func TestDeepDirectoryIsOneProblem(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	for _, under := range []string{"v2", "v2/hello", "v2/hello/blobs"} {
		deep := mkdirDeep(t, filepath.Join(root.Dir(), under))
		r := run(t, "--root", root.Dir(), "verify")
		if r.code != 1 || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, "cannot be read") || !strings.HasPrefix(r.stdout, deep) {
			t.Errorf("deep directory under %s: verify exit %d\n%s%s\nwant one problem naming a directory below %s", under, r.code, r.stdout, r.stderr, deep)
		}
		for _, args := range [][]string{
			{"-q", "export", "oci:../../testdata/hello-oci:latest", "hello:again"},
			{"list"}, {"list", "--long"}, {"du"}, {"gc"}, {"gc", "--dry-run"}, {"migrate", "--dry-run"},
			{"delete", "hello:again"},
		} {
			if r := run(t, append([]string{"--root", root.Dir()}, args...)...); r.code != 0 {
				t.Errorf("deep directory under %s: image-serve %s: exit %d\n%s%s", under, strings.Join(args, " "), r.code, r.stdout, r.stderr)
			}
		}
		if err := os.RemoveAll(deep); err != nil {
			t.Fatal(err)
		}
	}
}
