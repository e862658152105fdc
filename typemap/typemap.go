// Package typemap reads, writes and negotiates Apache httpd type maps.
//
// A tag in the static tree is a type map, manifests/<tag>.type-map, whose
// variants are the manifests the tag may stand for (an index, and a
// single-platform manifest for clients that cannot read indexes). Apache's
// type-map handler, in mod_negotiation, picks one of them per request from
// the client's Accept header. The embedded Go server serves the same tree and
// must pick the same variant, or a tag would name different manifests
// depending on the server in front of the tree. So Negotiate is a
// transcription of mod_negotiation.c from httpd 2.4, Parse reads maps the way
// that code reads them (TripleO's legacy maps included), and Marshal writes
// maps that it reads back unchanged.
//
// Only the dimensions image-serve uses are kept: a variant's URI, media type
// and source quality (qs). Parse skips Content-Language, Content-Encoding,
// Content-Length and Description, and the charset and level parameters of
// Content-Type; maps that use them may be negotiated differently by Apache.
package typemap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Variant is one record of an Apache type map.
type Variant struct {
	URI         string  // relative URI of the variant file, e.g. "sha256:<hex>/index.json"
	ContentType string  // media type without parameters
	QS          float64 // source quality; 0 means "not given" (Apache treats a missing qs as 1.0)
}

// Map is an Apache type-map file (mod_negotiation's type-map handler).
type Map struct {
	URI      string // the first record's URI (the tag name), may be empty
	Variants []Variant
}

// Marshal returns m in the format of Apache's type-map handler: a record
// holding only the map's own URI (none if m.URI is empty), then a record per
// variant, each record followed by a blank line:
//
//	URI: v1
//
//	Content-Type: application/vnd.oci.image.index.v1+json; qs=1.0
//	URI: sha256:<hex>/index.json
//
// The qs parameter is left out when QS is 0, as in TripleO's maps. Otherwise
// it is written with the fewest digits that give QS back, and at least one
// decimal: "1.0", "0.5", "0.001".
//
// Marshal formats whatever it is given. Apache reads back the same map only
// if Validate accepts it.
func (m Map) Marshal() []byte {
	var b strings.Builder
	if m.URI != "" {
		b.WriteString("URI: " + m.URI + "\n\n")
	}
	for _, v := range m.Variants {
		b.WriteString("Content-Type: " + v.ContentType)
		if v.QS != 0 {
			b.WriteString("; qs=" + formatQS(v.QS))
		}
		b.WriteString("\nURI: " + v.URI + "\n\n")
	}
	return []byte(b.String())
}

