package tree

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// inspect runs do with a View of r, failing the test on an error.
func inspect(t *testing.T, r *Root, do func(v *View)) {
	t.Helper()
	if err := r.Inspect(func(v *View) error { do(v); return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestViewTag: a tag is its type map; a TripleO symlink tag, lacking one,
// names its manifest; each comes with the file that records it, and
// TagNames lists both kinds once.
func TestViewTag(t *testing.T) {
	r := newTree(t)
	im := newTestImage("app", "v1", []byte("layer"))
	publishAll(t, r, im)
	d := im.Manifests[0].Digest
	if err := os.Symlink(d.String(), filepath.Join(r.manifestsDir("app"), "old")); err != nil {
		t.Fatal(err)
	}
	inspect(t, r, func(v *View) {
		e, err := v.Tag("app", "v1")
		if err != nil || e.Legacy || e.Path != r.typeMapPath("app", "v1") || len(e.Variants) != 1 || e.Variants[0].Digest != d {
			t.Errorf("Tag(app, v1) = %+v, %v; want its type map naming %s", e, err, d)
		}
		e, err = v.Tag("app", "old")
		if err != nil || !e.Legacy || e.Path != r.legacyTagPath("app", "old") || len(e.Variants) != 1 || e.Variants[0].Digest != d {
			t.Errorf("Tag(app, old) = %+v, %v; want the symlink tag naming %s", e, err, d)
		}
		if e, err := v.Tag("app", "nosuch"); !errors.Is(err, fs.ErrNotExist) || e.Path != r.typeMapPath("app", "nosuch") {
			t.Errorf("Tag(app, nosuch) = %+v, %v; want fs.ErrNotExist naming its type map", e, err)
		}
		if names, err := v.TagNames("app"); err != nil || !slices.Equal(names, []string{"old", "v1"}) {
			t.Errorf("TagNames = %v, %v; want [old v1]", names, err)
		}
	})
}

// TestViewFilesNamed: the listings a checker reports on name each file,
// and MissingBlobs names where a blob that is not there belongs.
func TestViewFilesNamed(t *testing.T) {
	r := newTree(t)
	im := newTestImage("app", "v1", []byte("layer"))
	publishAll(t, r, im)
	d, layer := im.Manifests[0].Digest, im.Blobs[0].Digest
	other := digest.FromString("not stored")
	inspect(t, r, func(v *View) {
		var ms []StoredManifest
		err := v.ReadManifests("app", func(m StoredManifest) error { ms = append(ms, m); return nil })
		if err != nil || len(ms) != 1 || ms[0].Digest != d || ms[0].Path != r.manifestPath("app", d) || ms[0].Headers != r.headersPath("app", d) {
			t.Errorf("ReadManifests = %+v, %v", ms, err)
		}
		bs, err := v.BlobFiles("app")
		if err != nil || len(bs) != 1 || bs[0].Digest != layer || bs[0].Path != r.blobPath("app", layer) {
			t.Errorf("BlobFiles = %+v, %v", bs, err)
		}
		missing, err := v.MissingBlobs("app", []digest.Digest{other, layer, other})
		if err != nil || len(missing) != 1 || missing[0].Digest != other || missing[0].Path != r.blobPath("app", other) {
			t.Errorf("MissingBlobs = %+v, %v; want %s once, named", missing, err, other)
		}
		l, err := v.TagsList("app")
		if err != nil || l.ReadErr != nil || !l.Exists || !slices.Equal(l.Names, []string{"v1"}) || !slices.Equal(l.Listable, []string{"v1"}) || l.Path != r.tagsListPath("app") {
			t.Errorf("TagsList = %+v, %v", l, err)
		}
		c, err := v.Catalog()
		if err != nil || !c.Exists || !slices.Equal(c.Names, []string{"app"}) || c.Path != r.catalogPath() {
			t.Errorf("Catalog = %+v, %v", c, err)
		}
		f, err := v.ReferrersFile("app", d)
		if !errors.Is(err, fs.ErrNotExist) || f.Path != r.referrersPath("app", d) {
			t.Errorf("ReferrersFile of a subject without referrers = %+v, %v; want fs.ErrNotExist, named", f, err)
		}
		e, err := v.Repository("app")
		if err != nil || !e.Exists || e.Path != r.repoDir("app") {
			t.Errorf("Repository(app) = %+v, %v", e, err)
		}
		if e, err := v.Repository("nosuch"); err != nil || e.Exists || e.Path != r.repoDir("nosuch") {
			t.Errorf("Repository(nosuch) = %+v, %v; want it named, not there", e, err)
		}
		if _, err := v.Repository("../x"); err == nil {
			t.Error("Repository(../x): no error")
		}
	})
}

// TestMaintDeriveVerbsHeld: the verbs change the tree only inside a
// writing Maintain; a read-only one (a dry run) migrates nothing and says
// it is a dry run.
func TestMaintDeriveVerbsHeld(t *testing.T) {
	r := newTree(t)
	publishAll(t, r, newTestImage("app", "v1", []byte("layer")))
	var kept *Maint
	if err := r.Maintain(MaintainOptions{ReadOnly: true}, func(m *Maint) error {
		if _, err := m.DeriveRepo("app"); !errors.Is(err, errNotHeld) {
			t.Errorf("DeriveRepo in a read-only Maintain: %v", err)
		}
		if _, err := m.DeriveCatalog(); !errors.Is(err, errNotHeld) {
			t.Errorf("DeriveCatalog in a read-only Maintain: %v", err)
		}
		if _, err := m.LinkForNginx(); !errors.Is(err, errNotHeld) {
			t.Errorf("LinkForNginx in a read-only Maintain: %v", err)
		}
		rep, err := m.Migrate()
		if err != nil || !rep.DryRun {
			t.Errorf("Migrate in a read-only Maintain = %+v, %v; want a dry run", rep, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.Maintain(MaintainOptions{}, func(m *Maint) error {
		kept = m
		if _, err := m.DeriveRepo("app"); err != nil {
			t.Errorf("DeriveRepo: %v", err)
		}
		if _, err := m.LinkForNginx(); err != nil {
			t.Errorf("LinkForNginx: %v", err)
		}
		rep, err := m.Migrate()
		if err != nil || rep.DryRun || rep.Changes() != 0 {
			t.Errorf("Migrate of a current tree = %+v, %v; want no change", rep, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := kept.DeriveCatalog(); !errors.Is(err, errNotHeld) {
		t.Errorf("DeriveCatalog after Maintain returned: %v", err)
	}
	if _, err := kept.Migrate(); !errors.Is(err, errNotHeld) {
		t.Errorf("Migrate after Maintain returned: %v", err)
	}
}
