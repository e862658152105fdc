package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestServerPathsFromTable: the embedded server finds every file it sends
// through the route table and opens it through tree.Reader's FS; it calls
// none of the tree's path getters (the methods named *Path of tree.Reader
// and of *tree.Root) nor what
// opens or stats a path by name (OpenInTree, StatInTree, OpenBlob), which
// would bypass the table's Files, Fallbacks and Cache. Guards: the server
// rebuilt each file's path from the getters and its own constants.
func TestServerPathsFromTable(t *testing.T) {
	root := filepath.Join("..", "..")
	banned := treePathMethods(t, filepath.Join(root, "tree"))
	banned = append(banned, "OpenInTree", "StatInTree", "OpenBlob")
	files, err := filepath.Glob(filepath.Join(root, "server", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("server: no Go files (%v)", err)
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if ok && slices.Contains(banned, sel.Sel.Name) {
				t.Errorf("%s calls %s: the server takes its files from the route table, through tree.Reader's FS", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

// treePathMethods lists the path getters of the tree: the methods named
// *Path of the interface tree.Reader and of *tree.Root, declared in the
// package's non-test files in dir.
func treePathMethods(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no Go files (%v)", dir, err)
	}
	var names []string
	add := func(id *ast.Ident) {
		if strings.HasSuffix(id.Name, "Path") && !slices.Contains(names, id.Name) {
			names = append(names, id.Name)
		}
	}
	reader := false
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil && len(d.Recv.List) == 1 && isRootPointer(d.Recv.List[0].Type) {
					add(d.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					ts, ok := spec.(*ast.TypeSpec)
					if !ok || ts.Name.Name != "Reader" {
						continue
					}
					it, ok := ts.Type.(*ast.InterfaceType)
					if !ok {
						t.Fatalf("%s: tree.Reader is no interface", path)
					}
					reader = true
					for _, m := range it.Methods.List {
						for _, id := range m.Names {
							add(id)
						}
					}
				}
			}
		}
	}
	if !reader || len(names) == 0 {
		t.Fatalf("%s: no tree.Reader, or no path getter: the rule checks nothing", dir)
	}
	return names
}

// isRootPointer reports whether e is *Root.
func isRootPointer(e ast.Expr) bool {
	star, ok := e.(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := star.X.(*ast.Ident)
	return ok && id.Name == "Root"
}

// TestServerHoldsFS: every use the server makes of tree.Reader's FS is
// through FS().Hold(), the FS a request holds (server.go's route), never
// a bare FS(), whose every Stat and Open opens the root by name and closes
// it again. Guards: the server read through bare FS calls, three to five
// opens of the root a request, and lost 15 % of the requests a second on
// manifests.
func TestServerHoldsFS(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "server", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("server: no Go files (%v)", err)
	}
	fset := token.NewFileSet()
	held := 0
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		holds := map[ast.Node]bool{} // the FS() calls whose result is held
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "Hold" && isFSCall(sel.X) {
				holds[sel.X] = true
				held++
			}
			return true
		})
		ast.Inspect(f, func(n ast.Node) bool {
			if isFSCall(n) && !holds[n] {
				t.Errorf("%s: FS() not held: a request's stats and opens go through the FS it holds (FS().Hold())", fset.Position(n.Pos()))
			}
			return true
		})
	}
	if held == 0 {
		t.Fatal("server: no FS().Hold(): the rule checks nothing")
	}
}

// isFSCall reports whether n is a call X.FS() without arguments.
func isFSCall(n ast.Node) bool {
	call, ok := n.(*ast.CallExpr)
	if !ok || len(call.Args) > 0 {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "FS"
}
