package tree

import (
	"regexp"
	"strings"
)

// Dispatch runs for every request, and Go's regexp costs microseconds on
// the repository grammar. So each route's grammar is also matched by hand
// where its shape allows: FuzzFastMatch holds these matchers to the
// route's regular expression, which stays the definition.

// fastMatcher returns a matcher equivalent to rt's regular expression, or
// nil where rt's shape has none.
func fastMatcher(rt Route) func(string) (Match, bool) {
	if rt.Path == "" {
		return fastRegexp(rt.Regexp)
	}
	type token struct {
		lit   string
		param Param
	}
	var toks []token
	Expand(rt.Path, func(s string) string {
		if s != "" {
			toks = append(toks, token{lit: s})
		}
		return ""
	}, func(p Param) string {
		toks = append(toks, token{param: p})
		return ""
	})
	switch {
	case len(toks) == 1 && toks[0].lit != "":
		lit := toks[0].lit
		return func(p string) (Match, bool) { return Match{}, p == lit }
	case len(toks) < 3 || len(toks) > 4 || toks[0].lit == "" || toks[1].param == "" || toks[2].lit == "":
		return nil
	}
	prefix, first, sep := toks[0].lit, toks[1].param, toks[2].lit
	head := paramCheck(first)
	if head == nil {
		return nil
	}
	if len(toks) == 3 {
		// prefix {first} sep, anchored at both ends: one split.
		return func(p string) (Match, bool) {
			if !strings.HasPrefix(p, prefix) || !strings.HasSuffix(p, sep) || len(p) < len(prefix)+len(sep) {
				return Match{}, false
			}
			a := p[len(prefix) : len(p)-len(sep)]
			if !head(a) {
				return Match{}, false
			}
			var m Match
			m.set(first, a)
			return m, true
		}
	}
	last := toks[3].param
	switch {
	case last == ParamRest && first == ParamAny:
		// prefix {any} sep…: the first sep after a character, with no
		// newline before it ('.' matches none).
		return func(p string) (Match, bool) {
			if !strings.HasPrefix(p, prefix) {
				return Match{}, false
			}
			rest := p[len(prefix):]
			j := strings.Index(rest[min(1, len(rest)):], sep)
			if j < 0 {
				return Match{}, false
			}
			return Match{}, !strings.Contains(rest[:j+1], "\n")
		}
	case (last == ParamTag || last == ParamDigest) && strings.HasSuffix(sep, "/"):
		// The last param has no "/": sep ends at the path's last slash.
		tail := paramCheck(last)
		return func(p string) (Match, bool) {
			if !strings.HasPrefix(p, prefix) {
				return Match{}, false
			}
			rest := p[len(prefix):]
			k := strings.LastIndexByte(rest, '/') + 1
			if !strings.HasSuffix(rest[:k], sep) || k < len(sep) {
				return Match{}, false
			}
			a, b := rest[:k-len(sep)], rest[k:]
			if !head(a) || !tail(b) {
				return Match{}, false
			}
			var m Match
			m.set(first, a)
			m.set(last, b)
			return m, true
		}
	}
	return nil
}

// fastRegexp matches the routes given by a regular expression that is a
// literal to find, a literal suffix, a literal with an optional trailing
// slash or anything; nil for others.
func fastRegexp(re string) func(string) (Match, bool) {
	if re == "^" {
		return func(string) (Match, bool) { return Match{}, true }
	}
	if lit, complete := regexp.MustCompile(re).LiteralPrefix(); complete {
		return func(p string) (Match, bool) { return Match{}, strings.Contains(p, lit) }
	}
	if body, ok := strings.CutSuffix(re, "/?$"); ok && strings.HasPrefix(body, "^") {
		if lit, complete := regexp.MustCompile(body[1:]).LiteralPrefix(); complete {
			// ^lit/?$, the ping
			return func(p string) (Match, bool) { return Match{}, p == lit || p == lit+"/" }
		}
	}
	if body, ok := strings.CutSuffix(re, "$"); ok {
		if lit, complete := regexp.MustCompile(body).LiteralPrefix(); complete && !strings.HasPrefix(body, "^") {
			// Go's "$", which this follows, matches only at the end.
			return func(p string) (Match, bool) { return Match{}, strings.HasSuffix(p, lit) }
		}
	}
	return nil
}

// paramCheck returns the matcher of p's grammar, nil for a param without
// one here.
func paramCheck(p Param) func(string) bool {
	switch p {
	case ParamRepo:
		return isRepo
	case ParamTag:
		return isTag
	case ParamDigest:
		return isDigest
	case ParamAny:
		return func(s string) bool { return s != "" && !strings.Contains(s, "\n") }
	}
	return nil
}

func isAlnumLower(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// isRepo matches RepoPattern: components of lowercase alphanumeric runs
// joined by ".", "_", "__" or dashes, separated by single slashes.
func isRepo(s string) bool {
	for _, c := range strings.Split(s, "/") {
		if c == "" || !isAlnumLower(c[0]) || !isAlnumLower(c[len(c)-1]) {
			return false
		}
		for i := 0; i < len(c); {
			if isAlnumLower(c[i]) {
				i++
				continue
			}
			j := i
			for j < len(c) && !isAlnumLower(c[j]) {
				j++
			}
			switch sep := c[i:j]; {
			case sep == "." || sep == "_" || sep == "__":
			case strings.Trim(sep, "-") == "":
			default:
				return false
			}
			i = j
		}
	}
	return true
}

// isTag matches TagPattern.
func isTag(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || i > 0 && (c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// isDigest matches DigestPattern.
func isDigest(s string) bool {
	hex, n := "", 0
	switch {
	case strings.HasPrefix(s, "sha256:"):
		hex, n = s[len("sha256:"):], 64
	case strings.HasPrefix(s, "sha512:"):
		hex, n = s[len("sha512:"):], 128
	}
	if len(hex) != n || n == 0 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !('a' <= c && c <= 'f' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
