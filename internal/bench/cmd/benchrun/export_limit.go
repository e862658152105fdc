package main

// The rows of issue 25: export against the machine's limits (Go's sha256
// over the same bytes, curl of the same blob over loopback), against a
// minimal non-fsyncing writer, and with every flush answered without
// reaching the disk, so that durability's share stays visible.

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// noSyncCalls are the system calls a no-fsync run answers with 0 without
// making them: those eatmydata's LD_PRELOAD library replaces. eatmydata
// itself cannot be used: it replaces libc's functions, and Go programs
// (image-serve, skopeo) make their system calls without libc, so under
// eatmydata they still fsync.
const noSyncCalls = "fsync,fdatasync,sync,syncfs,sync_file_range,msync"

// noSync returns the command line that runs name with args with every
// flush answered 0 by strace's fault injection (seccomp-filtered: only
// those calls stop the process), or ok false when strace is missing.
func (e *env) noSync(name string, args []string) (string, []string, bool) {
	if e.strace == "" {
		return "", nil, false
	}
	return e.strace, append([]string{"-f", "-qq", "--seccomp-bpf", "-o", "/dev/null",
		"-e", "trace=" + noSyncCalls, "-e", "inject=" + noSyncCalls + ":retval=0", name}, args...), true
}

// ensureRegistry starts the distribution registry the export sections
// read from, once, and returns it and its host:port.
func (e *env) ensureRegistry() (*daemon, string, error) {
	if e.src != nil {
		return e.src, e.srcAddr, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	host := addr(port)
	conf := e.path("registry.yml")
	text := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: false # the sync section counts the requests of each run in it
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, e.path("registry-data"), host)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(e.registry, "serve", conf)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "OTEL_TRACES_EXPORTER=none"}
	e.rep.cmd("source registry", shellLine(e.registry, []string{"serve", conf}))
	d, err := startDaemon("registry", cmd, e.path("registry.log"), "http://"+host+"/v2/")
	if err != nil {
		return nil, "", err
	}
	e.src, e.srcAddr = d, host
	return d, host, nil
}

// procCPU is the user + system time process pid has used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: state is
	// the first, utime the 12th and stime the 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// withSourceCPU wraps a timed run to record the source registry's CPU
// time meanwhile: it shares the two cores with the exporter.
func (e *env) withSourceCPU(f func(int) (run, error)) func(int) (run, error) {
	return func(r int) (run, error) {
		if e.src == nil {
			return f(r)
		}
		pid := e.src.cmd.Process.Pid
		before := procCPU(pid)
		res, err := f(r)
		res.srcCPU = procCPU(pid) - before
		return res, err
	}
}

// selfCPU is this process's user + system time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sha256Bound hashes file with Go's crypto/sha256 through a 1 MiB
// buffer: the bound of any export, which must hash every byte.
func sha256Bound(file string) func(int) (run, error) {
	return func(int) (run, error) {
		start, cpu := time.Now(), selfCPU()
		f, err := os.Open(file)
		if err != nil {
			return run{}, err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
			return run{}, err
		}
		_ = h.Sum(nil)
		return run{wall: time.Since(start), cpu: selfCPU() - cpu}, nil
	}
}

// plainExporter builds internal/bench/cmd/plainexport, the minimal
// streaming writer, into the work directory.
func (e *env) plainExporter() (string, error) {
	if e.plain != "" {
		return e.plain, nil
	}
	bin := e.path("plainexport")
	if out, err := exec.Command("go", "build", "-o", bin, "./internal/bench/cmd/plainexport").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building plainexport: %v\n%s", err, out)
	}
	e.plain = bin
	return bin, nil
}

// rate is bytes per wall time, in MB/s.
func rate(bytes int64, d time.Duration) string {
	return fmt.Sprintf("%.0f MB/s", float64(bytes)/1e6/d.Seconds())
}

// cpuPerGiB is a CPU time per GiB of bytes.
func cpuPerGiB(cpu time.Duration, bytes int64) string {
	return fmt.Sprintf("%.2f s", cpu.Seconds()/(float64(bytes)/(1<<30)))
}

// cpuNote describes a contender's CPU use per GiB, its own and the
// source registry's.
func cpuNote(s samples, bytes int64) string {
	n := "CPU " + cpuPerGiB(s.cpuMedian(), bytes) + "/GiB"
	if src := s.srcCPUMedian(); src > 0 {
		n += " + registry " + cpuPerGiB(src, bytes) + "/GiB"
	}
	return n
}

// loadNote is the load average now, for rows measured on a shared
// machine.
func loadNote() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return "load " + strings.Join(strings.Fields(string(b))[:3], " ")
}

