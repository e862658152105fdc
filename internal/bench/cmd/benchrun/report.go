package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

var lookPath = exec.LookPath

// row is one line of the table: ours against a reference, their ratio as
// the target states it, and whether the target is met.
type row struct {
	what          string
	ours, oursVal string
	ref, refVal   string
	ratio         string
	target        string
	met           string // "yes", "**no**", or "" without a target
	notes         string
}

type report struct {
	rows     []row
	commands []string // markdown lines: "- section: `command`"
	seenCmd  map[string]bool
	notes    []string
	appendix []string // raw sections, markdown
	machine  []string
	took     time.Duration
	quick    bool
}

func (r *report) add(w row) { r.rows = append(r.rows, w) }

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// cmd records a command line, once, under what it measures.
func (r *report) cmd(section, line string) {
	if r.seenCmd == nil {
		r.seenCmd = map[string]bool{}
	}
	key := section + "\x00" + line
	if r.seenCmd[key] {
		return
	}
	r.seenCmd[key] = true
	r.commands = append(r.commands, fmt.Sprintf("- %s: `%s`", section, line))
}

// met says whether got meets a target of at least (atLeast) or at most
// limit.
func met(got, limit float64, atLeast bool) string {
	if atLeast && got >= limit || !atLeast && got <= limit {
		return "yes"
	}
	return "**no**"
}

func (r *report) table() string {
	var b strings.Builder
	b.WriteString("| what | ours | median | reference | median | ratio | target | met | notes |\n")
	b.WriteString("| --- | --- | ---: | --- | ---: | ---: | --- | --- | --- |\n")
	for _, w := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			w.what, w.ours, w.oursVal, w.ref, w.refVal, w.ratio, w.target, w.met, w.notes)
	}
	return b.String()
}

func (r *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmark results\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (internal/bench/cmd/benchrun) on %s, in %v.", time.Now().Format("2006-01-02"), r.took.Round(time.Second))
	if r.quick {
		b.WriteString(" **BENCH_QUICK=1: small sizes, one round: a smoke run, not a measurement.**")
	}
	b.WriteString("\n\nEvery comparison ran side by side in this one run, the contenders alternating (who goes first rotates each round); " +
		"each number is the median of its rounds. A ratio is stated the way its target is: a speed-up (their time / ours), " +
		"a fraction of a bound, or ours / theirs for latency. Targets are judged here, not asserted: the run fails only when a command fails.\n\n")
	b.WriteString(r.table())
	if len(r.notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	b.WriteString("\n## Machine\n\n")
	for _, m := range r.machine {
		b.WriteString("- " + m + "\n")
	}
	b.WriteString("\n## Command lines\n\nExactly as run (paths under the work directory, which is removed afterwards).\n\n")
	for _, c := range r.commands {
		b.WriteString(c + "\n")
	}
	for _, a := range r.appendix {
		b.WriteString("\n" + a + "\n")
	}
	return b.String()
}

// machine describes the machine and the tools' versions.
func machine(e *env) []string {
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).CombinedOutput()
		s := strings.TrimSpace(string(b))
		if err != nil && s == "" {
			return "(" + err.Error() + ")"
		}
		s, _, _ = strings.Cut(s, "\n")
		return s
	}
	cpu := "unknown"
	flags := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				cpu = strings.TrimSpace(v)
			case "flags":
				for _, f := range []string{"sha_ni", "avx2", "aes"} {
					if strings.Contains(" "+v+" ", " "+f+" ") && !strings.Contains(flags, f) {
						flags += " " + f
					}
				}
			}
		}
	}
	mem := "unknown"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem, _, _ = strings.Cut(string(b), "\n")
		mem = strings.Join(strings.Fields(mem)[1:], " ")
	}
	debian := "?"
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		debian = strings.TrimSpace(string(b))
	}
	return []string{
		fmt.Sprintf("CPU: %s, %d logical CPUs (flags:%s); memory %s", cpu, runtime.NumCPU(), flags, mem),
		fmt.Sprintf("OS: Debian %s, `%s`", debian, out("uname", "-srvm")),
		"Go: " + runtime.Version() + " (benchrun); " + out("go", "version"),
		"image-serve: " + out(e.bin, "--version"),
		"registry (CNCF distribution, source of the exports): " + out(e.registry, "--version"),
		"skopeo: " + out(e.skopeo, "--version"),
		"regsync (regclient, pinned in bench/tools/go.mod): " + out("sh", "-c", "go version -m "+e.regsync+" | awk '$1 == \"mod\" {print $3}'"),
		"nginx: " + out(e.nginx, "-v"),
		"Apache: " + out(e.apache, "-v"),
		"wrk: " + out(e.wrk, "--version"),
		"work directory: " + e.work + " on " + out("sh", "-c", "df -hT "+e.work+" | tail -1"),
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func dur(d time.Duration) string {
	if d >= 10*time.Second {
		return secs(d)
	}
	return ms(d)
}
