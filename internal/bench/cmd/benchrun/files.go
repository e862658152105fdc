package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
)

// craneBin is go-containerregistry's crane, built by `make bench` at the
// version go.mod pins: the files section's reference.
var craneBin = flag.String("crane", "bin/crane", "go-containerregistry's crane binary (the files section's reference)")

// filesImage is the generated image the files section reads: a big base
// layer of many files of mixed sizes and a small top layer that changes,
// deletes (whiteouts) and replaces (an opaque directory) some of them, so
// that both tools flatten and neither takes a single-layer shortcut.
type filesImage struct {
	dir, ref          string
	entries           int   // tar entries of the base layer
	files             int   // regular files among them
	content           int64 // bytes of file content in the base layer
	baseGzip, topGzip int64 // compressed sizes
	topEntries        int
	// lastFile is the base layer's last regular file that the top layer
	// leaves alone (cat's honest case: a reader of the layer reaches it
	// at the end), lastSize its size.
	lastFile string
	lastSize int64
}

// filesSet is the files section's image exported into a tree and served
// by image-serve's embedded server, crane's source: what the files and
// cat sections read. It is made once per run and kept until the run
// ends (env.close stops the server).
type filesSet struct {
	img    *filesImage
	tree   string
	name   string // REPO:TAG of the image in the tree
	listen string // host:port of the embedded server
	d      *daemon
}

// ensureFilesSet generates the files image, exports it into a tree of its
// own and serves that tree, once.
func (e *env) ensureFilesSet() (*filesSet, error) {
	if e.fileSet != nil {
		return e.fileSet, nil
	}
	start := time.Now()
	img, err := writeFilesImage(e.path("files-oci"), e.sz.bigLayer, 21)
	if err != nil {
		return nil, err
	}
	// Once exported, the tree holds the blobs: the layout is not read again.
	defer os.RemoveAll(img.dir)
	logf("generated the files image: base layer %d entries (%d files, %s of content; gzip %s), top layer %d entries, in %v",
		img.entries, img.files, mib(img.content), mib(img.baseGzip), img.topEntries, time.Since(start).Round(time.Millisecond))

	s := &filesSet{img: img, tree: e.path("files-tree"), name: "bench/files:v1"}
	exportArgs := []string{"--root", s.tree, "--quiet", "export", "oci:" + img.dir + ":" + img.ref, s.name}
	e.rep.cmd("files and cat (set-up, untimed): the tree", shellLine(e.bin, exportArgs))
	if _, err := command(e.bin, exportArgs...); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.listen = addr(port)
	serveArgs := []string{"--root", s.tree, "serve", "--listen", s.listen}
	e.rep.cmd("files and cat (set-up): crane's source", shellLine(e.bin, serveArgs))
	if s.d, err = startDaemon("image-serve serve", exec.Command(e.bin, serveArgs...), e.path("files-serve.log"), "http://"+s.listen+"/v2/"); err != nil {
		return nil, err
	}
	e.fileSet = s
	return s, nil
}

// craneTools are the reference tools of the sections that read inside
// images: crane (built by make bench), tar, and GNU time for each
// process's peak RSS ("" without it, noted under section).
// coldCached rotates a view run cold (its layer index removed before
// each round), the same run cached (every cold run leaves the index) and
// the reference.
func (e *env) coldCached(index, cold string, coldRun func(int) (run, error), cached string, cachedRun func(int) (run, error),
	ref string, refRun func(int) (run, error)) (map[string]samples, error) {
	return rotate(e.sz.coldRounds, []contender{
		{name: cold, setup: func(int) error { return os.RemoveAll(index) }, run: coldRun},
		{name: cached, run: cachedRun},
		{name: ref, run: refRun},
	})
}

// cpuTimeNote is the median CPU time of a contender's rounds for a row's
// notes, "" when GNU time was not there to measure it.
func cpuTimeNote(timeBin string, cpu []time.Duration) string {
	if timeBin == "" {
		return ""
	}
	return "; CPU time " + dur(bench.Median(cpu))
}

