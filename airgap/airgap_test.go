package airgap

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// testTree holds testdata's multi-arch image as base/hello:v1 and its
// docker-archive image as app/hello:v2.
func testTree(t *testing.T) *tree.Root {
	t.Helper()
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for src, dest := range map[string]string{
		"oci:../testdata/hello-oci:latest":            "base/hello:v1",
		"docker-archive:../testdata/hello.docker.tar": "app/hello:v2",
	} {
		if _, err := exporter.Export(context.Background(), root, src, dest, exporter.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestInventoryAndPlan(t *testing.T) {
	root := testTree(t)
	err := root.Inspect(func(v *tree.View) error {
		inv, err := Inventory(v)
		if err != nil {
			return err
		}
		if len(inv.Blobs) == 0 || len(inv.Manifests) < 3 {
			t.Errorf("inventory: %d blobs, %d manifests", len(inv.Blobs), len(inv.Manifests))
		}
		full, err := MakePlan(v, Request{Images: []Ref{{"app/hello", "v2"}, {"base/hello", "v1"}}})
		if err != nil {
			return err
		}
		d := full.Descriptor
		if len(d.Needed) != 0 || d.Bytes.Members != d.Bytes.Images {
			t.Errorf("with nothing held, the bundle should carry everything: %+v", d.Bytes)
		}
		for _, m := range d.Members {
			if m.Kind == bundle.KindManifest && !inv.HasManifest(m.Digest) || m.Kind != bundle.KindManifest && !inv.HasBlob(m.Digest) {
				t.Errorf("member %s %s is not in the tree's inventory", m.Kind, m.Digest)
			}
		}
		// Against the tree's own inventory, only manifests and configs
		// travel; against the base, app/hello's own layer does too.
		have, err := MakePlan(v, Request{Images: []Ref{{"app/hello", "v2"}}, Inventories: []*bundle.Inventory{inv}})
		if err != nil {
			return err
		}
		for _, m := range have.Descriptor.Members {
			if m.Kind == bundle.KindBlob {
				t.Errorf("layer %s travels though the inventory holds it", m.Digest)
			}
		}
		var buf bytes.Buffer
		if _, err := bundle.Write(&buf, have.Descriptor, have.Open(v)); err != nil {
			return err
		}
		r, err := bundle.Open([]bundle.Source{{Name: "b", R: &buf}})
		if err != nil {
			return err
		}
		if err := r.Verify(); err != nil {
			return err
		}
		if _, err := MakePlan(v, Request{Images: []Ref{{"app/hello", "nope"}}}); err == nil || !strings.Contains(err.Error(), "app/hello:nope: no such tag") {
			t.Errorf("a tag not in the tree: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInventoryFileRoundTrip(t *testing.T) {
	root := testTree(t)
	var inv *bundle.Inventory
	if err := root.Inspect(func(v *tree.View) (err error) { inv, err = Inventory(v); return err }); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := inv.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := bundle.ReadInventory(io.LimitReader(&buf, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Blobs) != len(inv.Blobs) || !got.HasBlob(inv.Blobs[0]) || got.HasBlob(digest.FromString("x")) {
		t.Errorf("round trip: %d blobs, want %d", len(got.Blobs), len(inv.Blobs))
	}
}

func TestParseRef(t *testing.T) {
	for _, s := range []string{"app", "app:", "App:v1", "app:bad tag"} {
		if _, err := ParseRef(s); err == nil {
			t.Errorf("ParseRef(%q) accepted", s)
		}
	}
	if r, err := ParseRef("ns/app:v1"); err != nil || r != (Ref{"ns/app", "v1"}) {
		t.Errorf("ParseRef(ns/app:v1) = %v, %v", r, err)
	}
}
