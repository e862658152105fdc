package tree

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// changesDisk are the calls that change the tree. Only durable.go may make
// them: everywhere else a change must go through its functions, so that
// every durable step is a crash point the crash tests stop at.
var changesDisk = map[string]map[string]bool{
	"os":      {"Rename": true, "Link": true, "Symlink": true, "Remove": true, "RemoveAll": true, "Mkdir": true, "MkdirAll": true, "WriteFile": true, "Create": true, "Chmod": true, "OpenFile": true},
	"syscall": {"Flock": true, "Rename": true, "Link": true, "Symlink": true, "Unlink": true, "Rmdir": true, "Mkdir": true},
	"unix":    {"Flock": true, "Rename": true, "Renameat": true, "Renameat2": true, "Link": true, "Unlinkat": true},
}

// methodsChangingDisk are methods whose call is a durable step: syncs,
// and everything an os.Root (or an os.File) can change on the disk. Every
// path of the tree is resolved through the tree's os.Root (confine.go),
// so these are the calls a new write would make.
var methodsChangingDisk = map[string]bool{
	"Sync": true, "CloseAtomicallyReplace": true,
	"Rename": true, "Link": true, "Symlink": true, "Remove": true, "RemoveAll": true,
	"Mkdir": true, "MkdirAll": true, "Chmod": true, "Chown": true, "Lchown": true, "Chtimes": true,
	"Create": true, "OpenFile": true, "WriteFile": true, "Truncate": true,
}

// readOnlyFlags are the flags an OpenFile outside durable.go may pass,
// spelled as these constants: each opens for reading and creates nothing.
var readOnlyFlags = map[string]int{"readFlags": readFlags, "dirFlags": dirFlags}

// TestDurableStepsGoThroughCrashPoints parses the package and fails on any
// call that changes the disk outside durable.go.
func TestDurableStepsGoThroughCrashPoints(t *testing.T) {
	for name, flags := range readOnlyFlags {
		if flags&(os.O_WRONLY|os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND) != 0 {
			t.Errorf("%s opens for writing", name)
		}
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "durable.go" || name == "crashpoint.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok && changesDisk[pkg.Name][sel.Sel.Name] {
				t.Errorf("%s: %s.%s outside durable.go: no crash point", fset.Position(call.Pos()), pkg.Name, sel.Sel.Name)
			} else if methodsChangingDisk[sel.Sel.Name] && !readOnlyOpen(call) {
				t.Errorf("%s: .%s() outside durable.go: no crash point", fset.Position(call.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

// TestCrashTrace: with a trace armed, each durable step of a write is one
// numbered line, in the order taken, and a step that changes nothing (a
// rewrite of identical content) takes none.
func TestCrashTrace(t *testing.T) {
	root := newTree(t)
	trace := filepath.Join(t.TempDir(), "trace")
	if err := armCrashPoints("", trace); err != nil {
		t.Fatal(err)
	}
	defer func() {
		crash.trace.Close()
		crash.trace, crash.n, crashArmed = nil, 0, false
	}()
	raw := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(raw)
	put := func() {
		if err := root.putManifest("app", d, "application/vnd.oci.image.manifest.v1+json", raw); err != nil {
			t.Fatal(err)
		}
	}
	put()
	first := readTrace(t, trace)
	put() // the same again: nothing to do
	if again := readTrace(t, trace); len(again) != len(first) {
		t.Errorf("rewriting an identical manifest took %d more steps:\n%s", len(again)-len(first), strings.Join(again[len(first):], "\n"))
	}
	rel := func(p string) string { return strings.TrimPrefix(p, root.Dir()+"/") }
	want := []string{
		"rename " + rel(root.headersPath("app", d)),
		"rename " + rel(root.manifestPath("app", d)),
		"link " + rel(filepath.Join(root.manifestDir("app", d), "manifest.oci-manifest")),
	}
	var got []string
	for i, line := range first {
		n, rest, _ := strings.Cut(line, " ")
		if n != strconv.Itoa(i+1) {
			t.Errorf("line %d is numbered %s", i+1, n)
		}
		kind, path, _ := strings.Cut(rest, " ")
		if kind == stepRename || kind == stepLink {
			got = append(got, kind+" "+rel(path))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("renames and links, in order:\n%s\nwant:\n%s\nwhole trace:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), strings.Join(first, "\n"))
	}
}

func readTrace(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestArmCrashPointsRefusesBadStep(t *testing.T) {
	for _, v := range []string{"0", "-1", "x", "1.5"} {
		if err := armCrashPoints(v, ""); err == nil || !strings.Contains(err.Error(), CrashAtEnv) {
			t.Errorf("%s=%q: %v, want an error naming the variable", CrashAtEnv, v, err)
		}
	}
	crashArmed, crash.at = false, 0
}

// readOnlyOpen reports an OpenFile call whose flags are one of
// readOnlyFlags.
func readOnlyOpen(call *ast.CallExpr) bool {
	if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "OpenFile" || len(call.Args) != 3 {
		return false
	}
	flags, ok := call.Args[1].(*ast.Ident)
	if !ok {
		return false
	}
	_, known := readOnlyFlags[flags.Name]
	return known
}
