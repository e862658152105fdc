package archtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// roleViews lists packages that must hold the tree only through one of
// its narrow views (tree/roles.go), never as a *tree.Root: the exporter
// writes through tree.Publisher, the server reads through tree.Reader.
var roleViews = map[string]string{
	"exporter": "tree.Publisher",
	"server":   "tree.Reader",
}

func TestRoleViews(t *testing.T) {
	for pkg, view := range roleViews {
		files, err := filepath.Glob(filepath.Join("..", "..", pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", pkg, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "tree.Root") && !strings.HasPrefix(strings.TrimSpace(line), "//") {
					t.Errorf("%s:%d holds a tree.Root: %s may use the tree only through %s", f, i+1, pkg, view)
				}
			}
		}
	}
}