func (e *env) craneTools(section string) (crane, tarBin, timeBin string, err error) {
	if crane, err = filepath.Abs(*craneBin); err != nil {
		return "", "", "", err
	}
	if _, err := os.Stat(crane); err != nil {
		return "", "", "", fmt.Errorf("%w: run make bench (it builds bin/crane)", err)
	}
	if tarBin, err = lookPath("tar"); err != nil {
		return "", "", "", err
	}
	if timeBin, err = lookPath("/usr/bin/time"); err == nil {
		e.rep.cmd(section+", peak RSS and CPU time of each process", shellLine(timeBin, []string{"-f", "%M %U %S", "-o", "FILE", "COMMAND..."})+
			" (GNU time: ru_maxrss of a child it forked, not that of one benchrun spawned, which starts at benchrun's own)")
		return crane, tarBin, timeBin, nil
	}
	e.rep.note("%s: no GNU time (/usr/bin/time): peak RSS is getrusage's, at least benchrun's own RSS whatever the command's", section)
	return crane, tarBin, "", nil
}

// filesBench is `image-serve files` of an image with one big layer (and
// a small one over it), cold (no layer index) and cached (the second
// run), against `crane export
// IMAGE - | tar -t` of the same image from image-serve's embedded server:
// the nearest thing another tool has to listing an image's final file
// system.
func (e *env) filesBench() error {
	crane, tarBin, timeBin, err := e.craneTools("files")
	if err != nil {
		return err
	}
	s, err := e.ensureFilesSet()
	if err != nil {
		return err
	}
	img, tree, name, listen := s.img, s.tree, s.name, s.listen

	filesArgs := []string{"--root", tree, "files", name}
	craneArgs := []string{"export", "--insecure", listen + "/" + name, "-"}
	e.rep.cmd("files, cold (the layer index removed before each run) and cached", shellLine(e.bin, filesArgs))
	e.rep.cmd("files, reference", shellLine(crane, craneArgs)+" | "+shellLine(tarBin, []string{"-t"}))
	probe := func(tag string, c *exec.Cmd) *rssProbe { return newRSSProbe(timeBin, e.path("files-rss-"+tag), c) }
	const (
		cold   = "image-serve files, cold"
		cached = "image-serve files, cached"
		ref    = "crane export piped to tar -t"
	)
	// cpu is each contender's CPU time (user and system) per round: on
	// a busy machine the wall times say as much about who got the cores.
	cpu := map[string][]time.Duration{}
	filesRun := func(name string) func(int) (run, error) {
		return func(int) (run, error) {
			p := probe("files", exec.Command(e.bin, filesArgs...))
			r, err := command(p.cmd.Path, p.cmd.Args[1:]...)
			var t time.Duration
			err = p.peak(&r.maxRSS, &t, err)
			cpu[name] = append(cpu[name], t)
			return r, err
		}
	}
	index := filepath.Join(tree, ".image-serve", "layers")
	var craneLines, tarRSS, craneRSS int64
	cranePipe := func(int) (run, error) {
		pc, pt := probe("crane", exec.Command(crane, craneArgs...)), probe("tar", exec.Command(tarBin, "-t"))
		r, lines, rss, err := pipeline(pc.cmd, pt.cmd)
		var tc, tt time.Duration
		if err = pc.peak(&rss[0], &tc, err); err == nil {
			err = pt.peak(&rss[1], &tt, err)
		}
		cpu[ref] = append(cpu[ref], tc+tt)
		r.maxRSS = max(rss[0], rss[1])
		craneLines, craneRSS, tarRSS = lines, max(craneRSS, rss[0]), max(tarRSS, rss[1])
		return r, err
	}
	// Untimed: the same output from both (one line per path, bar files'
	// header), and the page cache warm with the blobs for both.
	ours, err := filesRun("warm-up")(0)
	if err != nil {
		return err
	}
	if _, err := cranePipe(0); err != nil {
		return err
	}
	cpu = map[string][]time.Duration{}
	oursLines := int64(bytes.Count(ours.stdout, []byte("\n"))) - 1
	logf("files lists %d paths, crane export | tar -t %d entries", oursLines, craneLines)
	res, err := e.coldCached(index, cold, filesRun(cold), cached, filesRun(cached), ref, cranePipe)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("files of an image with a %s layer (%d entries, %d files, gzip %s) and a %d-entry top layer",
		mib(img.content), img.entries, img.files, mib(img.baseGzip), img.topEntries)
	refVal := dur(res[ref].median())
	cpuOf := func(name string) string { return cpuTimeNote(timeBin, cpu[name]) }
	refNote := fmt.Sprintf("crane %s, tar %s", mib(craneRSS), mib(tarRSS))
	sp := float64(res[ref].median()) / float64(res[cold].median())
	refName := "crane export \\| tar -t" // a table cell
	e.rep.add(row{what: what + ", cold (no layer index)", ours: cold, oursVal: dur(res[cold].median()), ref: refName, refVal: refVal,
		ratio: fmt.Sprintf("%.2f× faster", sp), target: "≥ 1.5× faster", met: met(sp, 1.5, true),
		notes: "max RSS " + mib(res[cold].maxRSS()) + cpuOf(cold) + "; reference: max RSS " + refNote + cpuOf(ref) +
			fmt.Sprintf("; %d paths listed by files, %d entries by tar -t", oursLines, craneLines)})
	sp = float64(res[ref].median()) / float64(res[cached].median())
	e.rep.add(row{what: what + ", cached (second run)", ours: cached, oursVal: dur(res[cached].median()), ref: refName, refVal: refVal,
		ratio: fmt.Sprintf("%.1f× faster", sp), target: "≥ 20× faster", met: met(sp, 20, true),
		notes: "max RSS " + mib(res[cached].maxRSS()) + cpuOf(cached)})
	peak := max(res[cold].maxRSS(), res[cached].maxRSS())
	e.rep.add(row{what: fmt.Sprintf("peak RSS of files over a %s layer", mib(img.content)), ours: "image-serve files",
		oursVal: mib(peak), ref: "budget", refVal: "64.0 MiB",
		ratio: fmt.Sprintf("%.2f of budget", float64(peak)/(64<<20)), target: "≤ 64 MiB", met: met(float64(peak), 64<<20, false),
		notes: "cold and cached; reference max RSS: crane " + mib(craneRSS) + ", tar " + mib(tarRSS)})
	if v, err := exec.Command(crane, "version").Output(); err == nil {
		e.rep.note("files: the reference is crane %s (go-containerregistry, the version go.mod pins) and %s", strings.TrimSpace(string(v)), tarVersion(tarBin))
	}
	return nil
}

