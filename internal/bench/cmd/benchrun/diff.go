package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// diffImages is the diff section's image pair: an old and a new build of
// one service image, tags v1 and v2 of one repository, over the same base
// layer. The new build's top layer is the old one rebuilt, as a
// reproducible build makes it (unchanged files keep their bytes, modes
// and mtimes): some files rewritten, some chmodded, some gone, a new
// module added.
type diffImages struct {
	dir                                 string
	baseFiles, appFiles                 int
	baseContent, appContent             int64
	baseGzip, oldGzip, newGzip          int64
	baseEntries, oldEntries, newEntries int // tar entries of each layer
	changed, chmodded, deleted          int // files of the new top layer
	added                               int // paths, its new directory included
}

// treeFile is one regular file a generated layer holds.
type treeFile struct {
	path  string
	size  int64
	pool  []byte // text or random bytes, read from off on
	off   int
	mode  int64
	mtime time.Time
}

// treeFiles draws the files of a layer of about size bytes of content
// under dirFmt (two %d: a package and a module directory), sized as
// writeFilesImage sizes its base layer's files: 90% up to 8 KiB, 9.7% up
// to 256 KiB, 0.3% 1 to 16 MiB; two in three of text, one in three of
// random bytes; 20 files a directory.
func treeFiles(rng *rand.Rand, text, random []byte, dirFmt string, size int64, mtime time.Time) []treeFile {
	var fs []treeFile
	for i, content := 0, int64(0); content < size; i++ {
		var n int64
		switch c := rng.IntN(1000); {
		case c < 900:
			n = 64 + rng.Int64N(8<<10)
		case c < 997:
			n = 8<<10 + rng.Int64N(248<<10)
		default:
			n = 1<<20 + rng.Int64N(15<<20)
		}
		n = min(n, size-content+64)
		pool := text
		if rng.IntN(3) == 0 {
			pool = random
		}
		d := fmt.Sprintf(dirFmt, i/400, (i/20)%20)
		fs = append(fs, treeFile{path: fmt.Sprintf("%s/file%06d.py", d, i), size: n, pool: pool, off: rng.IntN(len(pool)), mode: 0o644, mtime: mtime})
		content += n
	}
	return fs
}

// writeTreeLayer writes files as a gzip layer blob, each directory
// (0755, mtime dirTime) before its first file; entries is the tar's.
func writeTreeLayer(blobs string, files []treeFile, dirTime time.Time) (l layerBlob, entries int, err error) {
	l, err = writeTarLayer(blobs, func(tw *tar.Writer) error {
		dirs := map[string]bool{}
		add := func(h *tar.Header) error {
			h.Format = tar.FormatPAX
			entries++
			return tw.WriteHeader(h)
		}
		for _, f := range files {
			d := path.Dir(f.path)
			for i := range len(d) + 1 {
				if i < len(d) && d[i] != '/' || dirs[d[:i]] {
					continue
				}
				dirs[d[:i]] = true
				if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d[:i] + "/", Mode: 0o755, ModTime: dirTime}); err != nil {
					return err
				}
			}
			if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: f.path, Size: f.size, Mode: f.mode, ModTime: f.mtime}); err != nil {
				return err
			}
			if err := writeFrom(tw, f.pool, f.off, f.size); err != nil {
				return err
			}
		}
		return nil
	})
	return l, entries, err
}

