package exporter

import (
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// TestSyncDigestPins: a digest entry lands as a pin of the destination
// repository, with no tag; an index keeps its children; a second run
// sends no request for a digest pinned already.
func TestSyncDigestPins(t *testing.T) {
	reg, base := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	gone := reg.PushImage(t, "app:gone", testregistry.DockerImage(t, base, testregistry.Layer(t, 100, types.DockerLayer)))
	idx := reg.PushIndex(t, "tools:v3", types.OCIImageIndex, map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 64, types.OCILayer)),
	})
	pinned, index := digest.Digest(gone.Digest), digest.Digest(idx.Digest)
	entries := []SyncEntry{
		{Entry: "app", Source: reg.Host + "/app", Dest: "mirror/app", Tags: []string{"1.0"}, Digests: []digest.Digest{pinned}},
		{Entry: "tools", Source: reg.Host + "/tools", Dest: "mirror/tools", Digests: []digest.Digest{index}},
	}
	reg.ResetRequests()
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	// No ping: a pin is exported through the client its entry opened, as
	// a tag is, whose first request served as the ping.
	if n := reg.Requests()["GET ping"]; n != 0 {
		t.Errorf("first run: %d pings, want none", n)
	}
	want := map[string]SyncStatus{
		"mirror/app:1.0": SyncSynced, "mirror/app@" + pinned.String(): SyncSynced, "mirror/tools@" + index.String(): SyncSynced,
	}
	if got := statuses(rep); len(got) != len(want) {
		t.Fatalf("first run: %v, want %v", got, want)
	} else {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("first run: %s %s, want %s", k, got[k], v)
			}
		}
	}
	for _, p := range []struct {
		repo string
		d    digest.Digest
	}{{"mirror/app", pinned}, {"mirror/tools", index}} {
		if ok, err := root.IsPinned(p.repo, p.d); err != nil || !ok {
			t.Errorf("%s@%s not pinned: %v", p.repo, p.d, err)
		}
	}
	if tags, err := tree.Fixture(root).Tags("mirror/tools"); err != nil || len(tags) != 0 {
		t.Errorf("mirror/tools tags %v, %v: a pin tags nothing", tags, err)
	}
	child := idx.Children["linux/amd64"]
	if !tree.Fixture(root).ManifestComplete("mirror/tools", digest.Digest(child)) {
		t.Errorf("the pinned index's child %s is not in the tree", child)
	}

	reg.ResetRequests()
	rep, err = Sync(ctx, root, entries[1:], syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(rep); got["mirror/tools@"+index.String()] != SyncUnchanged {
		t.Errorf("second run: %v, want the pin unchanged", got)
	}
	if reqs := reg.Requests(); len(reqs) != 0 || rep.Requests != 0 {
		t.Errorf("a digest pinned already: requests %v (report: %d), want none", reqs, rep.Requests)
	}
}

// TestExportByDigestPins: export of docker://HOST/REPO@DIGEST without a
// tag in DEST pins the manifest (into the source's repository path, or
// DEST's repository); with DEST REPO:TAG it tags as before.
func TestExportByDigestPins(t *testing.T) {
	reg, base := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	img := reg.PushImage(t, "app:x", testregistry.DockerImage(t, base))
	d := digest.Digest(img.Digest)
	src := "docker://" + reg.Host + "/app@" + img.Digest
	for _, tc := range []struct{ dest, repo string }{{"", "app"}, {"mirror/app", "mirror/app"}} {
		sum, err := Export(ctx, root, src, tc.dest, plainHTTP())
		if err != nil {
			t.Fatalf("export %s %q: %v", src, tc.dest, err)
		}
		if sum.Dest != tc.repo+"@"+img.Digest || sum.Digest != d {
			t.Errorf("summary %+v, want %s@%s", sum, tc.repo, d)
		}
		if ok, err := root.IsPinned(tc.repo, d); err != nil || !ok {
			t.Errorf("%s@%s not pinned: %v", tc.repo, d, err)
		}
		if tags, err := tree.Fixture(root).Tags(tc.repo); err != nil || len(tags) != 0 {
			t.Errorf("%s tags %v, %v: want none", tc.repo, tags, err)
		}
	}
	if _, err := Export(ctx, root, src, "tagged:v1", plainHTTP()); err != nil {
		t.Fatal(err)
	}
	if cur, ok, err := root.TagDigest("tagged", "v1"); err != nil || !ok || cur != d {
		t.Errorf("tagged:v1 names %s (%v, %v), want %s", cur, ok, err, d)
	}
	if pins, err := tree.Fixture(root).Pins("tagged"); err != nil || len(pins) != 0 {
		t.Errorf("tagged pins %v, %v: a tag is no pin", pins, err)
	}
}

// TestSyncPinsAtomic: with AllOrNothing a digest entry is pinned with the
// run's tags; when one image fails, neither the tags nor the pin are
// written.
func TestSyncPinsAtomic(t *testing.T) {
	reg, base := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	img := reg.PushImage(t, "app:x", testregistry.DockerImage(t, base))
	d := digest.Digest(img.Digest)
	o := syncOptions()
	o.Export.AllOrNothing = true
	bad := []SyncEntry{
		{Entry: "app", Source: reg.Host + "/app", Dest: "mirror/app", Digests: []digest.Digest{d}},
		{Entry: "tools", Source: reg.Host + "/tools", Dest: "mirror/tools", Tags: []string{"v1", "nosuch"}},
	}
	if _, err := Sync(ctx, root, bad, o); err == nil {
		t.Fatal("a tag the source lacks: no error")
	}
	if ok, _ := root.IsPinned("mirror/app", d); ok {
		t.Error("pinned although the batch failed")
	}
	good := []SyncEntry{bad[0], {Entry: "tools", Source: reg.Host + "/tools", Dest: "mirror/tools", Tags: []string{"v1"}}}
	if _, err := Sync(ctx, root, good, o); err != nil {
		t.Fatal(err)
	}
	if ok, err := root.IsPinned("mirror/app", d); err != nil || !ok {
		t.Errorf("not pinned: %v", err)
	}
	if _, ok, err := root.TagDigest("mirror/tools", "v1"); err != nil || !ok {
		t.Errorf("mirror/tools:v1 not tagged: %v", err)
	}
}
