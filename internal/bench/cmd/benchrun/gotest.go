package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// goBenchmarks runs the go test benchmarks of the hot functions, with
// -benchmem, over the whole module (by name, so that a package's move
// does not lose one), and appends their lines to RESULTS.md.
func (e *env) goBenchmarks() error {
	runs := [][]string{
		// Blob streaming with verification (an export per iteration), the
		// re-export check, gc's mark phase over 20,000 manifests.
		{"test", "-run", "^$", "-bench", "^Benchmark(ExportOCILayout|ReexportUnchanged|GC)$", "-benchtime", e.sz.goBenchTime,
			"-benchmem", "-count", "1", "-timeout", "15m", "./..."},
		// Type-map and header reads and parsing, tag resolution.
		{"test", "-run", "^$", "-bench", "^Benchmark(Read|Typemap.*)$", "-benchtime", e.sz.goBenchTimeRead,
			"-benchmem", "-count", "1", "-timeout", "15m", "./..."},
	}
	var b strings.Builder
	b.WriteString("## go test benchmarks of the hot functions\n\n")
	b.WriteString("| package | benchmark | ns/op | B/op | allocs/op | other metrics |\n| --- | --- | ---: | ---: | ---: | --- |\n")
	for _, args := range runs {
		e.rep.cmd("go test benchmarks", shellLine("go", args))
		logf("go %s", strings.Join(args, " "))
		cmd := exec.Command("go", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, tail(out))
		}
		pkg := ""
		for _, line := range strings.Split(string(out), "\n") {
			if p, ok := strings.CutPrefix(line, "pkg: "); ok {
				pkg = strings.TrimPrefix(p, "github.com/image-serve/image-serve/")
			}
			f := strings.Fields(line)
			if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
				continue
			}
			cols := map[string]string{}
			var other []string
			for i := 2; i+1 < len(f); i += 2 {
				switch f[i+1] {
				case "ns/op", "B/op", "allocs/op":
					cols[f[i+1]] = f[i]
				default:
					other = append(other, f[i]+" "+f[i+1])
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", pkg, strings.TrimPrefix(f[0], "Benchmark"),
				cols["ns/op"], cols["B/op"], cols["allocs/op"], strings.Join(other, ", "))
		}
	}
	e.rep.appendix = append(e.rep.appendix, b.String())
	return nil
}
