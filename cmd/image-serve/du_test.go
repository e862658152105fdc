package main

import (
	"encoding/json"
	"io/fs"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// TestDiskUsage: du counts a blob hard-linked into several repositories
// once per repository and once in the total, and unique bytes are what
// only that repository holds. The expected numbers are computed from the
// files themselves, independently of the code under test.
func TestDiskUsage(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "a:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "b:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "c:v1")

	type inode struct{ dev, ino uint64 }
	files := func(dir string) map[inode]int64 {
		out := map[inode]int64{}
		filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				fi, _ := e.Info()
				st := fi.Sys().(*syscall.Stat_t)
				out[inode{uint64(st.Dev), st.Ino}] = fi.Size()
			}
			return err
		})
		return out
	}
	fx := tree.Fixture(root)
	per := map[string]map[inode]int64{"a": files(fx.RepoDir("a")), "b": files(fx.RepoDir("b")), "c": files(fx.RepoDir("c"))}
	var total int64
	for _, size := range files(fx.V2Dir()) {
		total += size
	}
	var u catalog.Usage
	r := mustRun(t, "--root", root.Dir(), "du", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &u); err != nil {
		t.Fatal(err)
	}
	if u.Total != total {
		t.Errorf("total %d, want %d (each inode once)", u.Total, total)
	}
	var sum int64
	for _, ru := range u.Repositories {
		var bytes, unique int64
		for in, size := range per[ru.Repository] {
			bytes += size
			others := 0
			for repo, fs := range per {
				if _, ok := fs[in]; ok && repo != ru.Repository {
					others++
				}
			}
			if others == 0 {
				unique += size
			}
		}
		if ru.Bytes != bytes || ru.Unique != unique || ru.Shared != bytes-unique {
			t.Errorf("%s: %+v, want bytes %d, unique %d, shared %d", ru.Repository, ru, bytes, unique, bytes-unique)
		}
		sum += ru.Bytes
	}
	if len(u.Repositories) != 3 || u.Repositories[0].Shared == 0 || sum <= u.Total {
		t.Errorf("%+v: want a and b sharing their blobs, and the repositories summing to more than the tree", u)
	}
}