func tarVersion(tarBin string) string {
	b, _ := exec.Command(tarBin, "--version").Output()
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}

// pipeline runs a | b, b's standard output counted in lines and thrown
// away, as one timed run; rss is each one's peak RSS, and the run's the
// larger (they run side by side, so the pipeline as a whole may hold up
// to their sum).
func pipeline(a, b *exec.Cmd) (r run, lines int64, rss [2]int64, err error) {
	lc := &lineCounter{}
	r, rss, err = pipelineTo(a, b, lc)
	return r, lc.n, rss, err
}

// pipelineTo is pipeline with b's standard output written to out.
func pipelineTo(a, b *exec.Cmd, out io.Writer) (r run, rss [2]int64, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return r, rss, err
	}
	var aErr, bErr bytes.Buffer
	a.Stdout, a.Stderr = pw, &aErr
	b.Stdin, b.Stdout, b.Stderr = pr, out, &bErr
	start := time.Now()
	if err := a.Start(); err != nil {
		pr.Close()
		pw.Close()
		return r, rss, err
	}
	if err := b.Start(); err != nil {
		pr.Close()
		pw.Close()
		_ = a.Process.Kill()
		_ = a.Wait()
		return r, rss, err
	}
	// Only the children hold the pipe now: b sees EOF when a exits.
	pr.Close()
	pw.Close()
	errA, errB := a.Wait(), b.Wait()
	r.wall = time.Since(start)
	for i, c := range []*exec.Cmd{a, b} {
		if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss[i] = ru.Maxrss << 10
		}
	}
	r.maxRSS = max(rss[0], rss[1])
	switch {
	case errA != nil:
		return r, rss, fmt.Errorf("%s: %v\n%s", shellLine(a.Path, a.Args[1:]), errA, aErr.Bytes())
	case errB != nil:
		return r, rss, fmt.Errorf("%s: %v\n%s", shellLine(b.Path, b.Args[1:]), errB, bErr.Bytes())
	}
	return r, rss, nil
}

// rssProbe runs a command under GNU time, which writes the command's
// peak RSS (KiB) to a file: a process benchrun spawns starts its ru_maxrss
// at benchrun's own RSS (Linux counts the parent's memory it shares until
// exec), one that time forks at time's few hundred KiB.
type rssProbe struct {
	cmd  *exec.Cmd
	file string // "" without GNU time: the rusage stands
}

func newRSSProbe(timeBin, file string, c *exec.Cmd) *rssProbe {
	if timeBin == "" {
		return &rssProbe{cmd: c}
	}
	return &rssProbe{cmd: exec.Command(timeBin, append([]string{"-f", "%M %U %S", "-o", file, c.Path}, c.Args[1:]...)...), file: file}
}

