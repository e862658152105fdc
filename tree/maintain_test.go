package tree

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestMaintParentsFirst: an index goes before its child and a referrer
// before its subject, whatever order the caller lists them in, so that a
// removal interrupted anywhere never leaves a manifest naming one gone.
func TestMaintParentsFirst(t *testing.T) {
	r := newTree(t)
	body := `{"schemaVersion":2,"mediaType":"` + gcOCIManifest + `","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`
	child := gcPutManifest(t, r, "app", body)
	desc := fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, gcOCIManifest, child, len(body))
	index := digest.FromString(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc + `]}`)
	if err := r.putManifest("app", index, "application/vnd.oci.image.index.v1+json", []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+desc+`]}`)); err != nil {
		t.Fatal(err)
	}
	referrer := gcPutManifest(t, r, "app", `{"schemaVersion":2,"mediaType":"`+gcOCIManifest+`","artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"subject":`+desc+`}`)
	for _, given := range [][]digest.Digest{
		{child, index, referrer}, {child, referrer, index}, {index, child, referrer},
		{index, referrer, child}, {referrer, child, index}, {referrer, index, child},
	} {
		got := r.parentsFirst("app", given)
		at := func(d digest.Digest) int { return slices.Index(got, d) }
		if len(got) != 3 || at(index) > at(child) || at(referrer) > at(child) {
			t.Errorf("given %v, order %v: want the index %s and the referrer %s before their child %s", given, got, index, referrer, child)
		}
	}
}

// TestMaintRemove: a tagless repository loses what the caller marked, in
// the tree's order, and then goes itself; the bytes freed are those of
// the inodes whose last link went.
func TestMaintRemove(t *testing.T) {
	r := newTree(t)
	m := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	b := gcPutBlob(t, r, "app", []byte("layer"))
	var done RemovalReport
	err := r.Maintain(MaintainOptions{}, func(mt *Maint) (err error) {
		done, err = mt.Remove("app", Removal{Manifests: []digest.Digest{m}, Blobs: []digest.Digest{b}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := RemovalReport{ManifestsRemoved: 1, BlobsRemoved: 1, BytesFreed: int64(len("layer")), RepositoryRemoved: true}
	if done != want {
		t.Errorf("Remove = %+v, want %+v", done, want)
	}
	if _, err := os.Stat(r.repoDir("app")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("repository directory: %v, want it gone", err)
	}
}

// TestMaintOnlyInside: a Maint removes nothing once its Maintain has
// returned, nor inside a read-only one (a dry run).
func TestMaintOnlyInside(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
	var kept *Maint
	for _, ro := range []bool{true, false} {
		err := r.Maintain(MaintainOptions{ReadOnly: ro}, func(m *Maint) error {
			kept = m
			if ro {
				if _, err := m.Remove("app", Removal{Manifests: []digest.Digest{d}}); !errors.Is(err, errNotHeld) {
					t.Errorf("read-only Remove: %v, want errNotHeld", err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := kept.RemoveManifest("app", d); !errors.Is(err, errNotHeld) {
		t.Errorf("RemoveManifest after Maintain: %v, want errNotHeld", err)
	}
	if !r.manifestComplete("app", d) {
		t.Error("the manifest went")
	}
}
