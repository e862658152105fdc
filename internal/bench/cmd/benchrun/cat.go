package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os/exec"
	"path/filepath"
	"time"
)

// catBench is `image-serve cat` of one file of the files section's image
// (the same tree and server), cold (no layer index) and cached, against
// `crane export IMAGE - | tar -xO PATH` from image-serve's embedded
// server: what a user without image-serve runs to read one file of an
// image. The file is the base layer's last one the top layer leaves
// alone, so both read the big layer to its end: cat has no shortcut
// there (a gzip stream is read from its start), and neither has tar,
// which reads on past the member in case a later entry replaces it.
func (e *env) catBench() error {
	crane, tarBin, timeBin, err := e.craneTools("cat")
	if err != nil {
		return err
	}
	s, err := e.ensureFilesSet()
	if err != nil {
		return err
	}
	path := s.img.lastFile
	catArgs := []string{"--root", s.tree, "cat", s.name, "/" + path}
	craneArgs := []string{"export", "--insecure", s.listen + "/" + s.name, "-"}
	tarArgs := []string{"-xO", path}
	e.rep.cmd("cat, cold (the layer index removed before each run) and cached", shellLine(e.bin, catArgs))
	e.rep.cmd("cat, reference", shellLine(crane, craneArgs)+" | "+shellLine(tarBin, tarArgs))
	probe := func(tag string, c *exec.Cmd) *rssProbe { return newRSSProbe(timeBin, e.path("cat-rss-"+tag), c) }
	const (
		cold   = "image-serve cat, cold"
		cached = "image-serve cat, cached"
		ref    = "crane export piped to tar -xO"
	)
	// The bytes each side wrote, checked once: the timed rounds compare
	// two commands that give the same file.
	sums := map[string][sha256.Size]byte{}
	cpu := map[string][]time.Duration{}
	catRun := func(name string) func(int) (run, error) {
		return func(int) (run, error) {
			p := probe("cat", exec.Command(e.bin, catArgs...))
			r, err := command(p.cmd.Path, p.cmd.Args[1:]...)
			var t time.Duration
			err = p.peak(&r.maxRSS, &t, err)
			cpu[name] = append(cpu[name], t)
			if err == nil && int64(len(r.stdout)) != s.img.lastSize {
				err = fmt.Errorf("%s wrote %d bytes, the file has %d", shellLine(e.bin, catArgs), len(r.stdout), s.img.lastSize)
			}
			sums[name] = sha256.Sum256(r.stdout)
			return r, err
		}
	}
	var craneRSS, tarRSS int64
	cranePipe := func(int) (run, error) {
		pc, pt := probe("crane", exec.Command(crane, craneArgs...)), probe("tar", exec.Command(tarBin, tarArgs...))
		var out bytes.Buffer
		r, rss, err := pipelineTo(pc.cmd, pt.cmd, &out)
		var tc, tt time.Duration
		if err = pc.peak(&rss[0], &tc, err); err == nil {
			err = pt.peak(&rss[1], &tt, err)
		}
		cpu[ref] = append(cpu[ref], tc+tt)
		r.maxRSS = max(rss[0], rss[1])
		craneRSS, tarRSS = max(craneRSS, rss[0]), max(tarRSS, rss[1])
		sums[ref] = sha256.Sum256(out.Bytes())
		return r, err
	}
	// Untimed: the same bytes from both, and the page cache warm with the
	// blobs for both.
	if _, err := catRun("warm-up")(0); err != nil {
		return err
	}
	if _, err := cranePipe(0); err != nil {
		return err
	}
	if sums["warm-up"] != sums[ref] {
		return fmt.Errorf("cat and crane export | tar -xO give different bytes for %s", path)
	}
	cpu = map[string][]time.Duration{}
	index := filepath.Join(s.tree, ".image-serve", "layers")
	res, err := e.coldCached(index, cold, catRun(cold), cached, catRun(cached), ref, cranePipe)
	if err != nil {
		return err
	}
	cpuOf := func(name string) string { return cpuTimeNote(timeBin, cpu[name]) }
	what := fmt.Sprintf("cat of a %s file near the end of a %s layer (gzip %s; a %d-entry layer over it)",
		mib(s.img.lastSize), mib(s.img.content), mib(s.img.baseGzip), s.img.topEntries)
	refName := "crane export \\| tar -xO" // a table cell
	refVal := dur(res[ref].median())
	refNote := fmt.Sprintf("crane %s, tar %s", mib(craneRSS), mib(tarRSS))
	sp := float64(res[ref].median()) / float64(res[cold].median())
	e.rep.add(row{what: what + ", cold (no layer index)", ours: cold, oursVal: dur(res[cold].median()), ref: refName, refVal: refVal,
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: "no target; max RSS " + mib(res[cold].maxRSS()) + cpuOf(cold) + "; reference: max RSS " + refNote + cpuOf(ref) +
			"; crane reads the blobs from image-serve's embedded server on loopback, whose CPU time is not counted; cold, cat reads the layer twice (its entry list, then the file's bytes); the same bytes from both, checked"})
	sp = float64(res[ref].median()) / float64(res[cached].median())
	e.rep.add(row{what: what + ", cached (second run)", ours: cached, oursVal: dur(res[cached].median()), ref: refName, refVal: refVal,
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: "no target; max RSS " + mib(res[cached].maxRSS()) + cpuOf(cached) + "; the entry lists from the index, the layer read once up to the file"})
	return nil
}
