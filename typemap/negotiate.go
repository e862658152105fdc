package typemap

import "strings"

// Negotiate returns the variant that Apache httpd 2.4's type-map handler
// serves for a GET or HEAD request, or false where Apache answers 406 Not
// Acceptable. accept is the request's Accept field value (several fields
// joined by ", "); "" means that the request has none, which accepts every
// variant. (Apache answers 406 to an Accept field that is present but empty;
// a caller that can tell the two apart must check for that itself.) length
// returns the size of a variant's file, which Apache gets from stat (-1 if
// the file is missing); if length is nil, all sizes are taken as equal.
//
// The rules, from set_accept_quality, mime_match, get_entry, atoq,
// maybe_add_default_accepts and is_variant_better in mod_negotiation.c:
//
//   - A variant takes the q of the Accept range that matches its type most
//     specifically: type/subtype, then type/*, then */*. Among equally
//     specific ranges the first one counts. Case does not matter, and "*" is
//     the same as "*/*".
//   - If no range in the header has a q below 1, a type matched only by */*
//     gets q=0.01, and one matched only by a type/* range gets q=0.02, so
//     that the types a client names win over wildcards.
//   - No Accept header stands for "*/*", so every variant is acceptable, at
//     q=0.01.
//   - q and qs are read to three decimals (q=0.0005 is 0), and anything that
//     is not a number below 1 is 1. A variant whose q or qs is 0 is not
//     acceptable.
//   - The variant with the highest q×qs wins, in single precision as in
//     Apache. A tie goes to the smaller file, and then to the variant that
//     comes first.
//   - Two quirks that image-serve's media types never meet are kept too:
//     levels (Apache takes HTML types as level 2 or 3 and others as level 0,
//     and a range with a lower level parameter does not match), and Apache's
//     own range "application/x-httpd-cgi;q=0.001", added to every request.
//
// A variant's QS is read as Apache reads it from Marshal's output, to three
// decimals. Other request headers are not modelled: for variants without
// charset, language or encoding, which is all Parse returns, Apache's choice
// depends on them only when they refuse the identity encoding or, for text/*
// types, the default charset. Neither is the Negotiate header, which Apache
// honours only for maps whose variant URIs have no '/'.
func Negotiate(variants []Variant, accept string, length func(Variant) int64) (Variant, bool) {
	ranges, explicitQ := parseAccept(accept)
	var (
		best  = -1
		bestQ float32
		bestC candidate
	)
	for i, v := range variants {
		c := candidate{typ: lower(v.ContentType), sq: 1}
		c.level, c.pseudoHTML = htmlLevel(c.typ)
		if v.QS != 0 {
			c.sq = float32(atoq(formatQS(v.QS))) / 1000
		}
		mq := c.acceptQuality(ranges, explicitQ)
		if mq == 0 || c.sq == 0 {
			continue // not acceptable
		}
		q := mq * c.sq
		if q == 0 || q < bestQ {
			continue
		}
		if best < 0 || q > bestQ {
			best, bestQ, bestC = i, q, c
			continue
		}
		// A tie: the level of HTML types decides, then the length.
		if l := c.levelCmp(&bestC); l > 0 || l == 0 && length != nil && length(v) < length(variants[best]) {
			best, bestC = i, c
		}
	}
	if best < 0 {
		return Variant{}, false
	}
	return variants[best], true
}

// cgiType is the media type that Apache gives to CGI scripts.
const cgiType = "application/x-httpd-cgi"

// parseAccept parses an Accept field (parse_accept_headers,
// maybe_add_default_accepts). explicitQ reports whether a range has a q
// below 1, which turns off Apache's wildcard fiddle.
func parseAccept(accept string) (ranges []entry, explicitQ bool) {
	if accept == "" {
		ranges = []entry{{name: "*/*", q: 1000}}
	} else {
		if i := strings.IndexByte(accept, 0); i >= 0 {
			accept = accept[:i] // a C string ends there
		}
		for s := accept; s != ""; {
			var e entry
			e, s = parseEntry(s)
			ranges = append(ranges, e)
			explicitQ = explicitQ || e.q < 1000
		}
	}
	return append(ranges, entry{name: cgiType, q: 1}), explicitQ
}

// A candidate is a variant being negotiated (var_rec).
type candidate struct {
	typ          string
	sq           float32 // source quality
	level        float32
	pseudoHTML   bool // text/html or a server-parsed HTML type
	levelMatched float32
}

// acceptQuality returns the candidate's q for the Accept ranges
// (set_accept_quality).
func (c *candidate) acceptQuality(ranges []entry, explicitQ bool) float32 {
	var q float32
	stars := 0 // 1 for */*, 2 for type/*, 3 for type/subtype
	for _, r := range ranges {
		n := c.match(r)
		if n <= stars {
			continue // no match, or no more specific than an earlier one
		}
		stars = n
		switch {
		case !explicitQ && n == 1:
			q = 0.01
		case !explicitQ && n == 2:
			q = 0.02
		default:
			q = float32(r.q) / 1000
		}
	}
	return q
}

