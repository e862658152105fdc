package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// testSupport lists the packages that build trees for tests: the only
// code, tests aside, that may use tree.Fixture. They plant what no export
// writes — files out of step, links out of the root, FIFOs — so no code
// that ships may reach them.
var testSupport = []string{
	"internal/contract", "internal/hostiletree", "internal/legacytree",
	"internal/testtree", "internal/testserver",
}

// TestFixturesOnlyInTests: tree.Fixture, the tree's writers and path
// getters for tests, is called only by tests and the test-support
// packages. Guards: *tree.Root exported those writers and getters to
// everyone for the tests' sake, and shipped code called them rather than
// the handles (Publish, Inspect, Maintain) that own their order.
func TestFixturesOnlyInTests(t *testing.T) {
	root := filepath.Join("..", "..")
	seen := map[string]bool{} // test-support files that use it: the check looked
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && (rel == "tree" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir // the owner; no Go of ours
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, use := range fixtureUses(f) {
			if slices.Contains(testSupport, filepath.ToSlash(filepath.Dir(rel))) {
				seen[rel] = true
				continue
			}
			t.Errorf("%s names %s: test fixtures are for tests and %v only; shipped code goes through Publish, Inspect or Maintain", rel, use, testSupport)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !seen["internal/hostiletree/hostiletree.go"] {
		t.Errorf("no use of tree.Fixture found in internal/hostiletree/hostiletree.go: the check did not look where it should (saw %v)", seen)
	}
}

// fixtureUses lists where f names tree.Fixture or tree.Fixtures, however
// it imports the tree.
func fixtureUses(f *ast.File) []string {
	name := ""
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == module+"tree" {
			name = "tree"
			if imp.Name != nil {
				name = imp.Name.Name
			}
		}
	}
	if name == "" || name == "_" {
		return nil
	}
	var uses []string
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if x, ok := n.X.(*ast.Ident); ok && x.Name == name && isFixtureName(n.Sel.Name) {
				uses = append(uses, name+"."+n.Sel.Name)
			}
		case *ast.Ident:
			if name == "." && isFixtureName(n.Name) {
				uses = append(uses, n.Name)
			}
		}
		return true
	})
	return uses
}

func isFixtureName(s string) bool { return s == "Fixture" || s == "Fixtures" }

// TestTestSupportNotShipped: no package that ships — anything outside
// internal/ — depends on a test-support package, not even through
// another package, so tree.Fixture cannot reach shipped code that way.
func TestTestSupportNotShipped(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		if strings.HasPrefix(pkg, "internal/") {
			continue
		}
		for _, dep := range fields[1:] {
			if ours, ok := strings.CutPrefix(dep, module); ok && slices.Contains(testSupport, ours) {
				t.Errorf("%s depends on %s, a test-support package: only tests may", pkg, ours)
			}
		}
	}
}
