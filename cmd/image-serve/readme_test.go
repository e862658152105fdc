package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestREADMEReference: README's CLI reference has a row for every command
// (and subcommand) the binary has, every flag of it in that row, and no
// flag the command lacks; the global flags line names every global flag.
// The reference cannot drift from --help unnoticed.
func TestREADMEReference(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## CLI reference")
	if start < 0 {
		t.Fatal("README has no CLI reference")
	}
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	rows := map[string]string{} // command path -> usage in its row
	row := regexp.MustCompile("(?m)^\\| `image-serve ([^`]*)` \\|")
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		words := strings.Fields(m[1])
		var path []string
		for _, w := range words {
			if strings.HasPrefix(w, "[") || strings.HasPrefix(w, "-") || strings.ToUpper(w) == w || strings.Contains(w, "|") {
				break
			}
			path = append(path, w)
		}
		rows[strings.Join(path, " ")] = m[1]
	}
	flagName := regexp.MustCompile(`--([a-z][a-z-]*)`)
	namesIn := func(s string) []string {
		var out []string
		for _, m := range flagName.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	var check func(prefix string, cmds []*cli.Command)
	check = func(prefix string, cmds []*cli.Command) {
		for _, c := range cmds {
			path := strings.TrimSpace(prefix + " " + c.Name)
			if len(c.Subcommands) > 0 {
				check(path, c.Subcommands)
				continue
			}
			usage, ok := rows[path]
			if !ok {
				t.Errorf("README's CLI reference has no row for %q", path)
				continue
			}
			var want []string
			for _, f := range c.Flags {
				want = append(want, f.Names()[0])
			}
			slices.Sort(want)
			if got := namesIn(usage); !slices.Equal(got, want) {
				t.Errorf("README row for %q names flags %v, the command has %v", path, got, want)
			}
		}
	}
	app := newApp()
	check("", app.Commands)
	global := section[strings.Index(section, "Global flags:"):]
	for _, f := range app.Flags {
		if !strings.Contains(global, "--"+f.Names()[0]) {
			t.Errorf("README's global flags do not name --%s", f.Names()[0])
		}
	}
}