// formatQS formats a source quality for Marshal.
func formatQS(q float64) string {
	s := strconv.FormatFloat(q, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// Validate reports whether Apache reads Marshal's output as m. It rejects a
// map without variants, an empty URI or content type, a URI with a byte that
// Apache would take as the end of the URI or as a comment (white space,
// control bytes, and ;,"()), a content type that is not a lowercase
// type/subtype, and a qs outside [0, 1] or with more than three decimals,
// which Apache drops.
func (m Map) Validate() error {
	if m.URI != "" {
		if err := checkURI(m.URI); err != nil {
			return fmt.Errorf("typemap: map %v", err)
		}
	}
	if len(m.Variants) == 0 {
		return errors.New("typemap: no variants")
	}
	for i, v := range m.Variants {
		err := checkURI(v.URI)
		if err == nil {
			err = checkType(v.ContentType)
		}
		if err == nil {
			err = checkQS(v.QS)
		}
		if err != nil {
			return fmt.Errorf("typemap: variant %d: %v", i+1, err)
		}
	}
	return nil
}

func checkURI(u string) error {
	if u == "" {
		return errors.New("empty URI")
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c == 0x7f || strings.IndexByte(`;,"()`, c) >= 0 {
			return fmt.Errorf("URI %q contains %q", u, c)
		}
	}
	return nil
}

func checkType(t string) error {
	if t == "" {
		return errors.New("empty content type")
	}
	typ, sub, ok := strings.Cut(t, "/")
	if !ok || !isToken(typ) || !isToken(sub) || t != lower(t) {
		return fmt.Errorf("content type %q is not a lowercase type/subtype", t)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

func checkQS(q float64) error {
	if !(q >= 0 && q <= 1) {
		return fmt.Errorf("qs %v outside [0, 1]", q)
	}
	s := formatQS(q)
	if len(s)-strings.IndexByte(s, '.') > 4 {
		return fmt.Errorf("qs %s has more than three decimals", s)
	}
	return nil
}

// A SyntaxError reports a type map that Apache refuses or that holds no
// variant.
type SyntaxError struct {
	Line int // 1-based line number
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("typemap: line %d: %s", e.Line, e.Msg)
}

// Parse reads a type map as Apache's type-map handler does (read_type_map,
// get_header_line in mod_negotiation.c):
//
//   - Records are separated by lines that are empty or white space only, and
//     hold "Name: value" header lines. Names are case-insensitive, the space
//     after the colon is optional, lines may end in CRLF, a line starting
//     with white space continues the header line before it, and lines
//     starting with '#' are comments.
//   - A URI header gives the variant's URI: its value up to the first white
//     space, ';' or ','. A Content-Type header gives its media type,
//     lowercased, and its qs (or q) parameter, read as Apache reads it: to
//     three decimals, 1 if it is not a number below 1. Other parameters and
//     headers are ignored, and so is text in parentheses (an RFC 822
//     comment).
//   - A record without URI or Content-Type is ignored, except that the first
//     record of the map, if it has no Content-Type, gives the map's own URI.
//     A variant with a qs of 0 is dropped too: Apache never serves it, and in
//     a Variant a QS of 0 means "not given".
//   - An invalid Content-Length ends the map, as Apache stops reading there.
//
// Parse returns a *SyntaxError for a header line without a colon or without
// a value (Apache answers 500), for a Body header (inline variants, which
// this package does not support), and for a map without a variant.
func Parse(b []byte) (Map, error) {
	var (
		m       Map
		rec     record
		records int // records read, including ignored ones
	)
	headers, n := headerLines(string(b))
	for _, h := range append(headers, header{line: n}) { // a blank line ends the last record
		if h.text != "" {
			if len(h.text) >= 5 && lower(h.text[:5]) == "body:" {
				return Map{}, &SyntaxError{h.line, "Body: variants are not supported"}
			}
			more, err := rec.add(h)
			if err != nil {
				return Map{}, err
			}
			if !more {
				if len(m.Variants) == 0 {
					return Map{}, &SyntaxError{h.line, "invalid Content-Length ends the map before a variant"}
				}
				return m, nil
			}
			continue
		}
		if !rec.seen {
			continue // one more blank line
		}
		if records == 0 && !rec.hasType {
			m.URI = rec.uri
		} else if rec.uri != "" && rec.typ != "" && rec.qs != 0 {
			m.Variants = append(m.Variants, Variant{URI: rec.uri, ContentType: rec.typ, QS: rec.QS()})
		}
		records++
		rec = record{}
	}
	switch {
	case len(m.Variants) > 0:
		return m, nil
	case records == 0:
		return Map{}, &SyntaxError{n, "empty type map"}
	}
	return Map{}, &SyntaxError{n, "no variant with both URI and Content-Type"}
}

// A header is a header line of a type map, with its continuation lines, or
// a blank line if text is empty.
type header struct {
	line int // where it starts
	text string
}

// headerLines splits a type map into header lines and blank lines, as
// get_header_line does, and returns the number of the last line.
func headerLines(s string) (headers []header, n int) {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the map ends with a newline
	}
	for i, line := range lines {
		if j := strings.IndexByte(line, 0); j >= 0 {
			line = line[:j] // a C string ends there
		}
		line = strings.TrimSuffix(line, "\n")
		last := len(headers) - 1
		switch {
		case strings.HasPrefix(line, "#"):
			// A comment, even between a line and its continuation.
		case isBlank(line):
			headers = append(headers, header{line: i + 1})
		case isSpace(line[0]) && last >= 0 && headers[last].text != "":
			headers[last].text += "\n" + strings.TrimLeft(line, spaces)
		default:
			headers = append(headers, header{i + 1, line})
		}
	}
	return headers, max(len(lines), 1)
}

// record is the record that Parse is reading.
type record struct {
	seen    bool // a header line was read
	uri     string
	typ     string
	qs      int // Apache's qs in thousandths; 1000 if not given
	qsGiven bool
	hasType bool
}

// QS returns the record's qs as a Variant holds it.
func (r *record) QS() float64 {
	if !r.qsGiven {
		return 0
	}
	return float64(r.qs) / 1000 // the float64 nearest to the decimal value
}

// add reads a header line (lcase_header_name_return_body, read_type_map).
// It reports false if the map ends with this line.
func (r *record) add(h header) (bool, error) {
	name, value, ok := strings.Cut(h.text, ":")
	if !ok {
		return false, &SyntaxError{h.line, fmt.Sprintf("no ':' in %q", h.text)}
	}
	value = strings.TrimLeft(value, spaces)
	if value == "" {
		return false, &SyntaxError{h.line, fmt.Sprintf("no value for header %q", name)}
	}
	value = stripComments(value)
	r.seen = true
	switch lower(name) {
	case "uri":
		r.uri, _ = token(value, false)
	case "content-type":
		e, _ := parseEntry(value)
		r.typ, r.qs, r.qsGiven, r.hasType = e.name, e.q, e.qGiven, true
	case "content-length":
		// Apache logs AH00684 and stops reading, keeping earlier variants.
		t, _ := token(value, false)
		if n, err := strconv.ParseInt(t, 10, 64); t != "" && (err != nil || n < 0) {
			return false, nil
		}
	}
	return true, nil
}

// stripComments blanks out text in parentheses, as strip_paren_comments does
// (its handling of quotes has no effect).
func stripComments(s string) string {
	if !strings.Contains(s, "(") {
		return s
	}
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		if b[i] == '(' {
			for i < len(b) && b[i] != ')' {
				b[i] = ' '
				i++
			}
			if i < len(b) {
				b[i] = ' '
			}
		}
	}
	return string(b)
}
