package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"
)

// syncs is the mirror of the set (issue 19): a cold `image-serve sync -f`
// against `skopeo sync` into a dir: and `regsync once` into a second
// distribution registry, then a rerun of each with nothing changed, and
// the requests each rerun sent to the source, counted from the source
// registry's access log. skopeo sync refuses to write into a dir: it
// wrote before ("Refusing to overwrite destination directory"), so its
// rerun is that of a `skopeo sync` into a third registry, whose cold
// run is reported too. One more rerun of ours reads the file with its
// tags declared immutable, the case that asks the source nothing.
func (e *env) syncs() error {
	u, err := e.ensureUndercloud()
	if err != nil {
		return err
	}
	// One file for image-serve and skopeo: it is skopeo sync's format.
	file := e.path("sync", "sync.yaml")
	if err := os.MkdirAll(e.path("sync"), 0o755); err != nil {
		return err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "%s:\n  tls-verify: false\n  images:\n", u.registry)
	for _, n := range u.names {
		fmt.Fprintf(&y, "    %s: [%s]\n", u.repo(n), tag)
	}
	if err := os.WriteFile(file, []byte(y.String()), 0o644); err != nil {
		return err
	}
	// The same, its tags declared immutable (our addition): a rerun asks
	// the source nothing for a tag the tree has.
	immutable := e.path("sync", "sync-immutable.yaml")
	text := strings.Replace(y.String(), "  images:\n", fmt.Sprintf("  immutable: ['^%s$']\n  images:\n", tag), 1)
	if err := os.WriteFile(immutable, []byte(text), 0o644); err != nil {
		return err
	}
	srcLog := u.reg.log

	const (
		ours      = "image-serve sync -f"
		skopeo    = "skopeo sync → dir:"
		skopeoReg = "skopeo sync → registry"
		regsync   = "regsync once → registry"
	)
	rounds := e.sz.coldRounds
	tree := func(r int) string { return e.path("sync", fmt.Sprintf("tree-%d", r)) }
	skopeoDir := func(r int) string { return e.path("sync", fmt.Sprintf("skopeo-%d", r)) }
	oursArgs := func(root string) []string {
		return []string{"--root", root, "--quiet", "sync", "-f", file}
	}
	immutableArgs := []string{"--root", tree(rounds - 1), "--quiet", "sync", "-f", immutable}
	skopeoArgs := func(dir string) []string {
		return []string{"--insecure-policy", "sync", "--all", "--src", "yaml", "--dest", "dir", file, dir}
	}
	skopeoRegArgs := func(host string) []string {
		return []string{"--insecure-policy", "sync", "--all", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false", file, host + "/mirror"}
	}
	var (
		keptTree  string
		target    *regTarget // regsync's destination, the last cold round's kept
		skoTarget *regTarget // skopeo sync's registry destination
	)
	defer func() {
		for _, t := range []*regTarget{target, skoTarget} {
			if t != nil {
				t.reg.stop()
			}
		}
	}()
	regsyncArgs := func(conf string) []string { return []string{"once", "-v", "warn", "-c", conf} }

	cold := []contender{
		{name: ours, run: func(r int) (run, error) {
			e.rep.cmd("cold sync, "+ours, shellLine(e.bin, oursArgs(tree(r))))
			return command(e.bin, oursArgs(tree(r))...)
		}, cleanup: func(r int) error {
			if r == rounds-1 {
				keptTree = tree(r) // the no-op reruns' tree
				return nil
			}
			return os.RemoveAll(tree(r))
		}},
		{name: skopeo, setup: func(r int) error { return os.MkdirAll(skopeoDir(r), 0o755) }, run: func(r int) (run, error) {
			e.rep.cmd("cold sync, "+skopeo, shellLine(e.skopeo, skopeoArgs(skopeoDir(r))))
			return command(e.skopeo, skopeoArgs(skopeoDir(r))...)
		}, cleanup: func(r int) error { return os.RemoveAll(skopeoDir(r)) }, rounds: 1},
		{name: skopeoReg, setup: func(r int) error {
			var err error
			skoTarget, err = e.startTarget("skopeo-target", "skopeo sync", u)
			return err
		}, run: func(r int) (run, error) {
			e.rep.cmd("cold sync, "+skopeoReg, shellLine(e.skopeo, skopeoRegArgs(skoTarget.host)))
			return command(e.skopeo, skopeoRegArgs(skoTarget.host)...)
		}, rounds: 1},
		{name: regsync, setup: func(r int) error {
			// A new, empty registry each round; the last one stays up for
			// the reruns.
			if target != nil {
				target.reg.stop()
				if err := os.RemoveAll(target.dir); err != nil {
					return err
				}
				target = nil
			}
			t, err := e.startTarget(fmt.Sprintf("regsync-target-%d", r), "regsync", u)
			target = t
			return err
		}, run: func(r int) (run, error) {
			e.rep.cmd("cold sync, "+regsync, shellLine(e.regsync, regsyncArgs(target.conf)))
			return command(e.regsync, regsyncArgs(target.conf)...)
		}},
	}
	logf("cold sync of %d images (%s distinct), %d rounds", len(u.names), mib(u.layout.UniqueBytes), rounds)
	res, err := rotate(rounds, cold)
	if err != nil {
		return err
	}
	if _, err := command(e.bin, "--root", keptTree, "verify"); err != nil {
		return fmt.Errorf("the synced tree does not verify: %w", err)
	}
	e.rep.cmd("check (untimed)", shellLine(e.bin, []string{"--root", keptTree, "verify"}))

	// The reruns, nothing changed upstream; each counts what it asked
	// the source (and regsync what it asked its target).
	reqs := map[string][]requests{}
	targetReqs := []requests{}
	counted := func(name, logFile string, f func() (run, error)) (run, error) {
		from, err := logSize(logFile)
		if err != nil {
			return run{}, err
		}
		r, err := f()
		if err != nil {
			return r, err
		}
		n, err := countRequests(logFile, from)
		reqs[name] = append(reqs[name], n)
		return r, err
	}
	// The floor: the 25 HEADs alone, from a minimal Go program.
	floor := e.path("sync", "headfloor")
	if out, err := exec.Command("go", "build", "-o", floor, "github.com/image-serve/image-serve/internal/bench/cmd/headfloor").CombinedOutput(); err != nil {
		return fmt.Errorf("building headfloor: %v\n%s", err, out)
	}
	floorArgs := []string{u.registry}
	for _, n := range u.names {
		floorArgs = append(floorArgs, u.repo(n)+":"+tag)
	}
	const (
		floorRe   = "one HEAD per tag, nothing else (headfloor)"
		oursRe    = ours + " (rerun)"
		oursImm   = ours + ", tags immutable (rerun)"
		skopeoRe  = skopeoReg + " (rerun)"
		regsyncRe = regsync + " (rerun)"
	)
	rerun := []contender{
		{name: oursRe, run: func(int) (run, error) {
			e.rep.cmd("no-op rerun, "+ours, shellLine(e.bin, oursArgs(keptTree)))
			return counted(oursRe, srcLog, func() (run, error) { return command(e.bin, oursArgs(keptTree)...) })
		}},
		{name: oursImm, run: func(int) (run, error) {
			e.rep.cmd("no-op rerun, "+oursImm, shellLine(e.bin, immutableArgs))
			return counted(oursImm, srcLog, func() (run, error) { return command(e.bin, immutableArgs...) })
		}},
		{name: regsyncRe, run: func(int) (run, error) {
			e.rep.cmd("no-op rerun, "+regsync, shellLine(e.regsync, regsyncArgs(target.conf)))
			from, err := logSize(target.reg.log)
			if err != nil {
				return run{}, err
			}
			r, err := counted(regsyncRe, srcLog, func() (run, error) { return command(e.regsync, regsyncArgs(target.conf)...) })
			if err != nil {
				return r, err
			}
			n, err := countRequests(target.reg.log, from)
			targetReqs = append(targetReqs, n)
			return r, err
		}},
		{name: floorRe, run: func(int) (run, error) {
			e.rep.cmd("no-op rerun's requests alone, "+floorRe, shellLine(floor, floorArgs))
			return counted(floorRe, srcLog, func() (run, error) { return command(floor, floorArgs...) })
		}},
		{name: skopeoRe, run: func(int) (run, error) {
			e.rep.cmd("no-op rerun, "+skopeoReg, shellLine(e.skopeo, skopeoRegArgs(skoTarget.host)))
			return counted(skopeoRe, srcLog, func() (run, error) { return command(e.skopeo, skopeoRegArgs(skoTarget.host)...) })
		}},
	}
	logf("no-op rerun of the sync, %d rounds", e.sz.fastRounds)
	re, err := rotate(e.sz.fastRounds, rerun)
	if err != nil {
		return err
	}

	tags := len(u.names)
	what := fmt.Sprintf("cold sync of %d images, one tag each (%d services + 1 two-arch index; %s distinct) from the distribution registry",
		tags, tags-1, mib(u.layout.UniqueBytes))
	o := res[ours].median()
	sp := float64(res[skopeo].median()) / float64(o)
	e.rep.add(row{what: what, ours: ours, oursVal: dur(o), ref: skopeo, refVal: dur(res[skopeo].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp), target: "≥ 3× faster", met: met(sp, 3, true),
		notes: "max RSS " + mib(res[ours].maxRSS()) + "; skopeo: one round (a full copy per image)"})
	sp = float64(res[regsync].median()) / float64(o)
	e.rep.add(row{what: what, ours: ours, oursVal: dur(o), ref: regsync, refVal: dur(res[regsync].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: fmt.Sprintf("no target; regsync parallel %d, into a second distribution registry; max RSS %s (regsync)", syncJobs, mib(res[regsync].maxRSS()))})
	sp = float64(res[skopeoReg].median()) / float64(o)
	e.rep.add(row{what: what, ours: ours, oursVal: dur(o), ref: skopeoReg, refVal: dur(res[skopeoReg].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: "no target; one round, into a third distribution registry (the one its rerun below runs against)"})

	whatRe := fmt.Sprintf("no-op rerun of the sync of those %d tags (nothing changed upstream)", tags)
	o = re[oursRe].median()
	sp = float64(re[regsyncRe].median()) / float64(o)
	e.rep.add(row{what: whatRe, ours: oursRe, oursVal: dur(o), ref: regsyncRe, refVal: dur(re[regsyncRe].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp), target: "≥ 5× faster", met: met(sp, 5, true),
		notes: "max RSS " + mib(re[oursRe].maxRSS())})
	fl := re[floorRe].median()
	ceiling := float64(re[regsyncRe].median()) / float64(fl)
	reach := "so a check of one request per tag can be at most that much faster than regsync here"
	if ceiling >= 5 {
		reach = "so the 5× target is within a one-request-per-tag check's reach here"
	}
	e.rep.add(row{what: whatRe + ": the floor, its requests alone", ours: oursRe, oursVal: dur(o), ref: floorRe, refVal: dur(fl),
		ratio: fmt.Sprintf("%.2f× the floor", float64(o)/float64(fl)),
		notes: fmt.Sprintf("no target; a minimal Go program sending only the %d HEADs, %d at a time over keep-alive (%s): regsync's rerun is %.2f× the floor, %s",
			tags, syncJobs, maxRequests(reqs[floorRe]), ceiling, reach)})
	sp = float64(re[skopeoRe].median()) / float64(o)
	e.rep.add(row{what: whatRe, ours: oursRe, oursVal: dur(o), ref: skopeoRe, refVal: dur(re[skopeoRe].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: "no target; skopeo sync refuses to rerun into the dir: it wrote, so its rerun is into a registry"})
	o = re[oursImm].median()
	sp = float64(re[regsyncRe].median()) / float64(o)
	e.rep.add(row{what: whatRe + ", the file declaring them immutable", ours: oursImm, oursVal: dur(o), ref: regsyncRe, refVal: dur(re[regsyncRe].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: fmt.Sprintf("no target (the one above is the plain rerun's); requests to the source: %s", maxRequests(reqs[oursImm]))})

	oursN, regN, skoN := maxRequests(reqs[oursRe]), maxRequests(reqs[regsyncRe]), maxRequests(reqs[skopeoRe])
	per := func(n requests) float64 { return float64(n.total) / float64(tags) }
	e.rep.add(row{what: fmt.Sprintf("requests per tag at the source, no-op rerun (its access log; %d tags, the most of any round)", tags),
		ours: oursRe, oursVal: fmt.Sprintf("%.2f", per(oursN)), ref: regsyncRe, refVal: fmt.Sprintf("%.2f", per(regN)),
		ratio: fmt.Sprintf("%.2f of 1", per(oursN)), target: "≤ 1 per tag", met: met(per(oursN), 1, false),
		notes: fmt.Sprintf("ours: %s; regsync: %s, and at its target %s; skopeo sync → registry: %.2f per tag (%s)",
			oursN, regN, maxRequests(targetReqs), per(skoN), skoN)})
	return nil
}

// syncJobs is regsync's parallel setting: image-serve sync's default
// --jobs, so that both have as many transfers in flight.
const syncJobs = 4

// regTarget is a distribution registry regsync writes into.
type regTarget struct {
	reg  *daemon
	host string // HOST:PORT
	dir  string // its storage and its configuration
	conf string // the regsync configuration syncing the set into it
}

// startTarget starts an empty distribution registry under name in the
// work directory, access log on, as the destination of who, and writes
// the regsync configuration that mirrors every image of u into it (only
// regsync's uses it).
func (e *env) startTarget(name, who string, u *undercloud) (*regTarget, error) {
	dir := e.path("sync", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := addr(port)
	conf := dir + "/registry.yml"
	text := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s/data
http:
  addr: %s
`, dir, host)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(e.registry, "serve", conf)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "OTEL_TRACES_EXPORTER=none"}
	e.rep.cmd("target registry of "+who+" (set-up, untimed)", shellLine(e.registry, []string{"serve", conf}))
	reg, err := startDaemon("target registry", cmd, dir+"/registry.log", "http://"+host+"/v2/")
	if err != nil {
		return nil, err
	}
	var y strings.Builder
	fmt.Fprintf(&y, "version: 1\ncreds:\n  - registry: %s\n    tls: disabled\n  - registry: %s\n    tls: disabled\n", u.registry, host)
	fmt.Fprintf(&y, "defaults:\n  parallel: %d\n  skipDockerConfig: true\nsync:\n", syncJobs)
	for _, n := range u.names {
		ref := u.repo(n) + ":" + tag
		fmt.Fprintf(&y, "  - source: %s/%s\n    target: %s/%s\n    type: image\n", u.registry, ref, host, ref)
	}
	t := &regTarget{reg: reg, host: host, dir: dir, conf: dir + "/regsync.yml"}
	if err := os.WriteFile(t.conf, []byte(y.String()), 0o644); err != nil {
		reg.stop()
		return nil, err
	}
	return t, nil
}

// requests is what an access log recorded over one run.
type requests struct {
	total int
	kinds map[string]int // "HEAD manifest", "GET blob", …
}

func (n requests) String() string {
	if n.total == 0 {
		return "no request"
	}
	var parts []string
	for k, v := range n.kinds {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// maxRequests is the round that sent the most.
func maxRequests(ns []requests) requests {
	var m requests
	for _, n := range ns {
		if n.total >= m.total {
			m = n
		}
	}
	return m
}

func logSize(file string) (int64, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// accessLine is the request of a combined-format access line.
var accessLine = regexp.MustCompile(`"([A-Z]+) (/\S*) HTTP/[0-9.]+"`)

// countRequests counts the access log's requests written after offset
// from. The registry writes a line once its handler has returned, which
// may be after the client has its answer and has exited: it waits until
// the log has not grown for half a second.
func countRequests(file string, from int64) (requests, error) {
	size, err := logSize(file)
	if err != nil {
		return requests{}, err
	}
	for stable := time.Now(); time.Since(stable) < 500*time.Millisecond; {
		time.Sleep(50 * time.Millisecond)
		s, err := logSize(file)
		if err != nil {
			return requests{}, err
		}
		if s != size {
			size, stable = s, time.Now()
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return requests{}, err
	}
	n := requests{kinds: map[string]int{}}
	sc := bufio.NewScanner(bytes.NewReader(b[from:size]))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := accessLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n.total++
		n.kinds[m[1]+" "+requestKind(m[2])]++
	}
	return n, sc.Err()
}

// requestKind names what a registry API path asks for.
func requestKind(path string) string {
	path, _, _ = strings.Cut(path, "?")
	switch {
	case path == "/v2/" || path == "/v2":
		return "/v2/"
	case strings.Contains(path, "/manifests/"):
		return "manifest"
	case strings.Contains(path, "/blobs/uploads"):
		return "upload"
	case strings.Contains(path, "/blobs/"):
		return "blob"
	case strings.HasSuffix(path, "/tags/list"):
		return "tags/list"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return "other"
}
