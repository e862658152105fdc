// Package archtest holds the tests of the project's shape: which package
// may import which (docs/architecture.md draws the map these check).
package archtest

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/image-serve/image-serve/"

// allowed lists, for each package of ours, the packages of ours its
// non-test code may import. Dependencies point one way: cmd → exporting,
// collecting, serving, the catalog views → the layout owner (tree) → the pure
// format packages (typemap, distribution), which import nothing of ours.
var allowed = map[string][]string{
	"typemap":      {},
	"distribution": {},
	"syncfile":     {"distribution"},
	"bundle":       {"distribution"},
	"imagefs":      {"distribution"},
	"tree":         {"typemap", "distribution"},
	"exporter":     {"tree", "typemap", "distribution", "bundle"},
	"airgap":       {"tree", "distribution", "bundle"},
	"gc":           {"tree", "typemap", "distribution"},
	"server":       {"tree", "typemap", "distribution"},
	"catalog":      {"tree", "typemap", "distribution", "imagefs"},
	"templates":    {"tree", "typemap", "distribution"},
	"watch":        {"tree", "typemap", "distribution"},
	// save writes archives from what a View reads: it needs no more
	// than the tree and the registry vocabulary.
	"archive": {"tree", "distribution"},
	// preheat talks HTTP to our own servers (caching tiers), never to a
	// source and never to a tree: the registry vocabulary only.
	"preheat": {"distribution"},
}

// forbidden lists standard packages a package of ours must not import:
// the layout owner knows files, not HTTP (the error vocabulary lives in
// distribution).
var forbidden = map[string][]string{
	"tree": {"net/http"},
}

// onlyImporter lists external modules that one package alone may import
// outside tests: only the exporter talks to sources.
var onlyImporter = map[string]string{
	"github.com/google/go-containerregistry": "exporter",
}

func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := strings.TrimPrefix(fields[0], module), fields[1:]
		for _, imp := range imports {
			ours, isOurs := strings.CutPrefix(imp, module)
			switch {
			case isOurs && (ours == "cmd" || strings.HasPrefix(ours, "cmd/")):
				t.Errorf("%s imports %s: nothing imports cmd/", pkg, ours)
			case isOurs && strings.HasPrefix(ours, "internal/") && !strings.HasPrefix(pkg, "internal/"):
				t.Errorf("%s imports %s outside its tests: internal/ holds test and bench helpers", pkg, ours)
			case isOurs:
				if rule, ok := allowed[pkg]; ok && !slices.Contains(rule, ours) {
					t.Errorf("%s imports %s; it may import only %v of ours", pkg, ours, rule)
				}
			}
			if slices.Contains(forbidden[pkg], imp) {
				t.Errorf("%s imports %s, which it must not", pkg, imp)
			}
			for prefix, only := range onlyImporter {
				if strings.HasPrefix(imp, prefix) && pkg != only && !strings.HasPrefix(pkg, "internal/") {
					t.Errorf("%s imports %s: only %s may", pkg, imp, only)
				}
			}
		}
		if _, ok := allowed[pkg]; !ok && !strings.HasPrefix(pkg, "cmd/") && !strings.HasPrefix(pkg, "internal/") {
			t.Errorf("package %s has no dependency rule: add it to allowed and to docs/architecture.md", pkg)
		}
	}
}