// peak sets *rss to the command's peak RSS and *cpu to its CPU time
// (user and system) as time wrote them, unless err (the run's) is not
// nil, which it returns. Without GNU time *cpu stays 0.
func (p *rssProbe) peak(rss *int64, cpu *time.Duration, err error) error {
	if err != nil || p.file == "" {
		return err
	}
	b, err := os.ReadFile(p.file)
	if err != nil {
		return err
	}
	var kib int64
	var user, sys float64
	if _, err := fmt.Sscan(string(b), &kib, &user, &sys); err != nil {
		return fmt.Errorf("GNU time wrote %q: %w", b, err)
	}
	*rss = kib << 10
	*cpu = time.Duration((user + sys) * float64(time.Second))
	return nil
}

type lineCounter struct{ n int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += int64(bytes.Count(p, []byte("\n")))
	return len(p), nil
}

// writeFilesImage writes an OCI layout into dir holding one image, ref
// "files": a base layer of about size bytes of file content (gzip, the
// default level) and a small top layer over it. File sizes are mixed the
// way a distribution's are: 90% small (up to 8 KiB), 9.7% medium (up to
// 256 KiB), 0.3% large (1 to 16 MiB); two in three hold text, which
// compresses, one in three random bytes, which does not. Directories hold
// 20 files each; every 25th file also has a symbolic link to it, every
// 400th a hard link.
func writeFilesImage(dir string, size int64, seed uint64) (*filesImage, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	img := &filesImage{dir: dir, ref: "files"}
	rng := rand.New(rand.NewPCG(seed, 1))
	text, random := textPool(rng, 4<<20), make([]byte, 4<<20)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var paths []string // the base layer's files, for the top layer
	var sizes []int64  // their sizes
	base, err := writeTarLayer(blobs, func(tw *tar.Writer) error {
		dirs := map[string]bool{}
		add := func(h *tar.Header) error {
			h.ModTime, h.Format = mtime, tar.FormatPAX
			img.entries++
			return tw.WriteHeader(h)
		}
		mkdirs := func(d string) error {
			for i := range len(d) + 1 {
				if i < len(d) && d[i] != '/' || dirs[d[:i]] {
					continue
				}
				dirs[d[:i]] = true
				if err := add(&tar.Header{Typeflag: tar.TypeDir, Name: d[:i] + "/", Mode: 0o755}); err != nil {
					return err
				}
			}
			return nil
		}
		for i := 0; img.content < size; i++ {
			d := fmt.Sprintf("usr/lib/python3/site-packages/pkg%03d/mod%02d", i/400, (i/20)%20)
			if err := mkdirs(d); err != nil {
				return err
			}
			var n int64
			switch c := rng.IntN(1000); {
			case c < 900:
				n = 64 + rng.Int64N(8<<10)
			case c < 997:
				n = 8<<10 + rng.Int64N(248<<10)
			default:
				n = 1<<20 + rng.Int64N(15<<20)
			}
			n = min(n, size-img.content+64)
			pool := text
			if rng.IntN(3) == 0 {
				pool = random
			}
			p := fmt.Sprintf("%s/file%06d.py", d, i)
			if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: p, Size: n, Mode: 0o644}); err != nil {
				return err
			}
			if err := writeFrom(tw, pool, rng.IntN(len(pool)), n); err != nil {
				return err
			}
			img.files++
			img.content += n
			paths = append(paths, p)
			sizes = append(sizes, n)
			if i%25 == 0 {
				if err := add(&tar.Header{Typeflag: tar.TypeSymlink, Name: p + ".link", Linkname: filepath.Base(p), Mode: 0o777}); err != nil {
					return err
				}
			}
			if i%400 == 0 {
				if err := add(&tar.Header{Typeflag: tar.TypeLink, Name: p + ".hard", Linkname: p, Mode: 0o644}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	img.baseGzip = base.size
	// The top layer: up to 100 files rewritten, up to 100 deleted, the
	// first directory of files replaced (opaque) with one new file.
	const opaqueDir = "usr/lib/python3/site-packages/pkg000/mod00/"
	touched := map[string]bool{}
	top, err := writeTarLayer(blobs, func(tw *tar.Writer) error {
		add := func(h *tar.Header, body []byte) error {
			h.ModTime, h.Format, h.Size = mtime.Add(time.Hour), tar.FormatPAX, int64(len(body))
			img.topEntries++
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			_, err := tw.Write(body)
			return err
		}
		step := max(len(paths)/200, 1)
		for k, i := 0, step; k < 200 && i < len(paths); k, i = k+1, i+step {
			p := paths[i]
			touched[p] = true
			if strings.HasPrefix(p, opaqueDir) {
				continue
			}
			h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644}
			body := []byte("rewritten\n")
			if k%2 == 1 {
				h.Name, body = filepath.Dir(p)+"/.wh."+filepath.Base(p), nil
			}
			if err := add(h, body); err != nil {
				return err
			}
		}
		if err := add(&tar.Header{Typeflag: tar.TypeReg, Name: opaqueDir + ".wh..wh..opq", Mode: 0o644}, nil); err != nil {
			return err
		}
		return add(&tar.Header{Typeflag: tar.TypeReg, Name: opaqueDir + "replaced.py", Mode: 0o644}, []byte("new\n"))
	})
	if err != nil {
		return nil, err
	}
	img.topGzip = top.size
	for i := len(paths) - 1; i >= 0 && img.lastFile == ""; i-- {
		if !touched[paths[i]] && !strings.HasPrefix(paths[i], opaqueDir) {
			img.lastFile, img.lastSize = paths[i], sizes[i]
		}
	}
	return img, writeFilesLayout(dir, blobs, img.ref, []layerBlob{base, top})
}

// textPool is n bytes of lines of words, which gzip shrinks about as much
// as it does source code.
func textPool(rng *rand.Rand, n int) []byte {
	words := make([]string, 512)
	for i := range words {
		w := make([]byte, 2+rng.IntN(9))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		words[i] = string(w)
	}
	var b bytes.Buffer
	for b.Len() < n {
		for range 1 + rng.IntN(12) {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

// writeFrom writes n bytes of pool to w from offset off on, round it.
func writeFrom(w io.Writer, pool []byte, off int, n int64) error {
	for n > 0 {
		chunk := pool[off:min(int64(len(pool)), int64(off)+n)]
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
		off = 0
	}
	return nil
}

// layerBlob is a written layer: its blob's digest and size, and the
// digest of its tar (the config's diff_id).
type layerBlob struct {
	digest, diffID digest.Digest
	size           int64
}

// writeTarLayer writes the tar fill makes, gzipped, as a blob.
func writeTarLayer(blobs string, fill func(*tar.Writer) error) (layerBlob, error) {
	f, err := os.CreateTemp(blobs, ".layer-")
	if err != nil {
		return layerBlob{}, err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	defer f.Close()
	blobHash, tarHash := sha256.New(), sha256.New()
	counted := &countWriter{w: io.MultiWriter(f, blobHash)}
	bw := bufio.NewWriterSize(counted, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return layerBlob{}, err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, tarHash))
	if err := fill(tw); err != nil {
		return layerBlob{}, err
	}
	for _, c := range []interface{ Close() error }{tw, zw} {
		if err := c.Close(); err != nil {
			return layerBlob{}, err
		}
	}
	if err := bw.Flush(); err != nil {
		return layerBlob{}, err
	}
	l := layerBlob{digest: digestOf(blobHash), diffID: digestOf(tarHash), size: counted.n}
	if err := f.Close(); err != nil {
		return l, err
	}
	return l, os.Rename(f.Name(), filepath.Join(blobs, l.digest.Encoded()))
}

func digestOf(h hash.Hash) digest.Digest { return digest.NewDigest(digest.SHA256, h) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeFilesLayout writes the config, the manifest of layers and the
// layout's index naming it ref.
func writeFilesLayout(dir, blobs, ref string, layers []layerBlob) error {
	return writeLayoutImages(dir, blobs, []layoutImage{{ref: ref, layers: layers}})
}

// layoutImage is one image of a layout writeLayoutImages writes: its
// ref name and its layers, in order.
type layoutImage struct {
	ref    string
	layers []layerBlob
}

// writeLayoutImages writes each image's config and manifest, and the
// layout's index naming every manifest by its image's ref.
func writeLayoutImages(dir, blobs string, images []layoutImage) error {
	put := func(v any) (map[string]any, error) {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		d := digest.FromBytes(b)
		return map[string]any{"digest": d, "size": len(b)}, os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644)
	}
	var manifests []any
	for _, img := range images {
		var diffIDs []digest.Digest
		var descs []map[string]any
		for _, l := range img.layers {
			diffIDs = append(diffIDs, l.diffID)
			descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l.digest, "size": l.size})
		}
		config, err := put(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{},
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
		if err != nil {
			return err
		}
		config["mediaType"] = "application/vnd.oci.image.config.v1+json"
		manifest, err := put(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": config, "layers": descs})
		if err != nil {
			return err
		}
		manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
		manifest["annotations"] = map[string]string{"org.opencontainers.image.ref.name": img.ref}
		manifests = append(manifests, manifest)
	}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": manifests})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}
