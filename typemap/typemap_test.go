package typemap

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	ociIndex    = "application/vnd.oci.image.index.v1+json"
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	dockerV2    = "application/vnd.docker.distribution.manifest.v2+json"
	dockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"

	idxDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	amdDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// Accept headers of real clients, from their access logs (serving-notes §1.8).
const (
	skopeoAccept     = ociManifest + ", " + dockerV2 + ", application/vnd.docker.distribution.manifest.v1+prettyjws, application/vnd.docker.distribution.manifest.v1+json, " + dockerList + ", " + ociIndex
	craneAccept      = ociManifest + "," + dockerV2 + ",application/vnd.docker.distribution.manifest.v1+prettyjws,application/vnd.docker.distribution.manifest.v1+json," + dockerList + "," + ociIndex
	containerdAccept = dockerV2 + ", " + dockerList + ", " + ociManifest + ", " + ociIndex + ", */*"
	tripleoAccept    = dockerV2 + ";q=1, " + ociManifest + ";q=0.5"
	conformance11    = ociManifest
)

var marshalTests = []struct {
	name string
	m    Map
	want string
}{
	{
		name: "index and amd64 child with qs",
		m: Map{URI: "v1", Variants: []Variant{
			{URI: idxDigest + "/index.json", ContentType: ociIndex, QS: 1},
			{URI: amdDigest + "/index.json", ContentType: ociManifest, QS: 0.001},
		}},
		want: "URI: v1\n\n" +
			"Content-Type: " + ociIndex + "; qs=1.0\nURI: " + idxDigest + "/index.json\n\n" +
			"Content-Type: " + ociManifest + "; qs=0.001\nURI: " + amdDigest + "/index.json\n\n",
	},
	{
		name: "TripleO single-arch",
		m:    Map{URI: "latest", Variants: []Variant{{URI: amdDigest + "/index.json", ContentType: dockerV2}}},
		want: "URI: latest\n\nContent-Type: " + dockerV2 + "\nURI: " + amdDigest + "/index.json\n\n",
	},
	{
		name: "TripleO multi-arch",
		m: Map{URI: "16.2", Variants: []Variant{
			{URI: idxDigest + "/index.json", ContentType: dockerList},
			{URI: amdDigest + "/index.json", ContentType: dockerV2},
		}},
		want: "URI: 16.2\n\n" +
			"Content-Type: " + dockerList + "\nURI: " + idxDigest + "/index.json\n\n" +
			"Content-Type: " + dockerV2 + "\nURI: " + amdDigest + "/index.json\n\n",
	},
	{
		name: "no map URI, qs formats",
		m: Map{Variants: []Variant{
			{URI: "a", ContentType: "application/json", QS: 0.5},
			{URI: "b", ContentType: "text/plain", QS: 0.25},
			{URI: "c", ContentType: "image/png", QS: 0.999},
		}},
		want: "Content-Type: application/json; qs=0.5\nURI: a\n\n" +
			"Content-Type: text/plain; qs=0.25\nURI: b\n\n" +
			"Content-Type: image/png; qs=0.999\nURI: c\n\n",
	},
}

