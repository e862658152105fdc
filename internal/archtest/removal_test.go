package archtest

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// removalPrimitives are the *tree.Root methods a removal is made of, in
// the order tree.Maint.Remove takes them: tags in step, referrers
// indexes, manifests, blobs, the repository.
var removalPrimitives = []string{
	"TagsInStep", "RefreshTags",
	"RefreshReferrers", "RemoveManifest", "RemoveBlob", "RemoveRepo",
}

// gcHandles are the only *tree.Root methods gc may call: the handles
// that hand it the tree — Maintain (the exclusive lock, its Maint and
// View), Inspect (the shared lock and its View), Untag (delete's tag
// phase: the shared lock, as a tag writer holds it) — and what describes
// the root rather than its content: Dir, Context (signals stop long
// walks), WithWaits, and RequireTree (a command refuses a root that
// holds no tree rather than creating one).
var gcHandles = []string{"Maintain", "Inspect", "Untag", "Dir", "Context", "WithWaits", "RequireTree"}

// gcNotYet lists the files of gc not held to gcHandles yet, each with
// its reason.
var gcNotYet = map[string]string{
	// verify reads through tree.View next (issue 18, "View for
	// verify/catalog/delete"); views_test.go holds it then.
	"verify.go": "moving onto tree.View",
}

// selections type-checks the non-test files of pkg (a path under the
// module) and returns every method or field selection in them, with the
// file set that places them.
func selections(t *testing.T, pkg string) (*token.FileSet, map[*ast.SelectorExpr]*types.Selection) {
	t.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join("..", "..", filepath.FromSlash(pkg), "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("%s: no Go files (%v)", pkg, err)
	}
	var files []*ast.File
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: importer.ForCompiler(fset, "source", nil)}
	if _, err := conf.Check(module+pkg, fset, files, info); err != nil {
		t.Fatalf("type-checking %s: %v", pkg, err)
	}
	return fset, info.Selections
}

// TestRemovalOrderInTree: gc marks, tree.Maint removes. No code of gc
// calls the tree's removal primitives on a *tree.Root, so the order of a
// removal — the crash safety of every instant of it — is written once, in
// tree.Maint.Remove and its verbs, and cannot move back into gc. Guards:
// gc's sweep, delete's prune and verify --repair each sequenced the steps
// themselves.
func TestRemovalOrderInTree(t *testing.T) {
	fset, sels := selections(t, "gc")
	var found []string
	for sel, s := range sels {
		name := sel.Sel.Name
		if s.Kind() == types.FieldVal || !slices.Contains(removalPrimitives, name) || !onRoot(s.Recv()) {
			continue
		}
		found = append(found, fset.Position(sel.Pos()).String()+": gc calls tree.Root."+name)
	}
	slices.Sort(found)
	for _, f := range found {
		t.Errorf("%s: a removal's order is tree.Maint.Remove's; mark, then call it", f)
	}
}

// TestGCThroughHandles: gc reads the tree through a tree.View and changes
// it through tree.Maint's verbs and tree.Untagger: on a *tree.Root it
// calls only the handles (gcHandles), so no path getter, no reader and
// no writer of the root's ~80 others — which are to go private. Guards:
// Collect called 32 of them, and gc 52 in all, problem paths included.
func TestGCThroughHandles(t *testing.T) {
	fset, sels := selections(t, "gc")
	var found []string
	for sel, s := range sels {
		name := sel.Sel.Name
		if s.Kind() == types.FieldVal || slices.Contains(gcHandles, name) || !onRoot(s.Recv()) {
			continue
		}
		pos := fset.Position(sel.Pos())
		if gcNotYet[filepath.Base(pos.Filename)] == "" {
			found = append(found, pos.String()+": gc calls tree.Root."+name)
		}
	}
	slices.Sort(found)
	for _, f := range found {
		t.Errorf("%s: read through a tree.View (Maint.View, Inspect), change through a tree.Maint verb", f)
	}
}

// onRoot reports whether t is tree.Root or a pointer to it.
func onRoot(t types.Type) bool {
	if p, ok := t.(*types.Pointer); ok {
		t = p.Elem()
	}
	n, ok := t.(*types.Named)
	return ok && n.Obj().Name() == "Root" && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == module+"tree"
}