// match returns 0 if r does not match the candidate's type, and otherwise
// how specific the match is, as mime_match does in httpd 2.4.71. (Older
// sources compare prefixes: there "app/*" matches "application/json", and a
// range beginning with "*" matches everything.)
func (c *candidate) match(r entry) int {
	name := r.name
	switch {
	case name == "*" || name == "*/*":
		return 1
	case len(name) > 2 && strings.HasSuffix(name, "/*") && strings.HasPrefix(c.typ, name[:len(name)-1]):
		return 2
	case name == c.typ || name == "text/html" && c.pseudoHTML:
		if r.level >= c.level {
			c.levelMatched = c.level
			return 3
		}
	}
	return 0
}

// levelCmp breaks a tie between candidates of one HTML-like type by level
// (level_cmp): it returns 1 if c is better than b, -1 if worse, else 0.
func (c *candidate) levelCmp(b *candidate) int {
	if c.pseudoHTML && !b.pseudoHTML || !c.pseudoHTML && c.typ != b.typ {
		return 0
	}
	switch {
	case c.levelMatched > b.levelMatched:
		return 1
	case c.levelMatched < b.levelMatched:
		return -1
	case c.level < b.level:
		return 1
	case c.level > b.level:
		return -1
	}
	return 0
}

// htmlLevel returns the level Apache assumes for a media type without a
// level parameter, and whether it is an HTML type (the KLUDGE in get_entry).
func htmlLevel(typ string) (level float32, html bool) {
	switch typ {
	case "text/html", "text/x-server-parsed-html":
		return 2, true
	case "text/x-server-parsed-html3":
		return 3, true
	}
	return 0, false
}

// An entry is a media type with parameters, as in an Accept range or a type
// map's Content-Type (accept_rec).
type entry struct {
	name   string
	q      int // q or qs in thousandths
	qGiven bool
	level  float32
}

// parseEntry parses the media range at the start of s and returns the rest
// of s after its comma (get_entry).
func parseEntry(s string) (e entry, rest string) {
	e.q = 1000
	e.name, s = token(s, false)
	e.name = lower(e.name)
	e.level, _ = htmlLevel(e.name)
	for strings.HasPrefix(s, ";") {
		var p string
		p, s = token(s[1:], true)
		i := strings.IndexAny(p, "="+spaces)
		if i < 0 {
			continue // no value: ignored
		}
		name, v := lower(p[:i]), strings.TrimLeft(p[i+1:], "="+spaces)
		if strings.HasPrefix(v, `"`) {
			v = v[1:]
			if j := strings.IndexAny(v, "\"\r\n"); j >= 0 {
				v = v[:j]
			}
		} else if j := strings.IndexAny(v, spaces); j >= 0 {
			v = v[:j]
		}
		switch name {
		case "q", "qs":
			e.q, e.qGiven = atoq(v), true
		case "level":
			e.level = float32(atoi(v))
		}
	}
	return e, strings.TrimPrefix(s, ",")
}

// token returns the token at the start of s, skipping white space before
// and after it (ap_get_token). A token ends at ';', ',' or, unless white is
// set, white space; a quoted string does not end it.
func token(s string, white bool) (tok, rest string) {
	s = strings.TrimLeft(s, spaces)
	i := 0
	for i < len(s) && (white || !isSpace(s[i])) && s[i] != ';' && s[i] != ',' {
		if s[i] == '"' {
			if j := strings.IndexByte(s[i+1:], '"'); j >= 0 {
				i += j + 1
			} else {
				i = len(s) - 1
			}
		}
		i++
	}
	return s[:i], strings.TrimLeft(s[i:], spaces)
}

// atoq reads a q or qs value in thousandths, as Apache's atoq does: digits
// after the third decimal are dropped, and a value that does not begin with
// "0" or "." is 1.
func atoq(s string) int {
	s = strings.TrimLeft(s, spaces)
	if s == "" {
		return 1000
	}
	if s[0] != '.' {
		if s[0] != '0' {
			return 1000
		}
		s = s[1:]
	}
	if !strings.HasPrefix(s, ".") {
		return 0
	}
	n := 0
	for i, w := range []int{100, 10, 1} {
		if i+1 >= len(s) || s[i+1] < '0' || s[i+1] > '9' {
			break
		}
		n += int(s[i+1]-'0') * w
	}
	return n
}

// atoi is C's atoi as glibc implements it: strtol, then a conversion to int.
func atoi(s string) int32 {
	s = strings.TrimLeft(s, spaces)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n uint64
	for i := 0; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		if d := uint64(s[i] - '0'); n <= (1<<63-d)/10 {
			n = n*10 + d
		} else {
			n = 1 << 63 // out of range
		}
	}
	switch {
	case n >= 1<<63 && neg:
		return 0 // int32(LONG_MIN)
	case n >= 1<<63:
		return -1 // int32(LONG_MAX)
	case neg:
		return int32(-int64(n))
	}
	return int32(n)
}

// spaces are the bytes for which C's isspace is true.
const spaces = " \t\n\v\f\r"

func isSpace(c byte) bool { return c == ' ' || '\t' <= c && c <= '\r' }

func isBlank(s string) bool { return strings.TrimLeft(s, spaces) == "" }

// lower maps ASCII letters to lower case, as C's tolower does, and leaves
// other bytes alone.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