// writeDiffImages writes an OCI layout into dir holding refs v1 and v2:
// a base layer of about baseSize bytes of content, shared, and a top
// layer of about appSize, old and rebuilt.
func writeDiffImages(dir string, baseSize, appSize int64, seed uint64) (*diffImages, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	img := &diffImages{dir: dir}
	rng := rand.New(rand.NewPCG(seed, 1))
	text, random := textPool(rng, 4<<20), make([]byte, 4<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	built := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rebuilt := built.Add(24 * time.Hour)
	baseFiles := treeFiles(rng, text, random, "usr/lib64/pkg%03d/lib%02d", baseSize, built)
	oldFiles := treeFiles(rng, text, random, "usr/lib/python3/site-packages/service/pkg%03d/mod%02d", appSize, built)
	// The rebuild: every 20th file rewritten (every other one of them to
	// a new size), every 100th chmodded, every 50th gone (the index
	// classes are disjoint), and a new module of 100 files.
	var newFiles []treeFile
	for i, f := range oldFiles {
		switch {
		case i%50 == 7:
			img.deleted++
			continue
		case i%20 == 3:
			f.off = (f.off + 4099) % len(f.pool)
			if i%40 == 3 {
				f.size += 17
			}
			f.mtime = rebuilt
			img.changed++
		case i%100 == 11:
			f.mode = 0o755
			img.chmodded++
		}
		newFiles = append(newFiles, f)
	}
	img.added++ // the new module's directory
	for j := range 100 {
		newFiles = append(newFiles, treeFile{path: fmt.Sprintf("usr/lib/python3/site-packages/service/newmod/file%03d.py", j),
			size: 64 + int64(j)*97, pool: text, off: j * 8191, mode: 0o644, mtime: rebuilt})
		img.added++
	}
	for _, f := range baseFiles {
		img.baseContent += f.size
	}
	for _, f := range oldFiles {
		img.appContent += f.size
	}
	img.baseFiles, img.appFiles = len(baseFiles), len(oldFiles)
	base, n, err := writeTreeLayer(blobs, baseFiles, built)
	if err != nil {
		return nil, err
	}
	img.baseEntries, img.baseGzip = n, base.size
	old, n, err := writeTreeLayer(blobs, oldFiles, built)
	if err != nil {
		return nil, err
	}
	img.oldEntries, img.oldGzip = n, old.size
	rb, n, err := writeTreeLayer(blobs, newFiles, built)
	if err != nil {
		return nil, err
	}
	img.newEntries, img.newGzip = n, rb.size
	return img, writeLayoutImages(dir, blobs, []layoutImage{{ref: "v1", layers: []layerBlob{base, old}}, {ref: "v2", layers: []layerBlob{base, rb}}})
}

// diffBench is `image-serve diff` of an old and a new build of a service
// image (a shared base, a rebuilt top layer), cold (no layer index) and
// cached, against what a user without image-serve does: list each image's
// flattened file system, `crane export IMAGE - | tar -tv | sort`, and
// diff the two listings, the two pipelines side by side as bash's
// process substitution runs them. It is the fairest reference there is:
// crane streams as diff does and writes nothing to disk, where skopeo
// copy + umoci unpack + diff -r writes both root file systems out first.
// It is also the lesser work: a listing shows size, mode, owner and mtime
// (to the minute), not content, so it misses a file rewritten to the same
// size and time, which diff, comparing content digests, reports.
func (e *env) diffBench() error {
	crane, tarBin, timeBin, err := e.craneTools("diff")
	if err != nil {
		return err
	}
	bash, err := lookPath("bash")
	if err != nil {
		return err
	}
	start := time.Now()
	img, err := writeDiffImages(e.path("diff-oci"), e.sz.baseLayer, e.sz.baseLayer/2, 23)
	if err != nil {
		return err
	}
	logf("generated the diff images: base %d entries (%d files, %s, gzip %s), top layer %d entries (%d files, %s, gzip %s), rebuilt %d entries (gzip %s), in %v",
		img.baseEntries, img.baseFiles, mib(img.baseContent), mib(img.baseGzip), img.oldEntries, img.appFiles, mib(img.appContent), mib(img.oldGzip),
		img.newEntries, mib(img.newGzip), time.Since(start).Round(time.Millisecond))
	tree := e.path("diff-tree")
	const repo = "bench/diff"
	for _, t := range []string{"v1", "v2"} {
		args := []string{"--root", tree, "--quiet", "export", "oci:" + img.dir + ":" + t, repo + ":" + t}
		e.rep.cmd("diff (set-up, untimed): the tree", shellLine(e.bin, args))
		if _, err := command(e.bin, args...); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(img.dir); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	listen := addr(port)
	serveArgs := []string{"--root", tree, "serve", "--listen", listen}
	e.rep.cmd("diff (set-up): crane's source", shellLine(e.bin, serveArgs))
	d, err := startDaemon("image-serve serve", exec.Command(e.bin, serveArgs...), e.path("diff-serve.log"), "http://"+listen+"/v2/")
	if err != nil {
		return err
	}
	defer d.stop()

	diffArgs := []string{"--root", tree, "diff", repo + ":v1", repo + ":v2"}
	e.rep.cmd("diff, cold (the layer index removed before each run) and cached", shellLine(e.bin, diffArgs))
	listing := func(t string) string {
		return shellLine(crane, []string{"export", "--insecure", listen + "/" + repo + ":" + t, "-"}) + " | " +
			shellLine(tarBin, []string{"-tv"}) + " | sort"
	}
	e.rep.cmd("diff, reference", "diff <("+listing("v1")+") <("+listing("v2")+")"+
		" — run as two background pipelines into files, then diff of the files, so that each process's GNU time record is written before the run ends")
	// The reference as bash runs it: each process under GNU time, whose
	// record for it is read back after the run. The listings go to files
	// rather than through process substitution because bash does not
	// wait for a substituted process: its record could be read before
	// time wrote it.
	procs := []string{"crane-v1", "tar-v1", "sort-v1", "crane-v2", "tar-v2", "sort-v2", "diff"}
	rss := func(p string) string { return e.path("diff-rss-" + p) }
	timed := func(p string, argv ...string) string {
		if timeBin == "" {
			return shellLine(argv[0], argv[1:])
		}
		return shellLine(timeBin, append([]string{"-f", "%M %U %S", "-o", rss(p)}, argv...))
	}
	list := func(t string) string { return e.path("diff-" + t + ".list") }
	pipe := func(t string) string {
		return "( " + timed("crane-"+t, crane, "export", "--insecure", listen+"/"+repo+":"+t, "-") + " | " +
			timed("tar-"+t, tarBin, "-tv") + " | " + timed("sort-"+t, "sort") + " > " + quote(list(t)) + " )"
	}
	script := strings.Join([]string{
		"set -o pipefail",
		pipe("v1") + " & old=$!",
		pipe("v2") + " & new=$!",
		"wait $old; a=$?; wait $new; b=$?",
		`[ $a = 0 ] && [ $b = 0 ] || { echo "a listing failed: $a $b" >&2; exit 2; }`,
		timed("diff", "diff", list("v1"), list("v2")) + "; s=$?",
		// diff: 0 the same, 1 different, 2 trouble.
		`[ $s -le 1 ] || exit 2`,
	}, "\n")
	// readRecord reads GNU time's record of p: its last line is the
	// format's, a line before it says the command failed (for diff, its
	// exit status 1 says the listings differ, which they do).
	readRecord := func(p string) (int64, time.Duration, error) {
		b, err := os.ReadFile(rss(p))
		if err != nil {
			return 0, 0, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 1 && !(p == "diff" && lines[0] == "Command exited with non-zero status 1") {
			return 0, 0, fmt.Errorf("%s: %s", p, lines[0])
		}
		var kib int64
		var user, sys float64
		if _, err := fmt.Sscan(lines[len(lines)-1], &kib, &user, &sys); err != nil {
			return 0, 0, fmt.Errorf("GNU time wrote %q for %s: %w", b, p, err)
		}
		return kib << 10, time.Duration((user + sys) * float64(time.Second)), nil
	}
	probe := func(tag string, c *exec.Cmd) *rssProbe { return newRSSProbe(timeBin, e.path("diff-rss-"+tag), c) }
	const (
		cold   = "image-serve diff, cold"
		cached = "image-serve diff, cached"
		ref    = "crane export \\| tar -tv \\| sort, twice; diff"
	)
	cpu := map[string][]time.Duration{}
	peaks := map[string]int64{} // the reference's processes' peak RSS
	var oursOut, refOut []byte
	diffRun := func(name string) func(int) (run, error) {
		return func(int) (run, error) {
			p := probe("ours", exec.Command(e.bin, diffArgs...))
			r, err := command(p.cmd.Path, p.cmd.Args[1:]...)
			var t time.Duration
			err = p.peak(&r.maxRSS, &t, err)
			cpu[name] = append(cpu[name], t)
			oursOut = r.stdout
			return r, err
		}
	}
	refRun := func(int) (run, error) {
		for _, p := range procs {
			os.Remove(rss(p))
		}
		r, err := command(bash, "-c", script)
		if err != nil {
			return r, err
		}
		refOut = r.stdout
		if timeBin == "" {
			return r, nil
		}
		var total time.Duration
		r.maxRSS = 0
		for _, p := range procs {
			m, t, err := readRecord(p)
			if err != nil {
				return r, err
			}
			total += t
			r.maxRSS = max(r.maxRSS, m)
			tool, _, _ := strings.Cut(p, "-") // crane-v1 and crane-v2: crane
			peaks[tool] = max(peaks[tool], m)
		}
		cpu[ref] = append(cpu[ref], total)
		return r, nil
	}
	// Untimed: both find the changes, and the page cache is warm with the
	// blobs for both.
	if _, err := diffRun("warm-up")(0); err != nil {
		return err
	}
	if _, err := refRun(0); err != nil {
		return err
	}
	kinds := map[byte]int{}
	for _, l := range strings.Split(strings.TrimSpace(string(oursOut)), "\n") {
		if l != "" {
			kinds[l[0]]++
		}
	}
	if want := (map[byte]int{'A': img.added, 'C': img.changed + img.chmodded, 'D': img.deleted}); fmt.Sprint(kinds) != fmt.Sprint(want) {
		return fmt.Errorf("image-serve diff found %v (A, C, D lines), the rebuild made %v", kinds, want)
	}
	var older, newer int
	for _, l := range bytes.Split(refOut, []byte("\n")) {
		switch {
		case bytes.HasPrefix(l, []byte("< ")):
			older++
		case bytes.HasPrefix(l, []byte("> ")):
			newer++
		}
	}
	logf("diff: %d added, %d changed, %d deleted; the listings' diff: %d lines only in v1's, %d only in v2's", kinds['A'], kinds['C'], kinds['D'], older, newer)
	cpu = map[string][]time.Duration{}
	index := filepath.Join(tree, ".image-serve", "layers")
	res, err := e.coldCached(index, cold, diffRun(cold), cached, diffRun(cached), ref, refRun)
	if err != nil {
		return err
	}
	cpuOf := func(name string) string { return cpuTimeNote(timeBin, cpu[name]) }
	what := fmt.Sprintf("diff of two builds of an image: a shared %s base layer (%d files, gzip %s), a %s top layer (%d files, gzip %s) rebuilt with %d files rewritten, %d chmodded, %d deleted, %d paths added",
		mib(img.baseContent), img.baseFiles, mib(img.baseGzip), mib(img.appContent), img.appFiles, mib(img.oldGzip),
		img.changed, img.chmodded, img.deleted, img.added)
	refVal := dur(res[ref].median())
	var refNote string
	if timeBin != "" {
		refNote = fmt.Sprintf("; reference: max RSS crane %s, tar %s, sort %s, diff %s", mib(peaks["crane"]), mib(peaks["tar"]), mib(peaks["sort"]), mib(peaks["diff"])) + cpuOf(ref)
	}
	sp := float64(res[ref].median()) / float64(res[cold].median())
	e.rep.add(row{what: what + ", cold (no layer index)", ours: cold, oursVal: dur(res[cold].median()), ref: ref, refVal: refVal,
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: "no target; max RSS " + mib(res[cold].maxRSS()) + cpuOf(cold) + refNote +
			fmt.Sprintf("; the reference lists both images side by side, crane reading the blobs from image-serve's embedded server on loopback (whose CPU time is not counted); it compares listings (size, mode, owner, mtime to the minute), not content, and crane reads the shared base layer once for each image, where diff reads it once; the listings' diff printed %d lines of v1, %d of v2", older, newer)})
	sp = float64(res[ref].median()) / float64(res[cached].median())
	e.rep.add(row{what: what + ", cached (second run)", ours: cached, oursVal: dur(res[cached].median()), ref: ref, refVal: refVal,
		ratio: fmt.Sprintf("%.1f× faster", sp),
		notes: "no target; max RSS " + mib(res[cached].maxRSS()) + cpuOf(cached) + "; no layer opened: the entry lists from the index"})
	return nil
}
