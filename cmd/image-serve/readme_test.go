package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/tree"
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

// TestJSONOutput runs every command that reports with --json and compares
// the fields it prints with README's "JSON output" table: every field
// printed is documented, and every documented field not marked "?" is
// printed.
func TestJSONOutput(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string][]string{}
	row := regexp.MustCompile("(?m)^\\| `([a-z -]+)` \\| (.*) \\|$")
	field := regexp.MustCompile("`([a-z_]+\\??)`")
	table := string(readme)[strings.Index(string(readme), "### JSON output"):]
	table = table[:strings.Index(table, "Global flags:")]
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		for _, f := range field.FindAllStringSubmatch(m[2], -1) {
			documented[m[1]] = append(documented[m[1]], f[1])
		}
	}
	root := t.TempDir() + "/root"
	g := func(args ...string) string {
		return mustRun(t, append([]string{"--root", root}, args...)...).stdout
	}
	outputs := map[string]string{
		"export":  g("export", "--json", "oci:../../testdata/hello-oci:latest", "hello:latest"),
		"list":    g("list", "--json"),
		"inspect": g("inspect", "--json", "hello:latest"),
		"du":      g("du", "--json"),
		"files":   g("files", "--json", "--platform", "linux/amd64", "hello:latest"),
		"diff":    g("diff", "--json", "--platform", "linux/amd64", "hello:latest"),
		"gc":      g("gc", "--json"),
		"verify":  g("verify", "--json"),
		"migrate": g("migrate", "--json"),
	}
	outputs["verify --repair"] = g("verify", "--repair", "--json")
	jobs := filepath.Join(t.TempDir(), "jobs")
	if err := os.WriteFile(jobs, []byte("oci:../../testdata/no-such-layout:latest hello:missing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outputs["export failed"] = run(t, "--root", root, "export", "--json", "--from-file", jobs).stdout
	gcLock, err := tree.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := tree.Fixture(gcLock).TryLockGC(); err != nil || l == nil {
		t.Fatalf("TryLockGC: %v %v", l, err)
	} else {
		outputs["gc skipped"] = g("gc", "--json")
		l.Unlock()
	}
	outputs["delete"] = g("delete", "--json", "hello:latest")
	for cmd, out := range outputs {
		var v any
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Errorf("%s --json: %v\n%s", cmd, err, out)
			continue
		}
		if a, ok := v.([]any); ok && len(a) > 0 {
			v = a[0]
		}
		obj, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s --json: not an object (or array of objects): %s", cmd, out)
			continue
		}
		want := documented[cmd]
		if len(want) == 0 {
			t.Errorf("README documents no JSON fields for %s", cmd)
		}
		for _, f := range want {
			name, optional := strings.CutSuffix(f, "?")
			if _, ok := obj[name]; !ok && !optional {
				t.Errorf("%s --json lacks documented field %q:\n%s", cmd, name, out)
			}
		}
		for k := range obj {
			if !slices.Contains(want, k) && !slices.Contains(want, k+"?") {
				t.Errorf("%s --json prints %q, which README does not document", cmd, k)
			}
		}
	}
}
