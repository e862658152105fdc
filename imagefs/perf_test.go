package imagefs

import (
	"strings"
	"testing"
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
