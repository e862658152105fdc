// Command benchsummary copies `go test -bench` output from stdin to stdout
// as it comes, then prints a summary: one row per side-by-side comparison
// (the "<name>-ms" medians and "ratio-vs-<ref>" metrics of package
// internal/bench), then the other benchmarks' metrics. With -count above 1
// every number is the median over the counts.
//
// It exits 1 when the output reports a failure, or holds no benchmark.
//
//	go test -run '^$' -bench . ./... 2>&1 | go run ./internal/bench/cmd/benchsummary
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is one benchmark's metrics, each unit with its values over counts.
type result struct {
	name    string
	units   []string // in first-seen order
	metrics map[string][]float64
}

func (r *result) median(unit string) (float64, bool) {
	vs := slices.Clone(r.metrics[unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2], true
	}
	return (vs[n/2-1] + vs[n/2]) / 2, true
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// input is what the benchmark output says.
type input struct {
	results []*result
	cpu     string // the "cpu:" line
	procs   string // GOMAXPROCS, the names' "-N" suffix
	failed  bool
}

func main() {
	in, err := parse(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
	summarize(os.Stdout, in)
	switch {
	case in.failed:
		fmt.Fprintln(os.Stderr, "benchsummary: a benchmark failed (see above)")
		os.Exit(1)
	case len(in.results) == 0:
		fmt.Fprintln(os.Stderr, "benchsummary: no benchmark results in the input")
		os.Exit(1)
	}
}

// parse reads go test output from r, copying each line to echo as it
// comes.
func parse(r io.Reader, echo io.Writer) (*input, error) {
	in := &input{}
	byName := map[string]*result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(echo, line)
		switch {
		case strings.HasPrefix(line, "FAIL"), strings.HasPrefix(line, "--- FAIL"), strings.HasPrefix(line, "panic:"):
			in.failed = true
		case strings.HasPrefix(line, "cpu: "):
			in.cpu = strings.TrimSpace(strings.TrimPrefix(line, "cpu: "))
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if m := procsSuffix.FindString(name); m != "" {
			in.procs = m[1:]
			name = strings.TrimSuffix(name, m)
		}
		res := byName[name]
		if res == nil {
			res = &result{name: name, metrics: map[string][]float64{}}
			byName[name] = res
			in.results = append(in.results, res)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, ok := res.metrics[unit]; !ok {
				res.units = append(res.units, unit)
			}
			res.metrics[unit] = append(res.metrics[unit], v)
		}
	}
	return in, sc.Err()
}

func summarize(w io.Writer, in *input) {
	fmt.Fprintf(w, "\n== summary: %s; %d CPUs, GOMAXPROCS %s; %s\n", osName(), runtime.NumCPU(), in.procs, in.cpu)
	fmt.Fprintln(w, "ratio = median wall time of ours / median of the reference, run alternately: below 1 is faster")
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| benchmark\t| ours\t| median\t| reference\t| median\t| ratio\t| notes\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t| ---:\t| ---\t| ---:\t| ---:\t| ---\t|")
	var rest []*result
	for _, r := range in.results {
		rows := 0
		for _, unit := range r.units {
			ref, ok := strings.CutPrefix(unit, "ratio-vs-")
			if !ok {
				continue
			}
			rows++
			ours := oursName(r, ref)
			ratio, _ := r.median(unit)
			oursMs, _ := r.median(ours + "-ms")
			refMs, _ := r.median(ref + "-ms")
			fmt.Fprintf(tw, "| %s\t| %s\t| %.1f ms\t| %s\t| %.1f ms\t| %.2f\t| %s\t|\n", r.name, ours, oursMs, ref, refMs, ratio, notes(r, ours, ref))
		}
		if rows == 0 {
			rest = append(rest, r)
		}
	}
	tw.Flush()
	if len(rest) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| benchmark\t| medians\t|")
	fmt.Fprintln(tw, "| ---\t| ---\t|")
	for _, r := range rest {
		var parts []string
		for _, unit := range r.units {
			v, _ := r.median(unit)
			parts = append(parts, format(v, unit))
		}
		fmt.Fprintf(tw, "| %s\t| %s\t|\n", r.name, strings.Join(parts, ", "))
	}
	tw.Flush()
}

// oursName finds the contender compared with ref: the other "<name>-ms".
func oursName(r *result, ref string) string {
	for _, unit := range r.units {
		if name, ok := strings.CutSuffix(unit, "-ms"); ok && name != ref {
			return name
		}
	}
	return "?"
}

// notes lists the contenders' other metrics, "embedded-req/s" and the
// like.
func notes(r *result, ours, ref string) string {
	var parts []string
	for _, name := range []string{ours, ref} {
		for _, unit := range r.units {
			if m, ok := strings.CutPrefix(unit, name+"-"); ok && m != "ms" {
				v, _ := r.median(unit)
				parts = append(parts, fmt.Sprintf("%s %s", name, format(v, m)))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func format(v float64, unit string) string {
	switch {
	case v == 0:
		return "0 " + unit
	case v >= 100 || v == float64(int64(v)):
		return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " " + unit
}

// osName is PRETTY_NAME from os-release, or GOOS.
func osName() string {
	data, err := os.ReadFile("/etc/os-release")
	if err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				return strings.Trim(v, `"`)
			}
		}
	}
	return runtime.GOOS
}
