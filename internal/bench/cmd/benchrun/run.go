package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// run is one finished command: its wall time, CPU time and peak RSS.
type run struct {
	wall   time.Duration
	cpu    time.Duration // user + system, its waited-for children's included
	srcCPU time.Duration // the source registry's user + system meanwhile, when measured
	maxRSS int64         // bytes
	stdout []byte
}

// command runs name with args, its output captured, and fails with the
// command line and its standard error. Every distinct command line shape
// is recorded for RESULTS.md by the caller.
func command(name string, args ...string) (run, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := run{wall: time.Since(start), stdout: stdout.Bytes()}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.maxRSS = ru.Maxrss << 10
		}
	}
	if err != nil {
		return r, fmt.Errorf("%s: %v\n%s%s", shellLine(name, args), err, stderr.Bytes(), tail(stdout.Bytes()))
	}
	return r, nil
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// shellLine is name and args as one shell command line.
func shellLine(name string, args []string) string {
	parts := []string{quote(name)}
	for _, a := range args {
		parts = append(parts, quote(a))
	}
	return strings.Join(parts, " ")
}

func quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// contender is one side of a comparison: set-up and clean-up untimed
// around each timed run.
type contender struct {
	name    string
	setup   func(round int) error
	run     func(round int) (run, error)
	cleanup func(round int) error
	rounds  int // if not 0, runs only in the first rounds rounds
}

// samples is what the rounds of one contender measured.
type samples struct {
	walls, cpus, srcCPUs []time.Duration
	rss                  []int64
}

func (s samples) median() time.Duration { return bench.Median(s.walls) }

// cpuMedian and srcCPUMedian are the medians of the rounds' CPU times,
// the fairer measure on a shared machine, where wall time also counts
// the waits for other processes' use of the cores.
func (s samples) cpuMedian() time.Duration    { return bench.Median(s.cpus) }
func (s samples) srcCPUMedian() time.Duration { return bench.Median(s.srcCPUs) }

func (s samples) maxRSS() int64 {
	var m int64
	for _, r := range s.rss {
		m = max(m, r)
	}
	return m
}

// rotate runs every contender once per round, rotating who goes first
// each round so that the machine's drift spreads over all of them.
func rotate(rounds int, cs []contender) (map[string]samples, error) {
	out := map[string]samples{}
	for r := range rounds {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			if c.rounds > 0 && r >= c.rounds {
				continue
			}
			if c.setup != nil {
				if err := c.setup(r); err != nil {
					return nil, fmt.Errorf("%s: set-up: %w", c.name, err)
				}
			}
			res, err := c.run(r)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.name, err)
			}
			s := out[c.name]
			s.walls = append(s.walls, res.wall)
			s.cpus = append(s.cpus, res.cpu)
			s.srcCPUs = append(s.srcCPUs, res.srcCPU)
			s.rss = append(s.rss, res.maxRSS)
			out[c.name] = s
			if c.cleanup != nil {
				if err := c.cleanup(r); err != nil {
					return nil, fmt.Errorf("%s: clean-up: %w", c.name, err)
				}
				// What a round wrote is flushed before the next is timed.
				syscall.Sync()
			}
			logf("  round %d %-40s %8.1f ms  maxrss %s", r, c.name, bench.Millis(res.wall), mib(res.maxRSS))
		}
	}
	return out, nil
}

// sequence runs fns one after the other as one timed run, keeping the
// largest RSS of any of them.
func sequence(fns []func() (run, error)) (run, error) {
	var total run
	start := time.Now()
	for _, f := range fns {
		r, err := f()
		if err != nil {
			return total, err
		}
		total.maxRSS = max(total.maxRSS, r.maxRSS)
		total.cpu += r.cpu
	}
	total.wall = time.Since(start)
	return total, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// daemon is a server process of ours, in its own process group.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

// startDaemon starts cmd, its output going to logFile, and waits until
// url answers 200.
func startDaemon(name string, cmd *exec.Cmd, logFile, url string) (*daemon, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{}), log: logFile}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-d.done:
			b, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("%s exited: %v\n%s", name, d.err, tail(b))
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			d.stop()
			b, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("%s: no 200 from %s after 20s (%v)\n%s", name, url, err, tail(b))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the daemon's process group: SIGTERM, SIGKILL after 10 s.
func (d *daemon) stop() {
	pgid := -d.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-d.done
	}
}

// freePort returns a loopback port nobody listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// get fetches url with accept and returns the body.
func get(url, accept string) ([]byte, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return b, resp.Header, nil
}
