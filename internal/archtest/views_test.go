package archtest

import (
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"testing"
)

// viewHandles are the *tree.Root methods the readers and the CLI may call:
// the handles and their options. Everything else they read through a
// tree.View (Inspect, or Maint.View) and change through a tree.Maint
// verb (Maintain).
var viewHandles = []string{
	"Inspect", "Maintain", "Publish", "Init", "State", "Dir", "Context", "WithWaits", "RequireTree",
	// The catalog views of a user who may not write the tree, and so
	// cannot take the tree lock, read without it.
	"InspectUnlocked",
	// watch asks the kernel for inotify watches, which name directories:
	// Classify says, from a path alone (no read), what a changed entry
	// feeds; WatchDirs lists the directories below one to watch. Both are
	// questions of the layout that only a watcher asks.
	"Classify", "WatchDirs",
}

// viewReaders are the code that must hold the tree only through its
// handles: the catalog views, save's archives, watch, the CLI, and verify (gc's other
// files are held to their own list by TestRemovalOrderInTree).
var viewReaders = []struct {
	pkg   string // under the module
	files []string
}{
	{"catalog", nil},
	{"archive", nil},
	{"watch", nil},
	{"cmd/image-serve", nil},
	{"gc", []string{"verify.go"}},
}

// TestReadersHoldHandles: verify, the catalog views, watch and the CLI
// call on a *tree.Root only its handles. Guards: these packages called some thirty of the
// Root's ninety methods, path getters among them, so no method could go
// private and any of them could open a path the tree did not confine.
func TestReadersHoldHandles(t *testing.T) {
	for _, r := range viewReaders {
		t.Run(r.pkg, func(t *testing.T) {
			fset, sels := selections(t, r.pkg)
			checked := func(pos token.Position) bool {
				return r.files == nil || slices.Contains(r.files, filepath.Base(pos.Filename))
			}
			var found []string
			for sel, s := range sels {
				pos := fset.Position(sel.Pos())
				if s.Kind() != types.MethodVal || !onRoot(s.Recv()) || !checked(pos) || slices.Contains(viewHandles, sel.Sel.Name) {
					continue
				}
				found = append(found, pos.String()+": calls tree.Root."+sel.Sel.Name+": read it through a tree.View, change it through a tree.Maint verb")
			}
			slices.Sort(found)
			for _, f := range found {
				t.Error(f)
			}
		})
	}
}
