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

// rootHandles is the exported method set of *tree.Root, each with why it
// is there. Everything else the tree does is reached through a handle:
// Publish, Inspect's View, Maintain's Maint, Untag's Untagger, the
// Reader's FS — or, in tests, tree.Fixture. A method added to Root is a
// new way into the tree, and belongs here only with a reason.
var rootHandles = map[string]string{
	"Init":              "writes the skeleton of a fresh tree (serve, export, watch on an empty root)",
	"Dir":               "the administrator's --root, for messages and for what derives from it (unit files)",
	"State":             "whether a tree, a fresh root or nothing is there: the CLI's and the server's first question",
	"RequireTree":       "the error of a command that needs a tree where there is none",
	"Context":           "the signal context lock waits follow",
	"WithWaits":         "how lock waits report and end (the CLI's --wait, SIGTERM)",
	"Publish":           "the exporter's protocol: blobs, manifests, tags, in that order",
	"TagDigest":         "the one read a publisher needs: what a tag names now (sync's incremental check)",
	"IsPinned":          "sync's other read before publishing: a digest pinned already needs no request",
	"Inspect":           "the read model under the shared lock: verify, list, inspect, du",
	"InspectUnlocked":   "the read model for a user who may not write the tree and so cannot lock it",
	"Maintain":          "everything that removes or rewrites, under the exclusive lock",
	"Untag":             "delete's tag phase, under the shared lock, so exports go on",
	"FS":                "the served files as an fs.FS, confined: the server's only way to a file",
	"TagVariants":       "the server weighs a tag's variants against the Accept header",
	"ManifestMediaType": "the server answers a manifest with the media type its headers record",
	"ErrorsDir":         "Apache and nginx configurations alias the error bodies' URL to it (templates)",
	"Classify":          "watch: which derived file a changed path feeds, from the path alone",
	"WatchDirs":         "watch: the directories below one that inotify must watch",
}

// TestRootHandles: *tree.Root exports exactly rootHandles. Guards issue
// 18: Root exported 99 methods, 21 of them paths, and every package
// outside tree reached past the handles into whatever it needed.
func TestRootHandles(t *testing.T) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join("..", "..", "tree", "*.go"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("tree: no Go files (%v)", err)
	}
	var exported []string
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || !fn.Name.IsExported() || !isRootReceiver(fn.Recv) {
				continue
			}
			exported = append(exported, fn.Name.Name)
			if _, ok := rootHandles[fn.Name.Name]; !ok {
				t.Errorf("%s: *tree.Root exports %s, which is no handle: reach it through a View, a Maint verb or tree.Fixture, or add it to rootHandles with its reason", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	for name := range rootHandles {
		if !slices.Contains(exported, name) {
			t.Errorf("rootHandles lists %s, which *tree.Root no longer exports", name)
		}
	}
}

func isRootReceiver(recv *ast.FieldList) bool {
	if len(recv.List) != 1 {
		return false
	}
	star, ok := recv.List[0].Type.(*ast.StarExpr)
	if !ok {
		return false
	}
	id, ok := star.X.(*ast.Ident)
	return ok && id.Name == "Root"
}
