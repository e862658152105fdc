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

// removalExempt lists, per file of gc, the primitives it may still call
// itself: verify --repair takes out what is corrupt, blobs before the
// manifests that name them, an order of its own (issue 18: it is to
// become a verb of tree.Maint too).
var removalExempt = map[string][]string{
	"repair.go": {"TagsInStep", "RefreshTags", "RefreshReferrers", "RemoveManifest", "RemoveBlob"},
}

// TestRemovalOrderInTree: gc marks, tree.Maint removes. No code of gc
// calls the tree's removal primitives on a *tree.Root, so the order of a
// removal — the crash safety of every instant of it — is written once, in
// tree.Maint.Remove, and cannot move back into gc. Guards: gc's sweep and
// delete's prune each sequenced the steps themselves.
func TestRemovalOrderInTree(t *testing.T) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join("..", "..", "gc", "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("gc: no Go files (%v)", err)
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
	if _, err := conf.Check(module+"gc", fset, files, info); err != nil {
		t.Fatalf("type-checking gc: %v", err)
	}
	var found []string
	for sel, s := range info.Selections {
		name := sel.Sel.Name
		if s.Kind() == types.FieldVal || !slices.Contains(removalPrimitives, name) || !onRoot(s.Recv()) {
			continue
		}
		pos := fset.Position(sel.Pos())
		if !slices.Contains(removalExempt[filepath.Base(pos.Filename)], name) {
			found = append(found, pos.String()+": gc calls tree.Root."+name)
		}
	}
	slices.Sort(found)
	for _, f := range found {
		t.Errorf("%s: a removal's order is tree.Maint.Remove's; mark, then call it", f)
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
