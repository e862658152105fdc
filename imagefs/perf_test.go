package imagefs

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// slowClean is cleanPath's long way, for names cleanAlready takes.
func slowClean(name string) string {
	var parts []string
	for _, c := range strings.Split(name, "/") {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/")
}

func TestCleanAlreadyAsTheLongWay(t *testing.T) {
	for _, name := range []string{"a", "a/", "./a", "././a/b/", "a/b/c", ".a/..b/c.", "...", "", ".", "./", "a//b", "a/./b", "a/../b", "..", ".//a", "a//", "./.", "a/."} {
		p, ok := cleanAlready(name)
		if !ok {
			continue
		}
		if want := slowClean(name); p != want {
			t.Errorf("cleanAlready(%q) = %q, the long way %q", name, p, want)
		}
	}
	for _, name := range []string{"a/../b", "..", "a/..", "../a"} {
		if _, err := cleanPath(name); err != ErrDotDot {
			t.Errorf("cleanPath(%q): %v, want ErrDotDot", name, err)
		}
	}
}

func TestDecodedTypesAreTheConstants(t *testing.T) {
	es := []Entry{{Path: "a", Type: Dir, Seq: 0}, {Path: "a/b", Type: Symlink, Link: "x", Seq: 1}}
	b, err := EncodeList(es)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeList(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e.Type != es[i].Type || unsafe.StringData(string(e.Type)) != unsafe.StringData(string(es[i].Type)) {
			t.Errorf("entry %d: type %q is not the package's constant", i, e.Type)
		}
	}
	if _, err := DecodeList([]byte(strings.Replace(string(b), "dir\t", "socket\t", 1))); err == nil {
		t.Error("an unknown type decoded")
	}
}

func TestEncodeListRoundTrip(t *testing.T) {
	for _, es := range [][]Entry{nil, {}, {
		{Path: "a<b>&", Type: Dir, Mode: 0o755, MTime: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC), Seq: 0},
		{Path: "a<b>&/f\u2028\t\n\xff\"x\"", Type: File, Size: 3, Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", UID: 1000, GID: 1000, Mode: 0o4755, Seq: 1},
		{Path: "a<b>&/l", Type: Symlink, Link: "\"f\"\t", MTime: time.Date(1901, 1, 2, 3, 4, 5, 0, time.UTC), Seq: 2},
		{Path: "dev/null", Type: Char, Major: 1, Minor: 3, MTime: time.Unix(0, 999999999).UTC(), Seq: 3},
		{Path: "h", Type: Hardlink, Link: "a<b>&/f\u2028\t\n\xff\"x\"", UID: -1, Seq: 4},
		{Path: "", Type: Opaque, Seq: 5},
		{Path: "x", Type: Whiteout, Seq: 6},
	}} {
		b, err := EncodeList(es)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeList(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if len(back) != len(es) || len(es) > 0 && !reflect.DeepEqual(back, es) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", b, back, es)
		}
	}
	// The JSON lists of before, and lists damaged, are refused, not
	// misread.
	good, _ := EncodeList([]Entry{{Path: "a", Type: File, Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}})
	for _, bad := range []string{
		`[{"path":"a","type":"dir","seq":0}]`, `null`, ``,
		string(good[:len(good)-1]),                               // no end of line
		strings.Replace(string(good), "\t0\t", "\t0\t\t", 1),     // a field too many
		strings.Replace(string(good), "\t0\t", "\t", 1),          // a field too few
		strings.Replace(string(good), "file\t0", "file\tx", 1),   // seq no number
		strings.Replace(string(good), `"a"`, `"a`, 1),            // a bad quote
		strings.Replace(string(good), `"a"`, `"../a"`, 1),        // a path a layer cannot hold
		strings.Replace(string(good), "sha256:0", "sha256:", 1),  // a bad digest
		"imagefs entry list 1\n" + string(good[len(listMagic):]), // another version
	} {
		if es, err := DecodeList([]byte(bad)); err == nil {
			t.Errorf("%q: decoded as %+v", bad, es)
		}
	}
}

// FuzzDecodeList: whatever a cached list's bytes, DecodeList refuses them
// or yields entries that encode back to a list decoding the same.
func FuzzDecodeList(f *testing.F) {
	good, _ := EncodeList([]Entry{
		{Path: "a", Type: Dir, Mode: 0o755, MTime: time.Unix(1, 2).UTC()},
		{Path: "a/f\t", Type: File, Size: 1, Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Seq: 1},
		{Path: "h", Type: Hardlink, Link: "a/f\t", Seq: 2},
	})
	f.Add(good)
	f.Add([]byte(listMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := DecodeList(b)
		if err != nil {
			return
		}
		again, err := EncodeList(es)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeList(again)
		if err != nil || len(back) != len(es) || len(es) > 0 && !reflect.DeepEqual(back, es) {
			t.Fatalf("%q: decoded %+v, again %+v (%v)", b, es, back, err)
		}
	})
}
