package gc

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
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
// copies it benchRepos-1 times (bench.ReplicateRepo: going through
// PutManifest and PutTag for 20,000 manifests would fsync each, minutes
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
	var copies []string
	for n := 1; n < benchRepos; n++ {
		copies = append(copies, fmt.Sprintf("bench/r%04d", n))
	}
	if err := bench.ReplicateRepo(tr.fx.V2Dir(), tmpl, copies); err != nil {
		tr.t.Fatal(err)
	}
	if err := tr.fx.RefreshCatalog(); err != nil {
		tr.t.Fatal(err)
	}
}