func TestMarshal(t *testing.T) {
	for _, tt := range marshalTests {
		if got := string(tt.m.Marshal()); got != tt.want {
			t.Errorf("%s: Marshal() =\n%q\nwant\n%q", tt.name, got, tt.want)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tt := range marshalTests {
		if err := tt.m.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", tt.name, err)
		}
		got, err := Parse(tt.m.Marshal())
		if err != nil || !reflect.DeepEqual(got, tt.m) {
			t.Errorf("%s: Parse(Marshal(m)) = %+v, %v; want %+v", tt.name, got, err, tt.m)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Variant{URI: "sha256:ab/index.json", ContentType: ociIndex, QS: 1}
	with := func(f func(*Variant)) Map {
		bad := ok
		f(&bad)
		return Map{URI: "v1", Variants: []Variant{ok, bad}}
	}
	tests := []struct {
		m    Map
		want string // "" for no error
	}{
		{Map{URI: "v1", Variants: []Variant{ok}}, ""},
		{with(func(v *Variant) { v.QS = 0 }), ""},
		{with(func(v *Variant) { v.QS = 0.001 }), ""},
		{Map{URI: "v1"}, "typemap: no variants"},
		{Map{URI: "v 1", Variants: []Variant{ok}}, `typemap: map URI "v 1" contains ' '`},
		{with(func(v *Variant) { v.URI = "" }), "typemap: variant 2: empty URI"},
		{with(func(v *Variant) { v.URI = "a\nb" }), `typemap: variant 2: URI "a\nb" contains '\n'`},
		{with(func(v *Variant) { v.URI = "a\rb" }), `typemap: variant 2: URI "a\rb" contains '\r'`},
		{with(func(v *Variant) { v.URI = "a;b" }), `typemap: variant 2: URI "a;b" contains ';'`},
		{with(func(v *Variant) { v.URI = "a(b)" }), `typemap: variant 2: URI "a(b)" contains '('`},
		{with(func(v *Variant) { v.ContentType = "" }), "typemap: variant 2: empty content type"},
		{with(func(v *Variant) { v.ContentType = "application/json\n" }), `typemap: variant 2: content type "application/json\n" is not a lowercase type/subtype`},
		{with(func(v *Variant) { v.ContentType = "Application/JSON" }), `typemap: variant 2: content type "Application/JSON" is not a lowercase type/subtype`},
		{with(func(v *Variant) { v.ContentType = "application/json; charset=utf-8" }), "is not a lowercase type/subtype"},
		{with(func(v *Variant) { v.ContentType = "json" }), "is not a lowercase type/subtype"},
		{with(func(v *Variant) { v.QS = 1.5 }), "typemap: variant 2: qs 1.5 outside [0, 1]"},
		{with(func(v *Variant) { v.QS = -0.5 }), "typemap: variant 2: qs -0.5 outside [0, 1]"},
		{with(func(v *Variant) { v.QS = math.NaN() }), "typemap: variant 2: qs NaN outside [0, 1]"},
		{with(func(v *Variant) { v.QS = 0.0005 }), "typemap: variant 2: qs 0.0005 has more than three decimals"},
	}
	for _, tt := range tests {
		err := tt.m.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Validate(%+v) = %v, want nil", tt.m, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("Validate(%+v) = %v, want %q", tt.m, err, tt.want)
		}
	}
}

func TestParse(t *testing.T) {
	amd := Variant{URI: amdDigest + "/index.json", ContentType: dockerV2}
	tests := []struct {
		name string
		in   string
		want Map
	}{
		{
			name: "TripleO single-arch",
			in:   "URI: latest\n\nContent-Type: " + dockerV2 + "\nURI: " + amdDigest + "/index.json\n\n",
			want: Map{URI: "latest", Variants: []Variant{amd}},
		},
		{
			name: "CRLF, no final blank line",
			in:   "URI: latest\r\n\r\nContent-Type: " + dockerV2 + "\r\nURI: " + amdDigest + "/index.json\r\n",
			want: Map{URI: "latest", Variants: []Variant{amd}},
		},
		{
			name: "no final newline",
			in:   "URI: latest\n\nContent-Type: " + dockerV2 + "\nURI: " + amdDigest + "/index.json",
			want: Map{URI: "latest", Variants: []Variant{amd}},
		},
		{
			name: "names in any case, no space, tabs, blank lines of white space",
			in:   "uri:latest\n \t\n\n\nuRi:\t" + amdDigest + "/index.json\nCONTENT-TYPE:" + strings.ToUpper(dockerV2) + "\n",
			want: Map{URI: "latest", Variants: []Variant{amd}},
		},
		{
			// Parse drops the level, which Apache would use (package doc).
			name: "parameters",
			in:   "Content-Type: Application/JSON ; charset=utf-8;QS=0.5 ;level=1\nURI: a\n\nContent-Type: text/plain; q=.25\nURI: b\n",
			want: Map{Variants: []Variant{{"a", "application/json", 0.5}, {"b", "text/plain", 0.25}}},
		},
		{
			name: "qs as Apache reads it",
			in: "Content-Type: a/a; qs=1.5\nURI: a\n\nContent-Type: a/b; qs=0.1239\nURI: b\n\n" +
				"Content-Type: a/c; qs=abc\nURI: c\n\nContent-Type: a/d; qs=\"0.3\"\nURI: d\n\n" +
				"Content-Type: a/e; qs=1.0; qs=0.002\nURI: e\n\n",
			want: Map{Variants: []Variant{{"a", "a/a", 1}, {"b", "a/b", 0.123}, {"c", "a/c", 1}, {"d", "a/d", 0.3}, {"e", "a/e", 0.002}}},
		},
		{
			name: "qs 0 drops the variant",
			in:   "Content-Type: a/a; qs=0\nURI: a\n\nContent-Type: a/b; qs=0.0009\nURI: b\n\nContent-Type: a/c; qs=0.001\nURI: c\n\n",
			want: Map{Variants: []Variant{{"c", "a/c", 0.001}}},
		},
		{
			name: "continuation lines",
			in:   "URI: v1\n\nContent-Type: a/b\n ; qs=0.5\nURI:\n\tx\n\n",
			want: Map{URI: "v1", Variants: []Variant{{"x", "a/b", 0.5}}},
		},
		{
			name: "comments",
			in:   "# a comment\nURI: v1\n\n#\nContent-Type: a/b\n# between a line and its continuation\n  ;qs=0.5\nURI: x (the file) \n\n",
			want: Map{URI: "v1", Variants: []Variant{{"x", "a/b", 0.5}}},
		},
		{
			name: "parenthesised comment",
			in:   "Content-Type: a/b (comment; qs=0.1) ; qs=0.7\nURI: x\n",
			want: Map{Variants: []Variant{{"x", "a/b", 0.7}}},
		},
		{
			name: "URI is the first token",
			in:   "Content-Type: a/b\nURI: x y\n\nContent-Type: a/c\nURI: z;w\n",
			want: Map{Variants: []Variant{{"x", "a/b", 0}, {"z", "a/c", 0}}},
		},
		{
			name: "unknown headers, records without URI or Content-Type",
			in: "URI: v1\nDescription: the tag\n\n" +
				"URI: lost\nContent-Language: en\nContent-Length: 12\n\n" +
				"Content-Type: a/lost\n\n" +
				"Content-Type: a/b\nContent-Encoding: gzip\nDescription: kept\nX-Foo: bar\nURI: kept\n\n",
			want: Map{URI: "v1", Variants: []Variant{{"kept", "a/b", 0}}},
		},
		{
			name: "first record is a variant",
			in:   "Content-Type: a/b\nURI: x\n\nURI: lost\n\n",
			want: Map{Variants: []Variant{{"x", "a/b", 0}}},
		},
		{
			name: "an invalid Content-Length ends the map",
			in:   "Content-Type: a/b\nURI: x\n\nContent-Type: a/c\nURI: y\nContent-Length: 1x\n\nContent-Type: a/d\nURI: z\n\n",
			want: Map{Variants: []Variant{{"x", "a/b", 0}}},
		},
		{
			name: "later headers win",
			in:   "Content-Type: a/b\nURI: x\nURI: y\nContent-Type: a/c;qs=0.5\n",
			want: Map{Variants: []Variant{{"y", "a/c", 0.5}}},
		},
	}
	for _, tt := range tests {
		got, err := Parse([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Parse(%q) = %+v, %v; want %+v", tt.name, tt.in, got, err, tt.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", "typemap: line 1: empty type map"},
		{"\n \n\n", "typemap: line 3: empty type map"},
		{"# only a comment\n", "typemap: line 1: empty type map"},
		{"URI: v1\n\n", "typemap: line 2: no variant with both URI and Content-Type"},
		{"URI: v1\n\nContent-Type: a/b\n\nURI: x\n", "typemap: line 5: no variant"},
		{"URI: v1\n\nContent-Type: a/b\nURI x\n\n", `typemap: line 4: no ':' in "URI x"`},
		{"URI: v1\nContent-Type a/b\n  ; qs=1\n", `typemap: line 2: no ':' in "Content-Type a/b\n; qs=1"`},
		{"URI: v1\n\nContent-Type:\nURI: x\n", `typemap: line 3: no value for header "Content-Type"`},
		{"URI: v1\n\nContent-Type: a/b\nURI:  \t\r\n", `typemap: line 4: no value for header "URI"`},
		{"URI: v1\n\nContent-Type: a/b\nURI: x\nBody:----\nhello\n----\n", "typemap: line 5: Body: variants are not supported"},
		{"Content-Type: a/b\nURI: x\nContent-Length: -1\n", "typemap: line 3: invalid Content-Length ends the map before a variant"},
	}
	for _, tt := range tests {
		m, err := Parse([]byte(tt.in))
		var se *SyntaxError
		if !errors.As(err, &se) || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %+v, %v; want error %q", tt.in, m, err, tt.want)
		}
	}
}

// negotiateTests are checked against Apache httpd 2.4: the maps as Marshal
// writes them, the variant files of the given sizes, requests with the given
// Accept header.
var negotiateTests = []struct {
	name     string
	variants []Variant
	sizes    []int64 // file sizes, -1 for a missing file; nil: all equal
	accept   string  // "" for no Accept header
	want     string  // the chosen variant's URI, "" for 406
}{}

func init() {
	// Sizes measured on real images (serving-notes §4.3).
	idx := Variant{URI: "idx/index.json", ContentType: ociIndex}
	lst := Variant{URI: "lst/index.json", ContentType: dockerList}
	amd := Variant{URI: "amd/index.json", ContentType: ociManifest}
	dv2 := Variant{URI: "dv2/index.json", ContentType: dockerV2}
	withQS := func(v Variant, qs float64) Variant { v.QS = qs; return v }
	type tc = struct {
		name     string
		variants []Variant
		sizes    []int64
		accept   string
		want     string
	}
	add := func(name string, vs []Variant, sizes []int64, cases map[string]string) {
		for _, accept := range slices.Sorted(maps.Keys(cases)) {
			negotiateTests = append(negotiateTests, tc{name, vs, sizes, accept, cases[accept]})
		}
	}

	// IDX + LST without qs: both match exactly, the smaller file wins.
	add("IDX+LST, no qs", []Variant{idx, lst}, []int64{622, 657}, map[string]string{
		skopeoAccept:     idx.URI,
		craneAccept:      idx.URI,
		containerdAccept: idx.URI,
		"*/*":            idx.URI,
		"":               idx.URI,
		dockerList:       lst.URI,
		dockerV2:         "",
	})
	// IDX + AMD without qs: multi-arch silently lost to the smaller child.
	add("IDX+AMD, no qs", []Variant{idx, amd}, []int64{622, 401}, map[string]string{
		skopeoAccept:     amd.URI,
		craneAccept:      amd.URI,
		containerdAccept: amd.URI,
		"*/*":            amd.URI,
		"":               amd.URI,
	})
	add("IDX qs=1.0 + AMD qs=0.5", []Variant{withQS(idx, 1), withQS(amd, 0.5)}, []int64{622, 401}, map[string]string{
		skopeoAccept:                             idx.URI,
		craneAccept:                              idx.URI,
		containerdAccept:                         idx.URI,
		"*/*":                                    idx.URI,
		"":                                       idx.URI,
		conformance11:                            amd.URI,
		ociManifest + ", " + ociIndex + ";q=0.9": idx.URI,
		// No q below 1: */* counts 0.01, so the named manifest wins.
		ociManifest + ", */*": amd.URI,
		// With a q below 1, */* counts at its own q.
		ociManifest + ", */*;q=0.9": idx.URI,
	})
	// image-serve's maps: the index at qs=1.0, the linux/amd64 child for
	// clients that cannot read indexes at qs=0.001.
	add("IDX qs=1.0 + Docker v2 child qs=0.001", []Variant{withQS(idx, 1), withQS(dv2, 0.001)}, []int64{622, 401}, map[string]string{
		skopeoAccept:     idx.URI,
		craneAccept:      idx.URI,
		containerdAccept: idx.URI,
		"":               idx.URI,
		dockerV2:         dv2.URI,
		tripleoAccept:    dv2.URI,
		"text/html":      "",
	})
	add("Docker list qs=1.0 + Docker v2 child qs=0.001, listed child first", []Variant{withQS(dv2, 0.001), withQS(lst, 1)}, []int64{401, 657}, map[string]string{
		skopeoAccept:           lst.URI,
		dockerV2:               dv2.URI,
		dockerV2 + ";q=1":      dv2.URI,
		"application/*":        lst.URI,
		dockerList + ";q=0.01": lst.URI, // 0.01×1.0 > 0
	})
	// Single-variant maps (serving-notes §1.8).
	dockerOnly := dockerV2 + ", " + dockerList
	for _, v := range []Variant{idx, lst, amd, dv2} {
		want := map[string]string{skopeoAccept: v.URI, craneAccept: v.URI, containerdAccept: v.URI, "": v.URI, "*/*": v.URI, "*": v.URI}
		if v == idx || v == amd {
			want[dockerOnly] = ""
		}
		if v != amd {
			want[conformance11] = ""
		}
		add("single "+v.ContentType, []Variant{v}, nil, want)
	}

	// Accept parsing and matching.
	js := Variant{URI: "js/f", ContentType: "application/json"}
	txt := Variant{URI: "txt/f", ContentType: "text/plain", QS: 0.6}
	add("Accept syntax", []Variant{js}, nil, map[string]string{
		"APPLICATION/JSON":                      js.URI,
		"text/plain,application/json":           js.URI,
		"text/plain application/json":           js.URI, // the old format, without commas
		"application/json;q=0":                  "",
		"application/json; q=0.0005":            "", // three decimals
		"application/json;q=0.0019":             js.URI,
		"application/json;q=abc":                js.URI,
		"application/json;Q=1.5":                js.URI,
		"application/json;q=0, */*":             "", // the most specific range counts
		"*/*;q=0.5, application/json;q=0":       "",
		"application/*":                         js.URI,
		"app/*":                                 "",
		"application*":                          "",
		"*/json":                                "",
		"*foo":                                  "",
		",,, ;q=0.5, ;;, foo/bar":               "",
		`"quoted, string"/x, application/json`:  js.URI,
		"application/json;level=-1":             "", // the level is below the variant's (0)
		"application/json;level=1;charset=utf8": js.URI,
		"text/plain;q=1;q=0.5, text/html":       "", // a typo'd header: nothing for JSON
	})
	add("first of equally specific ranges", []Variant{js, txt}, nil, map[string]string{
		"application/json;q=0.5, application/json;q=1, text/plain": txt.URI, // 0.5 < 0.6
		"application/json;q=1, application/json;q=0.5, text/plain": js.URI,
		"*/*, application/json;q=0.1":                              txt.URI, // json 0.1, text 1×0.6
		"application/*, text/plain":                                txt.URI, // json 0.02, text 0.6
		"application/*;q=1, text/plain":                            txt.URI, // q=1 is not below 1: still 0.02
		"application/*;q=1, text/plain;q=0.9":                      js.URI,  // 1 > 0.9×0.6
	})

	// Ties: q×qs equal, then the smaller file, then the first variant.
	a := Variant{URI: "a/f", ContentType: "application/x-a"}
	b := Variant{URI: "b/f", ContentType: "application/x-b"}
	add("tie, equal sizes", []Variant{a, b}, nil, map[string]string{"": a.URI, "application/x-b, application/x-a": a.URI})
	add("tie, smaller second", []Variant{a, b}, []int64{200, 100}, map[string]string{"": b.URI, "application/x-a": a.URI})
	add("tie, missing file", []Variant{a, b}, []int64{200, -1}, map[string]string{"": b.URI})
	// Apache multiplies in single precision: in float64, 0.1×0.9 > 0.3×0.3,
	// and 0.2×0.75 > 0.3×0.5 (not a tie).
	add("float32, no tie", []Variant{withQS(a, 0.9), withQS(b, 0.3)}, []int64{100, 200}, map[string]string{
		"application/x-a;q=0.1, application/x-b;q=0.3": b.URI,
	})
	add("float32 tie", []Variant{withQS(a, 0.75), withQS(b, 0.5)}, []int64{200, 100}, map[string]string{
		"application/x-a;q=0.2, application/x-b;q=0.3": b.URI,
	})

	// Apache adds "application/x-httpd-cgi;q=0.001" to every Accept header.
	cgi := Variant{URI: "cgi/f", ContentType: "application/x-httpd-cgi", QS: 0.21}
	add("CGI", []Variant{js, cgi}, nil, map[string]string{"text/html": cgi.URI, "application/json": js.URI})

	// HTML levels: Apache takes text/html as level 2.
	html := Variant{URI: "html/f", ContentType: "text/html"}
	shtml3 := Variant{URI: "shtml3/f", ContentType: "text/x-server-parsed-html3"}
	add("HTML levels", []Variant{html}, nil, map[string]string{"text/html": html.URI, "text/html;level=1": "", "text/html;level=3": html.URI, "text/*": html.URI})
	add("HTML levels, tie", []Variant{shtml3, html}, nil, map[string]string{"text/html;level=3": shtml3.URI, "text/html": html.URI, "*/*": html.URI})
}

func TestNegotiate(t *testing.T) {
	for _, tt := range negotiateTests {
		var length func(Variant) int64
		if tt.sizes != nil {
			length = func(v Variant) int64 { return tt.sizes[slices.Index(tt.variants, v)] }
		}
		got, ok := Negotiate(tt.variants, tt.accept, length)
		if !ok {
			got.URI = ""
		}
		if got.URI != tt.want {
			t.Errorf("%s: Negotiate(Accept: %q) = %q, want %q", tt.name, tt.accept, got.URI, tt.want)
		}
	}
}

func ExampleNegotiate() {
	tag := Map{URI: "v1", Variants: []Variant{
		{URI: "sha256:1111/index.json", ContentType: "application/vnd.oci.image.index.v1+json", QS: 1},
		{URI: "sha256:2222/index.json", ContentType: "application/vnd.docker.distribution.manifest.v2+json", QS: 0.001},
	}}
	for _, accept := range []string{
		"application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.oci.image.manifest.v1+json",
	} {
		v, ok := Negotiate(tag.Variants, accept, nil)
		fmt.Printf("%q %v\n", v.URI, ok)
	}
	// Output:
	// "sha256:1111/index.json" true
	// "sha256:2222/index.json" true
	// "" false
}

// FuzzParse checks that Parse never panics, and that Parse(Marshal(m))
// returns m for every m that Validate accepts. It reads each input twice: as
// a type map, and as a map given field by field (the map's URI, then URI,
// content type and qs of each variant, one a line).
func FuzzParse(f *testing.F) {
	for _, tt := range marshalTests {
		f.Add(tt.m.Marshal())
	}
	f.Add([]byte("URI: v1\r\n\r\nContent-Type: a/b\r\n ;qs=0.5\r\nURI: x\r\n"))
	f.Add([]byte("# c\nContent-Type: a/b (c) ; q=.5\nURI: x y\nContent-Length: 1x\n\n"))
	f.Add([]byte("v1\nsha256:ab/index.json\n" + ociIndex + "\n1\nsha256:cd/index.json\n" + dockerV2 + "\n0.001"))
	f.Add([]byte("\nx\na/b\n0\ny\nc/d\n0.25"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := Parse(data); err == nil {
			if len(m.Variants) == 0 {
				t.Fatalf("Parse(%q) = %+v without variants", data, m)
			}
			checkRoundTrip(t, m)
		}
		checkRoundTrip(t, fieldMap(string(data)))
	})
}

func checkRoundTrip(t *testing.T, m Map) {
	if m.Validate() != nil {
		return
	}
	got, err := Parse(m.Marshal())
	if err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("Parse(%q) = %+v, %v; want %+v", m.Marshal(), got, err, m)
	}
}

// fieldMap reads a map field by field, for FuzzParse.
func fieldMap(s string) Map {
	lines := strings.Split(s, "\n")
	m := Map{URI: lines[0]}
	for i := 1; i+2 < len(lines); i += 3 {
		qs, _ := strconv.ParseFloat(lines[i+2], 64)
		m.Variants = append(m.Variants, Variant{URI: lines[i], ContentType: lines[i+1], QS: qs})
	}
	return m
}

// FuzzNegotiate checks that Negotiate never panics, chooses one of the
// variants it is given, accepts some variant when there is no Accept header,
// and does not depend on the order of the variants when their sizes differ.
func FuzzNegotiate(f *testing.F) {
	f.Add(skopeoAccept, ociIndex+"\n"+ociManifest, []byte{200, 1}, []byte{9, 5})
	f.Add(containerdAccept, dockerList+"\n"+dockerV2, []byte{}, []byte{1, 1})
	f.Add("", "a/b\nc/d\ntext/html", []byte{0, 100, 200}, []byte{})
	f.Add("text/*;level=3, */*;q=0.5", "text/html\ntext/x-server-parsed-html3", []byte{150}, []byte{3, 4})
	f.Add(`;q=0.5,,"a,b"/*;level=-1 x*/*`, "A/B\n\n*/*", []byte{0, 255}, []byte{2, 1, 0})
	f.Fuzz(func(t *testing.T, accept, types string, qs, sizes []byte) {
		var variants []Variant
		length := map[string]int64{}
		for i, typ := range strings.SplitN(types, "\n", 8) {
			v := Variant{URI: strconv.Itoa(i), ContentType: typ}
			if i < len(qs) {
				v.QS = float64(qs[i]) / 200
			}
			if i < len(sizes) {
				length[v.URI] = int64(sizes[i])
			}
			variants = append(variants, v)
		}
		size := func(v Variant) int64 { return length[v.URI] }

		v, ok := Negotiate(variants, accept, size)
		if ok && !slices.Contains(variants, v) {
			t.Fatalf("Negotiate chose %+v, not one of %+v", v, variants)
		}
		if accept == "" && !ok && !slices.ContainsFunc(variants, func(v Variant) bool { return v.QS > 0 && v.QS < 0.001 }) {
			t.Fatalf("Negotiate(%+v) without Accept accepts nothing", variants)
		}
		distinct := len(length) == len(variants)
		seen := map[int64]bool{}
		for _, v := range variants {
			_, html := htmlLevel(lower(v.ContentType))
			distinct = distinct && !seen[length[v.URI]] && !html
			seen[length[v.URI]] = true
		}
		if distinct {
			reversed := slices.Clone(variants)
			slices.Reverse(reversed)
			r, rok := Negotiate(reversed, accept, size)
			if r != v || rok != ok {
				t.Fatalf("Negotiate depends on the order of %+v: %+v, then %+v", variants, v, r)
			}
		}
	})
}
