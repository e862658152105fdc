package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneQualityPolicy: a tag's variants get their qs in one place,
// tree.Variants; no package outside tree sets a TagVariant's QS in code
// that ships (tests may, to build a tree by hand). Guards: the exporter
// and migrate each kept a copy of the multi-arch policy.
func TestOneQualityPolicy(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (rel == "tree" || strings.HasPrefix(d.Name(), ".") || rel == "internal" || rel == "bench") {
				return filepath.SkipDir // the owner; test helpers; no shipped code
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			switch {
			case isTagVariant(lit.Type):
				checkQS(t, rel, lit)
			case isTagVariantSlice(lit.Type):
				for _, e := range lit.Elts {
					if el, ok := e.(*ast.CompositeLit); ok && el.Type == nil {
						checkQS(t, rel, el)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isTagVariant(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "TagVariant"
}

func isTagVariantSlice(e ast.Expr) bool {
	arr, ok := e.(*ast.ArrayType)
	return ok && isTagVariant(arr.Elt)
}

// checkQS fails the test when lit, a TagVariant literal, sets QS.
func checkQS(t *testing.T, file string, lit *ast.CompositeLit) {
	t.Helper()
	for _, e := range lit.Elts {
		if kv, ok := e.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok && id.Name == "QS" {
				t.Errorf("%s sets a TagVariant's QS: the quality policy is tree.Variants'", file)
			}
		}
	}
}

// TestOneMediaTypeTable: the manifest media types are spelled in one
// place, package distribution (its table, ManifestTypes); shipped code
// elsewhere names them through it. testdata's generator, a program of its
// own, is left out.
func TestOneMediaTypeTable(t *testing.T) {
	root := filepath.Join("..", "..")
	spelled := []string{
		`"application/vnd.oci.image.index.v1+json"`, `"application/vnd.oci.image.manifest.v1+json"`,
		`"application/vnd.docker.distribution.manifest.`,
	}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (rel == "distribution" || rel == "internal" || rel == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !(strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".tmpl")) || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range spelled {
			if strings.Contains(string(b), s) {
				t.Errorf("%s spells a manifest media type (%s): name it through distribution", rel, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
