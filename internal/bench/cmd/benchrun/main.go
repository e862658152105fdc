// Command benchrun is `make bench`: it builds the data sets, starts the
// servers and drives the image-serve binary against the reference tools
// (skopeo, regsync, nginx, Apache, the CNCF distribution registry as the
// source, Go's crypto/sha256 as the hashing bound), side by side in one run, and
// prints one table of medians and ratios, which it also writes with the
// exact command lines and the machine's description to RESULTS.md.
//
// It drives processes only, never the product's packages, so that their
// refactoring does not break it; the benchmarks of the hot functions are
// the product packages' own `go test -bench` ones, which it runs last.
//
//	go run ./internal/bench/cmd/benchrun -bin bin/image-serve -registry bin/registry -regsync bin/regsync -out bench/RESULTS.md
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// sizes is what one run builds and how often it repeats each measurement.
type sizes struct {
	baseLayer, middleLayer, topLayer, armBase int64
	services                                  int
	bigLayer, hugeLayer, serveBlob            int64
	gcRepos, gcTags                           int
	coldRounds, fastRounds, serveRounds       int
	smallSecs, largeSecs                      int
	goBenchTime, goBenchTimeRead              string
}

var full = sizes{
	baseLayer: 256 << 20, middleLayer: 32 << 20, topLayer: 2 << 20, armBase: 64 << 20,
	services: 24,
	bigLayer: 1 << 30, hugeLayer: 2 << 30, serveBlob: 64 << 20,
	gcRepos: 1000, gcTags: 20,
	coldRounds: 3, fastRounds: 5, serveRounds: 3,
	smallSecs: 3, largeSecs: 4,
	goBenchTime: "3x", goBenchTimeRead: "200ms",
}

// quick is BENCH_QUICK=1: every row, small sizes, one round each.
var quick = sizes{
	baseLayer: 16 << 20, middleLayer: 4 << 20, topLayer: 256 << 10, armBase: 4 << 20,
	services: 20,
	bigLayer: 64 << 20, hugeLayer: 128 << 20, serveBlob: 16 << 20,
	gcRepos: 100, gcTags: 20,
	coldRounds: 1, fastRounds: 3, serveRounds: 1,
	smallSecs: 1, largeSecs: 1,
	goBenchTime: "1x", goBenchTimeRead: "20ms",
}

// env is what every section uses.
type env struct {
	bin, registry, regsync, skopeo, wrk, nginx, apache string
	work                                               string
	sz                                                 sizes
	quick                                              bool
	rep                                                *report

	strace, curl string // optional: the no-flush rows and the loopback bound are left out without them

	src      *daemon     // the distribution registry, once started
	srcAddr  string      // its host:port
	plain    string      // plainexport, once built
	uc       *undercloud // the set, once generated and pushed
	coldTree string      // a tree the cold export made of the set, kept
	bigRSS   int64       // peak RSS of the single-layer export
	fileSet  *filesSet   // the files image's tree, served, once made
}

