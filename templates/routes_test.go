package templates

import (
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// declaredFragments are the path segments, suffixes, names and patterns
// the route table declares: whatever a template needs of them it must
// take from the table.
func declaredFragments() []string {
	var frags []string
	add := func(s ...string) {
		for _, f := range s {
			if f != "" {
				frags = append(frags, f)
			}
		}
	}
	literals := func(t string) {
		tree.Expand(t, func(lit string) string {
			add(strings.Split(lit, "/")...)
			return lit
		}, func(tree.Param) string { return "" })
	}
	for _, rt := range tree.Routes() {
		for _, t := range append(append(append([]string{rt.Path, rt.Requires}, rt.Files...), rt.Fallbacks...), rt.Nginx...) {
			literals(t)
		}
		if p := strings.Trim(rt.Regexp, "^$"); strings.ContainsAny(p, "abcdefghijklmnopqrstuvwxyz") {
			add(p)
		}
	}
	for _, p := range []tree.Param{tree.ParamRepo, tree.ParamTag, tree.ParamDigest, tree.ParamExt, tree.ParamLinks} {
		add(p.Pattern())
	}
	// the grammars' telltale pieces
	add("sha256", "sha512", "[a-f0-9]", "[a-z0-9]", "[A-Za-z0-9", tree.ErrorsURL)
	for _, e := range distribution.Errors() {
		add(tree.ErrorFile(e))
	}
	for _, t := range tree.NginxTypes() {
		add(t.Ext)
	}
	l := reflect.ValueOf(tree.Names())
	for i := range l.NumField() {
		add(l.Field(i).String())
	}
	slices.Sort(frags)
	return slices.Compact(frags)
}

var (
	actions  = regexp.MustCompile(`(?s)\{\{.*?\}\}`)
	wordChar = func(b byte) bool {
		return b == '_' || b == '-' || b == '.' || '0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
	}
)

// literalFragments returns the declared fragments src spells itself:
// outside template actions and comment lines, as a whole word where the
// fragment begins or ends with a letter or digit.
func literalFragments(src string, frags []string) []string {
	var found []string
	for n, line := range strings.Split(actions.ReplaceAllString(src, ""), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, f := range frags {
			for i := 0; ; {
				j := strings.Index(line[i:], f)
				if j < 0 {
					break
				}
				start, end := i+j, i+j+len(f)
				i = start + 1
				if wordChar(f[0]) && f[0] != '.' && start > 0 && wordChar(line[start-1]) {
					continue
				}
				if last := f[len(f)-1]; wordChar(last) && last != '.' && end < len(line) && wordChar(line[end]) {
					continue
				}
				found = append(found, f+" (line "+strconv.Itoa(n+1)+": "+strings.TrimSpace(line)+")")
				break
			}
		}
	}
	return found
}

// TestTemplateFragments: the templates spell no path segment, suffix,
// name or pattern of the tree themselves; each comes from the route table
// (template actions), so a layout change reaches every server at once.
// Comment lines are not checked.
func TestTemplateFragments(t *testing.T) {
	frags := declaredFragments()
	for _, name := range []string{"apache.conf.tmpl", "apache-standalone.conf.tmpl"} {
		checkFragments(t, name, mustRead(t, files.ReadFile, name), frags)
	}
	for _, name := range []string{"nginx.conf.tmpl", "nginx-standalone.conf.tmpl"} {
		checkFragments(t, name, mustRead(t, nginxFiles.ReadFile, name), frags)
	}
}

// TestLiteralFragmentsFound: the check finds what it looks for.
func TestLiteralFragmentsFound(t *testing.T) {
	frags := declaredFragments()
	for _, src := range []string{
		`RewriteCond "%{DOCUMENT_ROOT}/v2/$1/manifests/$2/index.json" -f`,
		`AddHandler type-map .type-map`,
		`try_files $uri $uri.gz =404;`,
		`    map { default .tags; }`,
		`location ~ "^/{{.X}}/(?<r>[a-z0-9]+)/blobs/" {`,
		`ErrorDocument 404 /_errors/{{.Errors.BlobUnknown}}`,
		`location ~ "^/v2/_catalog$" {`,
	} {
		if got := literalFragments(src, frags); len(got) == 0 {
			t.Errorf("%q: no literal fragment found", src)
		}
	}
	for _, src := range []string{
		`listen {{.Listen}};`,
		`"~*index\.v1\+json|manifest\.list\.v2\+json" {{.Layout.TagLinksDir}};`,
		`# comments may say v2/<repo>/manifests/<digest>/index.json`,
		`add_header Cache-Control $image_serve_manifest_cache;`,
	} {
		if got := literalFragments(src, frags); len(got) != 0 {
			t.Errorf("%q: found %q", src, got)
		}
	}
}

func checkFragments(t *testing.T, name, src string, frags []string) {
	t.Helper()
	for _, f := range literalFragments(src, frags) {
		t.Errorf("%s spells %s; take it from the route table (tree.Routes, tree.Names)", name, f)
	}
}

func mustRead(t *testing.T, read func(string) ([]byte, error), name string) string {
	t.Helper()
	b, err := read(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
