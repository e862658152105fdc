package tree

import (
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestMaintVerbsOnlyInside: every verb of Maint besides Remove refuses,
// changing nothing, inside a read-only Maintain (a dry run) and once its
// Maintain has returned. Guards: a verb added without its check.
func TestMaintVerbsOnlyInside(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	b := gcPutBlob(t, r, "app", []byte("layer"))
	if err := r.putTag("app", "v1", []TagVariant{{Digest: d, MediaType: gcOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.tagsListPath("app")); err != nil {
		t.Fatal(err) // out of step: Rederive would rewrite it
	}
	verbs := map[string]func(m *Maint) error{
		"RefreshCatalog":         func(m *Maint) error { return m.RefreshCatalog() },
		"RefreshCatalogFor":      func(m *Maint) error { return m.RefreshCatalogFor("app") },
		"Rederive":               func(m *Maint) error { _, err := m.Rederive("app"); return err },
		"SweepRepoTemps":         func(m *Maint) error { _, err := m.SweepRepoTemps("app"); return err },
		"RemoveBlobLock":         func(m *Maint) error { return m.RemoveBlobLock(b) },
		"RestoreHeaders":         func(m *Maint) error { _, err := m.RestoreHeaders("app"); return err },
		"SalvageTags":            func(m *Maint) error { _, _, err := m.SalvageTags("app"); return err },
		"RemoveNotRegular":       func(m *Maint) error { return m.RemoveNotRegular(NotRegularFile{Path: r.manifestPath("app", d)}) },
		"RemoveStrayHeaderFiles": func(m *Maint) error { _, err := m.RemoveStrayHeaderFiles(nil); return err },
		"RemoveCorrupt": func(m *Maint) error {
			_, err := m.RemoveCorrupt("app", Corrupt{Blobs: []digest.Digest{b}, Manifests: []digest.Digest{d}})
			return err
		},
	}
	var kept *Maint
	err := r.Maintain(MaintainOptions{ReadOnly: true}, func(m *Maint) error {
		kept = m
		for name, verb := range verbs {
			if err := verb(m); !errors.Is(err, errNotHeld) {
				t.Errorf("read-only %s: %v, want errNotHeld", name, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, verb := range verbs {
		if err := verb(kept); !errors.Is(err, errNotHeld) {
			t.Errorf("%s after Maintain: %v, want errNotHeld", name, err)
		}
	}
	if !r.manifestComplete("app", d) || !r.isFile(r.blobPath("app", b)) {
		t.Error("a refused verb removed the manifest or the blob")
	}
	if r.isFile(r.tagsListPath("app")) {
		t.Error("a refused Rederive wrote tags/list")
	}
}

// TestMaintainCollector: with Collector, Maintain runs nothing while
// another collection holds the collectors' lock, and says so; once it is
// free, it runs.
func TestMaintainCollector(t *testing.T) {
	r := newTree(t)
	l, err := r.tryLockGC()
	if err != nil || l == nil {
		t.Fatalf("TryLockGC: %v %v", l, err)
	}
	ran := false
	if err := r.Maintain(MaintainOptions{Collector: true}, func(*Maint) error { ran = true; return nil }); !errors.Is(err, ErrCollecting) || ran {
		t.Errorf("Maintain while another collects: %v, ran %v; want ErrCollecting without running", err, ran)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := r.Maintain(MaintainOptions{Collector: true}, func(*Maint) error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Maintain with the lock free: %v, ran %v", err, ran)
	}
}

// TestRederive: a repository in step is left as it is; tags/list lost is
// written again, and reported.
func TestRederive(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	if err := r.putTag("app", "v1", []TagVariant{{Digest: d, MediaType: gcOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	rederive := func() Rederived {
		t.Helper()
		var done Rederived
		if err := r.Maintain(MaintainOptions{}, func(m *Maint) (err error) {
			done, err = m.Rederive("app")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return done
	}
	if done := rederive(); done != (Rederived{}) {
		t.Errorf("Rederive of a repository in step: %+v, want nothing rewritten", done)
	}
	if err := os.Remove(r.tagsListPath("app")); err != nil {
		t.Fatal(err)
	}
	if done := rederive(); done != (Rederived{Tags: true}) {
		t.Errorf("Rederive without tags/list: %+v, want the tags rewritten", done)
	}
	if tags, ok, err := r.readTagsList("app"); err != nil || !ok || !slices.Equal(tags, []string{"v1"}) {
		t.Errorf("tags/list after Rederive: %v %v %v", tags, ok, err)
	}
}

// TestTagRoots: a type map, one that cannot be read and a TripleO
// symlink tag are each a root of their kind, naming the file that
// records them.
func TestTagRoots(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	old := gcPutManifest(t, r, "app", `{"schemaVersion":2,"old":1}`)
	if err := r.putTag("app", "v1", []TagVariant{{Digest: d, MediaType: gcOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.typeMapPath("app", "broken"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(old.String(), r.legacyTagPath("app", "tripleo")); err != nil {
		t.Fatal(err)
	}
	var got []TagRoot
	if err := r.Inspect(func(v *View) (err error) { got, err = v.TagRoots("app"); return err }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("TagRoots = %+v, want three", got)
	}
	broken, v1, tripleo := got[0], got[1], got[2]
	if broken.Tag != "broken" || broken.Kind != TagTypeMap || broken.Err == nil || !broken.TypeMap || broken.Path != r.typeMapPath("app", "broken") {
		t.Errorf("the broken type map: %+v", broken)
	}
	if v1.Tag != "v1" || v1.Kind != TagTypeMap || v1.Err != nil || len(v1.Variants) != 1 || v1.Variants[0].Digest != d || v1.Path != r.typeMapPath("app", "v1") || v1.What() != "tag v1" {
		t.Errorf("the type map: %+v", v1)
	}
	if tripleo.Tag != "tripleo" || tripleo.Kind != TagSymlink || tripleo.TypeMap || len(tripleo.Variants) != 1 || tripleo.Variants[0].Digest != old || tripleo.Path != r.legacyTagPath("app", "tripleo") || tripleo.What() != "symlink tag tripleo" {
		t.Errorf("the symlink tag: %+v", tripleo)
	}
	var vs []TagVariant
	if err := r.Inspect(func(v *View) (err error) { vs, err = v.TagManifests("app", "tripleo"); return err }); err != nil || len(vs) != 1 || vs[0].Digest != old {
		t.Errorf("TagManifests of the symlink tag: %v %v, want %s", vs, err, old)
	}
}

// TestUntagOnlyInside: an Untagger deletes tags inside its Untag, and
// nothing once Untag has returned.
func TestUntagOnlyInside(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	for _, tag := range []string{"v1", "v2"} {
		if err := r.putTag("app", tag, []TagVariant{{Digest: d, MediaType: gcOCIManifest}}); err != nil {
			t.Fatal(err)
		}
	}
	var kept *Untagger
	if err := r.Untag(func(u *Untagger) error { kept = u; return u.DeleteTag("app", "v1") }); err != nil {
		t.Fatal(err)
	}
	if err := kept.DeleteTag("app", "v2"); !errors.Is(err, errNotUntagging) {
		t.Errorf("DeleteTag after Untag: %v, want errNotUntagging", err)
	}
	if tags, err := r.tags("app"); err != nil || !slices.Equal(tags, []string{"v2"}) {
		t.Errorf("tags: %v %v, want v2 alone", tags, err)
	}
}

// TestRemoveCorrupt: the blobs and manifests named go, and are reported;
// the rest of the repository stays.
func TestRemoveCorrupt(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	keep := gcPutManifest(t, r, "app", `{"schemaVersion":2,"keep":1}`)
	b := gcPutBlob(t, r, "app", []byte("layer"))
	c := Corrupt{Blobs: []digest.Digest{b}, Manifests: []digest.Digest{d}}
	var done Corrupt
	if err := r.Maintain(MaintainOptions{}, func(m *Maint) (err error) {
		done, err = m.RemoveCorrupt("app", c)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done.Blobs, c.Blobs) || !slices.Equal(done.Manifests, c.Manifests) {
		t.Errorf("RemoveCorrupt = %+v, want %+v", done, c)
	}
	if r.manifestComplete("app", d) || r.isFile(r.blobPath("app", b)) {
		t.Error("a corrupt file stays")
	}
	if !r.manifestComplete("app", keep) {
		t.Error("the other manifest went")
	}
}
