package gc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Size of the benchmark tree: 1,000 repositories of 20 tags, 20,000
// manifests, every layer hard-linked across all repositories.
const (
	benchRepos = 1000
	benchTags  = 20
)

// BenchmarkGC collects a tree of benchRepos × benchTags small image
// manifests. "steady" is the daily cron run: mark everything, nothing to
// delete. "dry-run" finds 2 untagged manifests and their unique blobs per
// repository past the grace period, so it also plans deletions and counts
// links, without changing the tree.
func BenchmarkGC(b *testing.B) {
	tr := openTree(b, b.TempDir())
	start := time.Now()
	generateBenchTree(tr)
	syscall.Sync() // no writeback of the generated tree while timing
	b.Logf("generated %d repositories × %d tags in %v", benchRepos, benchTags, time.Since(start).Round(time.Millisecond))

	b.Run("dry-run", func(b *testing.B) {
		o := Options{Grace: time.Hour, Now: later, DryRun: true}
		var rep *Report
		for b.Loop() {
			var err error
			if rep, err = Collect(tr.root, o); err != nil {
				b.Fatal(err)
			}
		}
		if rep.ManifestsKept != benchRepos*benchTags || rep.ManifestsDeleted != 2*benchRepos {
			b.Fatalf("report %+v: want %d kept, %d deleted", rep, benchRepos*benchTags, 2*benchRepos)
		}
	})
	b.Run("steady", func(b *testing.B) {
		o := Options{Grace: time.Hour, Now: later}
		if _, err := Collect(tr.root, o); err != nil { // the garbage goes once, untimed
			b.Fatal(err)
		}
		var rep *Report
		for b.Loop() {
			var err error
			if rep, err = Collect(tr.root, o); err != nil {
				b.Fatal(err)
			}
		}
		if rep.ManifestsKept != benchRepos*benchTags || rep.ManifestsDeleted != 0 || rep.Repositories != benchRepos {
			b.Fatalf("report %+v: want %d repositories, %d manifests kept, none deleted", rep, benchRepos, benchRepos*benchTags)
		}
		b.ReportMetric(float64(rep.ManifestsKept), "manifests")
	})
}

// generateBenchTree writes one repository with tree's writers, then
// copies it benchRepos-1 times: blobs hard-linked, manifests, headers and
// type maps copied byte for byte (going through PutManifest and PutTag for
// 20,000 manifests would fsync each and rewrite _catalog per tag, minutes
// for a tree the benchmark only reads).
func generateBenchTree(tr *fixture) {
	const tmpl = "bench/r0000"
	base := layer("base", 4096)
	for i := range benchTags {
		img := tr.image(tmpl, fmt.Sprint("tag", i), base, layer(fmt.Sprint("layer", i), 512))
		tr.tag(tmpl, fmt.Sprint("v", i), img)
	}
	for i := range 2 { // untagged garbage with a unique layer each
		tr.image(tmpl, fmt.Sprint("garbage", i), layer(fmt.Sprint("garbage", i), 256))
	}
	r := tr.root
	src := r.RepoDir(tmpl)
	// Everything but tags/list (RefreshTags writes it: it names its
	// repository) is copied as it is: blobs and other hard links as hard
	// links, symlinks as symlinks, files byte for byte.
	type entry struct {
		rel, link string // link: symlink target
		data      []byte
		sameAs    string // rel of an earlier entry of the same inode
	}
	var (
		entries []entry
		err     error
	)
	inodes := map[uint64]string{}
	err = filepath.WalkDir(src, func(path string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == filepath.Join("tags", "list") {
			return nil
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		switch ino := fi.Sys().(*syscall.Stat_t).Ino; {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(path)
			entries = append(entries, entry{rel: rel, link: target})
			return err
		case filepath.Base(filepath.Dir(path)) == "blobs":
			entries = append(entries, entry{rel: rel, sameAs: rel}) // linked from the template
		case inodes[ino] != "":
			entries = append(entries, entry{rel: rel, sameAs: inodes[ino]})
		default:
			inodes[ino] = rel
			b, err := os.ReadFile(path)
			entries = append(entries, entry{rel: rel, data: b})
			return err
		}
		return nil
	})
	if err != nil {
		tr.t.Fatal(err)
	}
	list, _, err := r.ReadTagsList(tmpl)
	if err != nil {
		tr.t.Fatal(err)
	}
	copyRepo := func(n int) error {
		repo := fmt.Sprintf("bench/r%04d", n)
		dst := r.RepoDir(repo)
		for _, e := range entries {
			p := filepath.Join(dst, e.rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			var err error
			switch {
			case e.link != "":
				err = os.Symlink(e.link, p)
			case e.sameAs != "" && filepath.Base(filepath.Dir(e.rel)) == "blobs":
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
		// What RefreshTags writes, without its fsync per repository.
		b, err := json.Marshal(map[string]any{"name": repo, "tags": list})
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(r.TagsListPath(repo)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(r.TagsListPath(repo), b, 0o644)
	}
	next := make(chan int)
	errs := make(chan error, benchRepos)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for n := range next {
				errs <- copyRepo(n)
			}
		})
	}
	for n := 1; n < benchRepos; n++ {
		next <- n
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			tr.t.Fatal(err)
		}
	}
	if err := r.RefreshCatalog(); err != nil {
		tr.t.Fatal(err)
	}
}
