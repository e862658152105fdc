package imagefs

import (
	"bytes"
	"encoding/json"
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
	if _, err := DecodeList([]byte(`[{"path":"a","type":"socket","seq":0}]`)); err == nil {
		t.Error("an unknown type decoded")
	}
}

func TestEncodeListIsMarshal(t *testing.T) {
	for _, es := range [][]Entry{nil, {}, {
		{Path: "a<b>&", Type: Dir, Mode: 0o755, MTime: time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC), Seq: 0},
		{Path: "a<b>&/f\u2028", Type: File, Size: 3, Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", UID: 1000, GID: 1000, Seq: 1},
		{Path: "a<b>&/l", Type: Symlink, Link: "\"f\"", Seq: 2},
		{Path: "dev/null", Type: Char, Major: 1, Minor: 3, Seq: 3},
	}} {
		want, err := json.Marshal(es)
		if err != nil {
			t.Fatal(err)
		}
		got, err := EncodeList(es)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("EncodeList:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
}