// singleLayer exports one big layer from an OCI layout and from the
// distribution registry, with and without flushes, against Go's sha256
// over the same bytes (the bound: an export must hash every byte) and
// curl fetching the same blob into /dev/null (the loopback bound).
func (e *env) singleLayer() error {
	l, err := bench.WriteLayout(e.path("big-oci"), bench.Image{Layers: 1, LayerSize: e.sz.bigLayer, Seed: 9})
	if err != nil {
		return err
	}
	defer os.RemoveAll(l.Dir)
	layer := l.Layers[0].Digest
	blob := filepath.Join(l.Dir, "blobs", "sha256", layer.Encoded())
	hash := sha256Bound(blob)
	if _, err := hash(0); err != nil { // warms the page cache for both
		return err
	}
	_, host, err := e.ensureRegistry()
	if err != nil {
		return err
	}
	const repo = "bench/big"
	push := []string{"--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false", l.Source(), "docker://" + host + "/" + repo + ":v1"}
	e.rep.cmd("single layer: push to the registry (set-up, untimed)", shellLine(e.skopeo, push))
	if _, err := command(e.skopeo, push...); err != nil {
		return err
	}
	tree := func(r int) string { return e.path(fmt.Sprintf("big-tree-%d", r)) }
	remove := func(r int) error { return os.RemoveAll(tree(r)) }
	ociArgs := func(r int) []string {
		return []string{"--root", tree(r), "--quiet", "export", l.Source(), "bench/big:v1"}
	}
	regArgs := func(r int) []string {
		return []string{"--root", tree(r), "--quiet", "export", "--src-tls-verify=false", "docker://" + host + "/" + repo + ":v1", "bench/big:v1"}
	}
	const (
		fromOCI     = "export from oci:"
		fromReg     = "export from the registry"
		fromOCINo   = "export from oci:, no flushes"
		fromRegNo   = "export from the registry, no flushes"
		sha256Name  = "sha256"
		curlName    = "curl -o /dev/null"
		curlSection = "loopback bound"
	)
	e.rep.cmd("single-layer export from oci:", shellLine(e.bin, ociArgs(0)))
	e.rep.cmd("single-layer export from the registry", shellLine(e.bin, regArgs(0)))
	e.rep.cmd("sha256 bound", "in benchrun: crypto/sha256 over the layer file via io.CopyBuffer, 1 MiB buffer")
	url := "http://" + host + "/v2/" + repo + "/blobs/" + layer.String()
	curlArgs := []string{"-sSf", "-o", "/dev/null", url}
	contenders := []contender{
		{name: fromOCI, run: func(r int) (run, error) { return command(e.bin, ociArgs(r)...) }, cleanup: remove},
		{name: fromReg, run: e.withSourceCPU(func(r int) (run, error) { return command(e.bin, regArgs(r)...) }), cleanup: remove},
		{name: sha256Name, run: hash},
	}
	if e.curl != "" {
		e.rep.cmd(curlSection, shellLine(e.curl, curlArgs))
		contenders = append(contenders, contender{name: curlName, run: e.withSourceCPU(func(int) (run, error) { return command(e.curl, curlArgs...) })})
	}
	if name, args, ok := e.noSync(e.bin, ociArgs(0)); ok {
		e.rep.cmd("single-layer export, no flushes (strace answers "+noSyncCalls+" with 0)", shellLine(name, args))
		contenders = append(contenders,
			contender{name: fromOCINo, run: func(r int) (run, error) {
				name, args, _ := e.noSync(e.bin, ociArgs(r))
				return command(name, args...)
			}, cleanup: remove},
			contender{name: fromRegNo, run: e.withSourceCPU(func(r int) (run, error) {
				name, args, _ := e.noSync(e.bin, regArgs(r))
				return command(name, args...)
			}), cleanup: remove})
	}
	res, err := rotate(e.sz.fastRounds, contenders)
	if err != nil {
		return err
	}
	load := loadNote()
	bound := res[sha256Name].median()
	mbs := func(d time.Duration) string { return rate(l.BlobBytes, d) }
	what := func(from string) string {
		return fmt.Sprintf("export of one %s layer from %s (fsync'd)", mib(e.sz.bigLayer), from)
	}
	for _, c := range []struct{ name, from string }{{fromOCI, "an oci: layout"}, {fromReg, "the distribution registry"}} {
		ours := res[c.name].median()
		frac := float64(bound) / float64(ours)
		e.rep.add(row{what: what(c.from), ours: "image-serve " + c.name, oursVal: dur(ours) + " (" + mbs(ours) + ")",
			ref: "Go crypto/sha256, same bytes", refVal: dur(bound) + " (" + mbs(bound) + ")",
			ratio: fmt.Sprintf("%.2f of the bound", frac), target: "≥ 0.8 of the bound", met: met(frac, 0.8, true),
			notes: cpuNote(res[c.name], l.BlobBytes) + "; max RSS " + mib(res[c.name].maxRSS()) + "; " + load})
	}
	if s, ok := res[curlName]; ok {
		ours, ref := res[fromReg].median(), s.median()
		e.rep.add(row{what: what("the distribution registry"), ours: "image-serve " + fromReg, oursVal: dur(ours) + " (" + mbs(ours) + ")",
			ref: "curl -o /dev/null, same blob (loopback bound)", refVal: dur(ref) + " (" + mbs(ref) + ")",
			ratio: fmt.Sprintf("%.2f of the bound", float64(ref)/float64(ours)),
			notes: "no target; curl: " + cpuNote(s, l.BlobBytes)})
	}
	for _, c := range []struct{ synced, unsynced string }{{fromOCI, fromOCINo}, {fromReg, fromRegNo}} {
		s, ok := res[c.unsynced]
		if !ok {
			continue
		}
		ours, ref := res[c.synced].median(), s.median()
		e.rep.add(row{what: fmt.Sprintf("durability's share: one %s layer, %s", mib(e.sz.bigLayer), strings.TrimPrefix(c.synced, "export ")),
			ours: "fsync'd", oursVal: dur(ours), ref: "no flushes (strace-injected)", refVal: dur(ref),
			ratio: fmt.Sprintf("%.2f× the time", float64(ours)/float64(ref)),
			notes: "no target; no flushes: " + cpuNote(s, l.BlobBytes) + "; eatmydata does not reach Go's system calls"})
	}
	e.bigRSS = res[fromOCI].maxRSS()
	return nil
}

