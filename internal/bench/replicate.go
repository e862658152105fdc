package bench

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
)

// ReplicateRepo copies repository tmpl of the tree whose v2 directory is
// v2 to each of repos, as large trees for benchmarks are made: blobs
// hard-linked to the template's, hard links within the repository kept,
// symlinks as they are, other files byte for byte, except tags/list, which
// names its repository. Going through the tree's writers for every
// repository would fsync each file: minutes for a tree only read
// afterwards. It does not rewrite _catalog.
func ReplicateRepo(v2, tmpl string, repos []string) error {
	src := filepath.Join(v2, tmpl)
	type entry struct {
		rel, link string // link: a symlink's target
		data      []byte
		blob      bool   // hard-linked to the template's
		sameAs    string // rel of an earlier entry of the same inode
	}
	var entries []entry
	inodes := map[uint64]string{}
	var tagsList []byte
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		ino := fi.Sys().(*syscall.Stat_t).Ino
		switch {
		case rel == filepath.Join("tags", "list"):
			tagsList, err = os.ReadFile(path)
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			entries = append(entries, entry{rel: rel, link: target})
			return err
		case filepath.Base(filepath.Dir(path)) == "blobs":
			entries = append(entries, entry{rel: rel, blob: true})
		case inodes[ino] != "":
			entries = append(entries, entry{rel: rel, sameAs: inodes[ino]})
		default:
			inodes[ino] = rel
			data, err := os.ReadFile(path)
			entries = append(entries, entry{rel: rel, data: data})
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	oldName, _ := json.Marshal(tmpl)
	copyRepo := func(repo string) error {
		dst := filepath.Join(v2, repo)
		for _, e := range entries {
			p := filepath.Join(dst, e.rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			var err error
			switch {
			case e.link != "":
				err = os.Symlink(e.link, p)
			case e.blob:
				err = os.Link(filepath.Join(src, e.rel), p)
			case e.sameAs != "":
				err = os.Link(filepath.Join(dst, e.sameAs), p)
			default:
				err = os.WriteFile(p, e.data, 0o644)
			}
			if err != nil {
				return err
			}
		}
		newName, _ := json.Marshal(repo)
		if err := os.MkdirAll(filepath.Join(dst, "tags"), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, "tags", "list"), bytes.Replace(tagsList, oldName, newName, 1), 0o644)
	}
	next := make(chan string)
	errs := make(chan error, len(repos))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for repo := range next {
				errs <- copyRepo(repo)
			}
		})
	}
	for _, r := range repos {
		next <- r
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