// close stops what the sections started.
func (e *env) close() {
	if e.src != nil {
		e.src.stop()
	}
	if e.fileSet != nil {
		e.fileSet.d.stop()
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func main() {
	bin := flag.String("bin", "bin/image-serve", "the image-serve binary")
	registry := flag.String("registry", "bin/registry", "the CNCF distribution registry binary")
	regsync := flag.String("regsync", "bin/regsync", "regclient's regsync binary (the sync section's reference)")
	out := flag.String("out", "bench/RESULTS.md", "where to write the results")
	work := flag.String("work", filepath.Join(os.TempDir(), "image-serve-bench"), "work directory (emptied first, removed after unless -keep)")
	profiles := flag.String("profiles", "bench/PROFILES.md", "hand-written profiles of the missed targets, appended to the results when present")
	keep := flag.Bool("keep", false, "keep the work directory")
	only := flag.String("only", "", "comma-separated sections to run (export,sync,single,rss,files,cat,diff,save,localstore,bundle,replicate,gc,serve,tiers,gotest); default all")
	flag.Parse()
	e := &env{work: *work, sz: full, rep: &report{}}
	if os.Getenv("BENCH_QUICK") != "" && os.Getenv("BENCH_QUICK") != "0" {
		e.sz, e.quick = quick, true
	}
	var err error
	if e.bin, err = filepath.Abs(*bin); err == nil {
		e.registry, err = filepath.Abs(*registry)
	}
	if err == nil {
		e.regsync, err = filepath.Abs(*regsync)
	}
	if err == nil {
		err = e.lookTools()
	}
	if err == nil {
		err = e.prepareWork()
	}
	if err != nil {
		fatal(err)
	}
	cleanup := func() {
		e.close()
		if !*keep {
			os.RemoveAll(e.work)
		}
	}
	e.rep.machine = machine(e)
	sections := []struct {
		name string
		f    func() error
	}{
		{"export", e.exports},
		{"sync", e.syncs},
		{"single", e.singleLayer},
		{"rss", e.peakRSS},
		{"files", e.filesBench},
		{"cat", e.catBench},
		{"diff", e.diffBench},
		{"save", e.saves},
		{"localstore", e.localStore},
		{"bundle", e.bundles},
		{"replicate", e.replicas},
		{"gc", e.gcTree},
		{"serve", e.serving},
		{"tiers", e.tiers},
		{"gotest", e.goBenchmarks},
	}
	start := time.Now()
	failed := false
	for _, s := range sections {
		if *only != "" && !contains(strings.Split(*only, ","), s.name) {
			continue
		}
		logf("== %s", s.name)
		syscall.Sync() // no writeback of an earlier section while timing
		t := time.Now()
		if err := s.f(); err != nil {
			logf("%s failed: %v", s.name, err)
			e.rep.note("**%s failed**: %v", s.name, firstLine(err.Error()))
			failed = true
		}
		logf("== %s took %v", s.name, time.Since(t).Round(time.Second))
	}
	e.rep.took = time.Since(start)
	e.rep.quick = e.quick
	if b, err := os.ReadFile(*profiles); err == nil {
		e.rep.appendix = append(e.rep.appendix, string(b))
	}
	text := e.rep.markdown()
	fmt.Println(e.rep.table())
	cleanup()
	if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
		fatal(err)
	}
	logf("wrote %s (%v in all)", *out, e.rep.took.Round(time.Second))
	if failed {
		os.Exit(1)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "benchrun:", err)
	os.Exit(1)
}

func (e *env) lookTools() error {
	find := func(names ...string) (string, error) {
		for _, n := range names {
			for _, p := range []string{n, "/usr/sbin/" + n, "/usr/bin/" + n} {
				if path, err := lookPath(p); err == nil {
					return path, nil
				}
			}
		}
		return "", fmt.Errorf("%s not installed: run make bench-deps", names[0])
	}
	var err error
	for _, t := range []struct {
		dst   *string
		names []string
	}{
		{&e.skopeo, []string{"skopeo"}},
		{&e.wrk, []string{"wrk"}},
		{&e.nginx, []string{"nginx"}},
		{&e.apache, []string{"apache2", "httpd"}},
	} {
		if *t.dst, err = find(t.names...); err != nil {
			return err
		}
	}
	// Optional tools: their rows are left out when missing.
	e.strace, _ = find("strace")
	e.curl, _ = find("curl")
	for _, p := range []string{e.bin, e.registry, e.regsync} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: run make build bench-deps", err)
		}
	}
	return nil
}

// prepareWork empties the work directory and makes it searchable by the
// web servers' workers.
func (e *env) prepareWork() error {
	if err := os.RemoveAll(e.work); err != nil {
		return err
	}
	if err := os.MkdirAll(e.work, 0o755); err != nil {
		return err
	}
	return os.Chmod(e.work, 0o755)
}

func (e *env) path(parts ...string) string {
	return filepath.Join(append([]string{e.work}, parts...)...)
}
