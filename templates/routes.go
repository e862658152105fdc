package templates

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// The templates take every path segment, suffix and pattern of their
// rules from the route table (tree.Routes): these functions render a
// route's grammar and files in each server's dialect. TestTemplateFragments
// fails when a template spells one itself.

// routeFuncs are the functions both templates have.
var routeFuncs = template.FuncMap{
	"route":  lookupRoute,
	"routes": lookupRoutes,
	"errdoc": errorURL,
	"rq":     regexpQuote,
	// plain: a route's pattern with nothing captured.
	"plain": func(rt tree.Route) string { return rt.Pattern(nil) },
	// filematch: the URL of a file template as an anchored pattern.
	"filematch": func(file string) string { return tree.PathPattern("/"+file, nil) },
	// prefix: a path template as a pattern of its prefix, for a variable
	// that may go on with a query ($request_uri).
	"prefix": func(path string) string { return tree.PathPattern(path+"{"+string(tree.ParamRest)+"}", nil) },
}

// apacheFuncs are the Apache template's.
var apacheFuncs = template.FuncMap{
	// rule: a route's pattern for RewriteRule, its params captured in
	// order as $1, $2.
	"rule": func(rt tree.Route) string {
		return rt.Pattern(func(_ tree.Param, p string) string { return "(" + p + ")" })
	},
	// named: a route's pattern for LocationMatch, its params captured as
	// <prefix>_<param>, which Apache sets as MATCH_<PREFIX>_<PARAM>.
	"named": func(rt tree.Route, prefix string) string {
		return rt.Pattern(func(p tree.Param, pat string) string { return "(?<" + prefix + "_" + string(p) + ">" + pat + ")" })
	},
	// docfile: a file template of route rt, below the document root, in
	// the back-references of rt's rule.
	"docfile": func(rt tree.Route, file string) (string, error) {
		params := rt.Params()
		return expand(file, func(p tree.Param) (string, bool) {
			for i, q := range params {
				if q == p {
					return fmt.Sprintf("$%d", i+1), true
				}
			}
			return "", false
		})
	},
}

// nginxFuncs are the nginx template's.
var nginxFuncs = template.FuncMap{
	// loc: a route's pattern for a location, its params captured as
	// $image_serve_<param>.
	"loc": func(rt tree.Route) string {
		return rt.Pattern(func(p tree.Param, pat string) string { return "(?<" + nginxVar(p)[1:] + ">" + pat + ")" })
	},
	// uri: a file or path template as a URI below the root, its params as
	// $image_serve_<param> unless pairs of param and value say otherwise.
	"uri": func(file string, pairs ...string) (string, error) {
		if len(pairs)%2 != 0 {
			return "", fmt.Errorf("uri %s: odd number of param/value arguments", file)
		}
		s, err := expand(file, func(p tree.Param) (string, bool) {
			for i := 0; i < len(pairs); i += 2 {
				if pairs[i] == string(p) {
					return pairs[i+1], true
				}
			}
			return nginxVar(p), true
		})
		if !strings.HasPrefix(s, "/") {
			s = "/" + s // a file template; a path template starts with it
		}
		return s, err
	},
	// exceptDot: a pattern that also refuses any path with a dot segment
	// (the dot-files route), for a location whose own grammar admits one.
	"exceptDot": func(pattern string) (string, error) {
		dot, err := lookupRoute(tree.RouteDotFiles)
		if err != nil {
			return "", err
		}
		return "^(?!.*" + dot.Pattern(nil) + ")" + strings.TrimPrefix(pattern, "^"), nil
	},
}

// regexpQuote makes pattern one double-quoted argument of either server,
// as it is: mod_rewrite reads its patterns without unescaping, while the
// other directives of both servers turn \\ into \, so a pattern is
// written only where neither reading changes it.
func regexpQuote(pattern string) (string, error) {
	if strings.ContainsAny(pattern, "\"\t\n\r ") || strings.Contains(pattern, `\\`) {
		return "", fmt.Errorf("pattern %s cannot be quoted alike for every directive", pattern)
	}
	return `"` + pattern + `"`, nil
}

// nginxVar is the variable nginx captures p in.
func nginxVar(p tree.Param) string { return "$image_serve_" + string(p) }

// expand renders a file template with value's rendering of each param,
// and fails for a param value does not know.
func expand(file string, value func(tree.Param) (string, bool)) (string, error) {
	var missing []string
	s := tree.Expand(file, nil, func(p tree.Param) string {
		v, ok := value(p)
		if !ok {
			missing = append(missing, string(p))
		}
		return v
	})
	if missing != nil {
		return "", fmt.Errorf("file %s: the route captures no %s", file, strings.Join(missing, ", "))
	}
	return s, nil
}

func lookupRoute(name string) (tree.Route, error) {
	rt, ok := tree.LookupRoute(name)
	if !ok {
		return tree.Route{}, fmt.Errorf("no route %q in the table", name)
	}
	return rt, nil
}

func lookupRoutes(names ...string) ([]tree.Route, error) {
	rts := make([]tree.Route, len(names))
	for i, n := range names {
		var err error
		if rts[i], err = lookupRoute(n); err != nil {
			return nil, err
		}
	}
	return rts, nil
}

// errorURL is the URL the static servers send e's body from.
func errorURL(e distribution.Error) string { return tree.ErrorsURL + tree.ErrorFile(e) }

// funcs merges function maps.
func funcs(maps ...template.FuncMap) template.FuncMap {
	all := template.FuncMap{}
	for _, m := range maps {
		for k, v := range m {
			all[k] = v
		}
	}
	return all
}
