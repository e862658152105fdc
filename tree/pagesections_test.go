package tree

import (
	"os"
	"testing"
)

// TestPageSectionsIncremental: a tag update renders its own repository's
// rows and reuses every other one's, and the page it writes is the page a
// full render of the disk gives, byte for byte — also after a section was
// left stale behind the writers' back (set right by a collection's
// refresh) and with the sections file damaged or gone (rendered again).
func TestPageSectionsIncremental(t *testing.T) {
	r := newTree(t)
	a := putPageImage(t, r, "ns/a", imageConfig("linux", "amd64", "2026-01-01T00:00:00Z"), "a")
	b := putPageImage(t, r, "ns/b", imageConfig("linux", "arm64", "2026-02-01T00:00:00Z"), "b")
	tagImage(t, r, "ns/a", "v1", a, gcOCIManifest)
	tagImage(t, r, "ns/b", "v1", b, gcOCIManifest)
	full := func() string {
		t.Helper()
		p, err := r.renderPage()
		if err != nil {
			t.Fatal(err)
		}
		return string(p)
	}
	written := func() string {
		t.Helper()
		p, _ := readPage(t, r)
		return p
	}
	if written() != full() {
		t.Fatal("after two tags: the written page is not the full render")
	}

	// A section kept stale on purpose: ns/b's rows say something else.
	// A tag update of ns/a reuses ns/b's kept rows unread...
	kept, _ := r.readPageSections()
	if len(kept) != 2 {
		t.Fatalf("%d sections kept, want 2", len(kept))
	}
	kept[1].rows = []byte("\n<tr><td>stale")
	if err := os.WriteFile(r.pageSectionsPath(), kept.marshal(), 0o644); err != nil {
		t.Fatal(err)
	}
	tagImage(t, r, "ns/a", "v2", a, gcOCIManifest)
	if refs := pageRefs(t, r); len(refs) != 2 || refs[0] != "ns/a:v1" || refs[1] != "ns/a:v2" {
		t.Fatalf("after a tag of ns/a: rows %q, want ns/a's two and ns/b's kept (stale) one", refs)
	}
	// ...and a collection's refresh checks every section against its tags.
	if err := r.Maintain(MaintainOptions{}, func(m *Maint) error { return m.RefreshCatalog() }); err != nil {
		t.Fatal(err)
	}
	if written() != full() {
		t.Fatal("after a collection's refresh: the written page is not the full render")
	}

	// A damaged sections file is no source: the next writer renders all.
	if err := os.WriteFile(r.pageSectionsPath(), []byte("image-serve page sections 1\nns/a zz 1 - 99999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tagImage(t, r, "ns/b", "v2", b, gcOCIManifest)
	if written() != full() {
		t.Fatal("after a damaged sections file: the written page is not the full render")
	}
	if err := os.Remove(r.pageSectionsPath()); err != nil {
		t.Fatal(err)
	}
	if err := r.Untag(func(u *Untagger) error { return u.DeleteTag("ns/a", "v1") }); err != nil {
		t.Fatal(err)
	}
	if written() != full() {
		t.Fatal("after the sections file was removed: the written page is not the full render")
	}
}

func FuzzParsePageSections(f *testing.F) {
	f.Add([]byte("image-serve page sections 1\nns/a " + string(make([]byte, 0)) + "\n"))
	f.Add(pageSections{{repo: "ns/a", fingerprint: "0000000000000000000000000000000000000000000000000000000000000000", tags: 1, newest: "2026-01-01 00:00", rows: []byte("\n<tr><td>x")}}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parsePageSections(b)
		if err != nil {
			return
		}
		if _, err := parsePageSections(s.marshal()); err != nil {
			t.Fatalf("a parsed file does not parse once written again: %v", err)
		}
	})
}