// exportLimits adds the set's rows of issue 25 to the cold export's
// results res: the one-process export against the minimal non-fsyncing
// writer, against the slower of the two bounds (sha256 and loopback HTTP,
// measured here over the set's base layer), and without flushes.
func (e *env) exportLimits(u *undercloud, res map[string]samples, what, fromFile, plain, fromNo string) error {
	bytes := u.layout.UniqueBytes
	ours := res[fromFile].median()
	notes := cpuNote(res[fromFile], bytes) + "; " + loadNote()
	p := res[plain].median()
	sp := float64(p) / float64(ours)
	e.rep.add(row{what: what, ours: fromFile, oursVal: dur(ours) + " (" + rate(bytes, ours) + ")", ref: plain, refVal: dur(p) + " (" + rate(bytes, p) + ")",
		ratio: fmt.Sprintf("%.2f× faster", sp), target: "≥ 1.5× faster", met: met(sp, 1.5, true),
		notes: notes + "; plainexport: " + cpuNote(res[plain], bytes)})
	if s, ok := res[fromNo]; ok {
		e.rep.add(row{what: what + ": durability's share", ours: fromFile, oursVal: dur(ours), ref: fromNo, refVal: dur(s.median()),
			ratio: fmt.Sprintf("%.2f× the time", float64(ours)/float64(s.median())),
			notes: "no target; no flushes: " + cpuNote(s, bytes)})
	}

	// The bounds, over the largest blob of the first image (the set's
	// shared base layer), fetched from that image's repository.
	var big bench.Blob
	for _, b := range u.layout.Blobs[u.names[0]] {
		if b.Size > big.Size {
			big = b
		}
	}
	if big.Size == 0 {
		return nil
	}
	bounds := []contender{{name: "sha256", run: sha256Bound(filepath.Join(u.layout.Dir, "blobs", "sha256", big.Digest.Encoded()))}}
	if e.curl != "" {
		args := []string{"-sSf", "-o", "/dev/null", "http://" + u.registry + "/v2/" + u.repo(u.names[0]) + "/blobs/" + big.Digest.String()}
		e.rep.cmd("cold export: the loopback bound over the set's largest layer", shellLine(e.curl, args))
		bounds = append(bounds, contender{name: "curl", run: func(int) (run, error) { return command(e.curl, args...) }})
	}
	if _, err := bounds[0].run(0); err != nil { // warms the page cache
		return err
	}
	br, err := rotate(e.sz.fastRounds, bounds)
	if err != nil {
		return err
	}
	slowest, name := br["sha256"].median(), "sha256"
	if c, ok := br["curl"]; ok && c.median() > slowest {
		slowest, name = c.median(), "curl -o /dev/null (loopback)"
	}
	boundRate := float64(big.Size) / slowest.Seconds()
	oursRate := float64(bytes) / ours.Seconds()
	frac := oursRate / boundRate
	ok := "yes"
	if oursRate < 1e9 && frac < 0.6 {
		ok = "**no**"
	}
	e.rep.add(row{what: what + ": effective rate", ours: fromFile, oursVal: rate(bytes, ours),
		ref: "the slower bound, " + name + " over its " + mib(big.Size) + " layer", refVal: fmt.Sprintf("%.0f MB/s", boundRate/1e6),
		ratio: fmt.Sprintf("%.2f of the bound", frac), target: "≥ 1 GB/s or ≥ 0.6 of the bound", met: ok,
		notes: fmt.Sprintf("sha256 %s, curl %s", rate(big.Size, br["sha256"].median()), func() string {
			if c, ok := br["curl"]; ok {
				return rate(big.Size, c.median())
			}
			return "not installed"
		}())})
	return nil
}
