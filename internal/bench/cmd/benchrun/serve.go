package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// manifestAccept is the Accept header skopeo sends for manifests.
const manifestAccept = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"

var serverEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}

// wrkResult is what one wrk run reports.
type wrkResult struct {
	rps        float64
	bytesPerS  float64
	p99        time.Duration
	requests   int64
	errorsNote string
}

var (
	reRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reTransfer = regexp.MustCompile(`Transfer/sec:\s+([0-9.]+)([KMGT]?B)`)
	reP99      = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s|m)\b`)
	reReqs     = regexp.MustCompile(`(\d+) requests in`)
	reNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	reSockErr  = regexp.MustCompile(`Socket errors: .*`)
)

func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := reRPS.FindStringSubmatch(out)
	t := reTransfer.FindStringSubmatch(out)
	q := reReqs.FindStringSubmatch(out)
	if m == nil || t == nil || q == nil {
		return r, fmt.Errorf("cannot read wrk's output:\n%s", out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	v, _ := strconv.ParseFloat(t[1], 64)
	r.bytesPerS = v * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[t[2]]
	r.requests, _ = strconv.ParseInt(q[1], 10, 64)
	if p := reP99.FindStringSubmatch(out); p != nil {
		v, _ := strconv.ParseFloat(p[1], 64)
		r.p99 = time.Duration(v * float64(map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[p[2]]))
	}
	if n := reNon2xx.FindStringSubmatch(out); n != nil {
		return r, fmt.Errorf("%s non-2xx responses:\n%s", n[1], out)
	}
	if s := reSockErr.FindString(out); s != "" {
		r.errorsNote = s
	}
	return r, nil
}

// serveTarget is one URL path the load generator requests.
type serveTarget struct {
	name, path, accept string
	want               bench.Blob
	large              bool
}

// serving serves one tree with the embedded server, nginx and Apache (the
// project's configurations) and loads each with wrk in turn.
func (e *env) serving() error {
	u, err := e.ensureUndercloud()
	if err != nil {
		return err
	}
	tree := e.coldTree
	if tree == "" {
		tree = e.path("serve-tree")
		var lines []string
		for _, n := range u.names {
			lines = append(lines, u.layout.Source(n)+" "+u.repo(n)+":"+tag)
		}
		list := e.path("serve.list")
		if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		if _, err := command(e.bin, "--root", tree, "--quiet", "export", "--from-file", list); err != nil {
			return err
		}
	}
	large, err := bench.WriteLayout(e.path("serve-oci"), bench.Image{Layers: 1, LayerSize: e.sz.serveBlob, Seed: 11})
	if err != nil {
		return err
	}
	args := []string{"--root", tree, "--quiet", "export", large.Source(), "bench/large:v1"}
	e.rep.cmd("serving: the large blob's image (set-up)", shellLine(e.bin, args))
	if _, err := command(e.bin, args...); err != nil {
		return err
	}
	// The files must be older than the embedded server's racy window
	// (2 s) for its cache of parsed type maps to be used, as in a tree
	// that is served.
	time.Sleep(2100 * time.Millisecond)

	name := u.names[0]
	var config bench.Blob
	for _, b := range u.layout.Blobs[name] {
		if b.MediaType == bench.MediaTypeConfig {
			config = b
		}
	}
	repo := "/v2/" + u.repo(name)
	targets := []serveTarget{
		{name: "manifest by tag", path: repo + "/manifests/" + tag, accept: manifestAccept, want: u.layout.Top[name]},
		{name: "manifest by digest", path: repo + "/manifests/" + string(u.layout.Top[name].Digest), accept: manifestAccept, want: u.layout.Top[name]},
		{name: fmt.Sprintf("small blob (%d B config)", config.Size), path: repo + "/blobs/" + string(config.Digest), want: config},
		{name: fmt.Sprintf("large blob (%s layer)", mib(large.Layers[0].Size)), path: "/v2/bench/large/blobs/" + string(large.Layers[0].Digest), want: large.Layers[0], large: true},
	}

	servers, stop, err := e.startServers(tree)
	defer stop()
	if err != nil {
		return err
	}
	for _, s := range servers {
		for _, t := range targets {
			body, h, err := get(s.url+t.path, t.accept)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			sum := sha256.Sum256(body)
			if got := "sha256:" + hex.EncodeToString(sum[:]); got != string(t.want.Digest) || int64(len(body)) != t.want.Size {
				return fmt.Errorf("%s %s: %d bytes %s, want %d bytes %s", s.name, t.path, len(body), got, t.want.Size, t.want.Digest)
			}
			if !t.large && h.Get("Docker-Content-Digest") != string(t.want.Digest) {
				return fmt.Errorf("%s %s: Docker-Content-Digest %q", s.name, t.path, h.Get("Docker-Content-Digest"))
			}
		}
	}
	loadBefore := loadAverage()
	for _, conns := range []int{32, 256} {
		for _, t := range targets {
			secs := e.sz.smallSecs
			if t.large {
				secs = e.sz.largeSecs
			}
			results := map[string][]wrkResult{}
			var cs []contender
			for _, s := range servers {
				wargs := []string{"-t2", fmt.Sprintf("-c%d", conns), fmt.Sprintf("-d%ds", secs), "--timeout", "30s", "--latency"}
				if t.accept != "" {
					wargs = append(wargs, "-H", "Accept: "+t.accept)
				}
				wargs = append(wargs, s.url+t.path)
				e.rep.cmd("serving: "+t.name+", "+s.name, shellLine(e.wrk, wargs))
				cs = append(cs, contender{name: s.name, run: func(int) (run, error) {
					r, err := command(e.wrk, wargs...)
					if err != nil {
						return r, err
					}
					w, err := parseWrk(string(r.stdout))
					if err != nil {
						return r, err
					}
					if w.errorsNote != "" {
						e.rep.note("%s, %s, %d connections: wrk says %s", s.name, t.name, conns, w.errorsNote)
					}
					results[s.name] = append(results[s.name], w)
					return r, nil
				}})
			}
			logf("serving %s at %d connections", t.name, conns)
			if _, err := rotate(e.sz.serveRounds, cs); err != nil {
				return err
			}
			e.serveRows(t, conns, results)
		}
	}
	e.rep.note("serving: load average (1, 5, 15 min) %s before the load runs, %s after: the machine is shared, "+
		"so the rows are medians of %d rounds, each server's runs interleaved", loadBefore, loadAverage(), e.sz.serveRounds)
	return e.noteAccessLogs(servers)
}

// loadAverage is the system's 1, 5 and 15 minute load averages, as
// /proc/loadavg gives them, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// noteAccessLogs checks that every server wrote its access log during the
// run, and notes how many lines each wrote, so the table is known to
// compare servers that all logged every request.
func (e *env) noteAccessLogs(servers []server) error {
	var counts []string
	for _, s := range servers {
		n, err := countLines(s.accessLog)
		if err != nil {
			return fmt.Errorf("%s's access log: %w", s.name, err)
		}
		if n == 0 {
			return fmt.Errorf("%s wrote no access log line to %s", s.name, s.accessLog)
		}
		counts = append(counts, fmt.Sprintf("%s %d", s.name, n))
	}
	e.rep.note("serving: every server wrote its access log to a file (lines: %s)", strings.Join(counts, ", "))
	return nil
}

// countLines counts the newlines in the file at path, reading it in
// pieces (a log of a run is hundreds of MB).
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	for {
		k, err := f.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func medianOf(rs []wrkResult, f func(wrkResult) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	n := len(vs)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

func (e *env) serveRows(t serveTarget, conns int, results map[string][]wrkResult) {
	rps := func(s string) float64 { return medianOf(results[s], func(w wrkResult) float64 { return w.rps }) }
	mbs := func(s string) float64 {
		return medianOf(results[s], func(w wrkResult) float64 { return w.bytesPerS / 1e6 })
	}
	p99 := func(s string) time.Duration {
		return time.Duration(medianOf(results[s], func(w wrkResult) float64 { return float64(w.p99) }))
	}
	what := fmt.Sprintf("serve %s, %d connections", t.name, conns)
	if t.large {
		r := mbs("embedded") / mbs("nginx")
		e.rep.add(row{what: what + ": throughput", ours: "embedded", oursVal: fmt.Sprintf("%.0f MB/s", mbs("embedded")),
			ref: "nginx", refVal: fmt.Sprintf("%.0f MB/s", mbs("nginx")), ratio: fmt.Sprintf("%.2f of nginx", r),
			target: "≥ 0.9 of nginx", met: met(r, 0.9, true), notes: fmt.Sprintf("Apache %.0f MB/s", mbs("apache"))})
	} else {
		r := rps("embedded") / rps("nginx")
		e.rep.add(row{what: what + ": requests/s", ours: "embedded", oursVal: fmt.Sprintf("%.0f /s", rps("embedded")),
			ref: "nginx", refVal: fmt.Sprintf("%.0f /s", rps("nginx")), ratio: fmt.Sprintf("%.2f of nginx", r),
			target: "≥ 0.8 of nginx", met: met(r, 0.8, true), notes: fmt.Sprintf("Apache %.0f /s", rps("apache"))})
	}
	pr := float64(p99("embedded")) / float64(p99("nginx"))
	e.rep.add(row{what: what + ": p99 latency", ours: "embedded", oursVal: ms(p99("embedded")),
		ref: "nginx", refVal: ms(p99("nginx")), ratio: fmt.Sprintf("%.2f× nginx's", pr),
		target: "≤ 2× nginx's", met: met(pr, 2, false), notes: "Apache " + ms(p99("apache"))})
}

// server is one server under load; accessLog is the file its access log
// is written to (all three write one: the configurations image-serve
// prints name runDir/access.log for nginx and Apache).
type server struct{ name, url, accessLog string }

// startServers starts the embedded server, nginx and Apache on tree, each
// on a free loopback port, with the configurations image-serve prints.
func (e *env) startServers(tree string) ([]server, func(), error) {
	var daemons []*daemon
	stop := func() {
		for _, d := range daemons {
			d.stop()
		}
	}
	var servers []server
	for _, name := range []string{"embedded", "nginx", "apache"} {
		port, err := freePort()
		if err != nil {
			return nil, stop, err
		}
		listen := addr(port)
		runDir := e.path(name + "-run")
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			return nil, stop, err
		}
		var cmd *exec.Cmd
		switch name {
		case "embedded":
			// The access log to a file, as nginx's and Apache's: the
			// comparison is of servers that each write a line per request.
			args := []string{"--root", tree, "serve", "--listen", listen, "--access-log", filepath.Join(runDir, "access.log")}
			e.rep.cmd("serving: embedded", shellLine(e.bin, args))
			cmd = exec.Command(e.bin, args...)
		case "nginx":
			cargs := []string{"--root", tree, "config", "nginx", "--standalone", "--listen", listen, "--run-dir", runDir}
			conf, err := e.writeConfig(runDir, "nginx.conf", cargs)
			if err != nil {
				return nil, stop, err
			}
			args := []string{"-c", conf, "-p", runDir, "-e", filepath.Join(runDir, "error.log"), "-g", "daemon off;"}
			e.rep.cmd("serving: nginx", shellLine(e.nginx, args))
			cmd = exec.Command(e.nginx, args...)
		case "apache":
			cargs := []string{"--root", tree, "config", "apache", "--standalone", "--listen", listen, "--run-dir", runDir}
			conf, err := e.writeConfig(runDir, "httpd.conf", cargs)
			if err != nil {
				return nil, stop, err
			}
			args := []string{"-f", conf, "-D", "FOREGROUND"}
			e.rep.cmd("serving: apache", shellLine(e.apache, args))
			cmd = exec.Command(e.apache, args...)
		}
		cmd.Env = serverEnv
		d, err := startDaemon(name, cmd, filepath.Join(runDir, "output.log"), "http://"+listen+"/v2/")
		if err != nil {
			return nil, stop, err
		}
		daemons = append(daemons, d)
		servers = append(servers, server{name, "http://" + listen, filepath.Join(runDir, "access.log")})
	}
	return servers, stop, nil
}

// writeConfig runs image-serve config with args and writes what it prints
// to runDir/file.
func (e *env) writeConfig(runDir, file string, args []string) (string, error) {
	e.rep.cmd("serving: configuration", shellLine(e.bin, args)+" > "+filepath.Join(runDir, file))
	r, err := command(e.bin, args...)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(runDir, file)
	return conf, os.WriteFile(conf, r.stdout, 0o644)
}
