package exporter

import (
	"context"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
)

// cosignTag is cosign's tag for what is attached to the manifest d.
func cosignTag(d, suffix string) string {
	return "sha256-" + strings.TrimPrefix(d, "sha256:") + suffix
}

// childSigned is a registry with tools:v1, an index of two platforms
// whose arm64 child has a cosign signature tag (cosign sign --recursive
// signs each child so), and no signature of the index itself.
func childSigned(t *testing.T) (*testregistry.Registry, testregistry.Pushed, testregistry.Pushed) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 1024, types.OCILayer)
	index := reg.PushIndex(t, "tools:v1", types.OCIImageIndex, map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base),
		"arm64": testregistry.OCIImage(t, "arm64", base),
	})
	sig := reg.PushImage(t, "tools:"+cosignTag(index.Children["linux/arm64"], ".sig"), testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 64, types.OCILayer)))
	return reg, index, sig
}

// TestSyncChildSignatures: the cosign tags of an index's children travel
// with the tag naming it — from the plan when the tag moved — and a rerun
// with nothing changed asks for none of them: a tag named in the file,
// unchanged, costs its HEAD alone.
func TestSyncChildSignatures(t *testing.T) {
	reg, index, sig := childSigned(t)
	root := newRoot(t)
	ctx := context.Background()
	sigTag := cosignTag(index.Children["linux/arm64"], ".sig")
	entries := []SyncEntry{{Entry: "tools", Source: reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}}}
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "tools:"+sigTag); r == nil || r.Status != SyncSynced || r.Subject != "tools:v1" || r.Digest.String() != sig.Digest {
		t.Errorf("tools:%s: %+v, want synced, %s, for tools:v1", sigTag, r, sig.Digest)
	}
	if d, ok, err := root.TagDigest("tools", sigTag); err != nil || !ok || d.String() != sig.Digest {
		t.Errorf("the child's .sig in the tree: %s %v %v, want %s", d, ok, err, sig.Digest)
	}
	// The amd64 child is not signed: no tag of it, and no result.
	if r := find(rep, "tools:"+cosignTag(index.Children["linux/amd64"], ".sig")); r != nil {
		t.Errorf("an unsigned child has a result: %+v", r)
	}

	reg.ResetRequests()
	rep, err = Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "tools:v1"); r == nil || r.Status != SyncUnchanged {
		t.Errorf("rerun: tools:v1 %+v, want unchanged", r)
	}
	reqs := reg.Requests()
	if reqs["HEAD manifests"] != 1 || len(reqs) != 1 {
		t.Errorf("an unchanged rerun: requests %v, want the tag's HEAD alone", reqs)
	}
}

// TestSyncChildSignaturesListed: a listed entry asks only for the child
// cosign tags its listing holds, and on a rerun with the tag unchanged
// reads the index's children from the tree: a signature a child got
// upstream since travels, with no GET of the index.
func TestSyncChildSignaturesListed(t *testing.T) {
	reg, index, sig := childSigned(t)
	root := newRoot(t)
	ctx := context.Background()
	entries := []SyncEntry{{Entry: "tools", Source: reg.Host + "/tools", Dest: "tools"}}
	reg.ResetRequests()
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	armSig := cosignTag(index.Children["linux/arm64"], ".sig")
	if r := find(rep, "tools:"+armSig); r == nil || r.Status != SyncSynced {
		t.Errorf("tools:%s: %+v, want synced", armSig, r)
	}
	// HEADs: v1 and the one child signature the listing holds.
	if n := reg.Requests()["HEAD manifests"]; n != 2 {
		t.Errorf("first run: %d HEADs, want 2 (the tag, the listed child .sig)", n)
	}

	// amd64 is signed upstream after the mirror: it travels, read from
	// the tree's index, and the arm64 signature is unchanged.
	amdSig := cosignTag(index.Children["linux/amd64"], ".sig")
	late := reg.PushImage(t, "tools:"+amdSig, testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 80, types.OCILayer)))
	reg.ResetRequests()
	rep, err = Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "tools:"+amdSig); r == nil || r.Status != SyncSynced || r.Subject != "tools:v1" {
		t.Errorf("tools:%s: %+v, want synced, for tools:v1", amdSig, r)
	}
	if d, ok, _ := root.TagDigest("tools", amdSig); !ok || d.String() != late.Digest {
		t.Errorf("the late child .sig names %s (%v), want %s", d, ok, late.Digest)
	}
	if r := find(rep, "tools:"+armSig); r == nil || r.Status != SyncUnchanged || r.Digest.String() != sig.Digest {
		t.Errorf("tools:%s: %+v, want unchanged", armSig, r)
	}
	// The listing, three HEADs (v1, two child signatures), and the new
	// signature's manifest alone: the index's children came from the tree.
	reqs := reg.Requests()
	if reqs["GET tags"] != 1 || reqs["HEAD manifests"] != 3 || reqs["GET manifests"] != 1 {
		t.Errorf("a late child signature: requests %v, want 1 listing, 3 HEADs, 1 manifest GET", reqs)
	}

	// Nothing changed: the listing and the same three HEADs, no GET.
	reg.ResetRequests()
	if _, err := Sync(ctx, root, entries, syncOptions()); err != nil {
		t.Fatal(err)
	}
	reqs = reg.Requests()
	if reqs["GET tags"] != 1 || reqs["HEAD manifests"] != 3 || reqs["GET manifests"] != 0 || reqs["GET blobs"] != 0 {
		t.Errorf("an unchanged rerun: requests %v, want 1 listing and 3 HEADs", reqs)
	}
}

// TestSyncChildSignaturesDryRun: a dry run names the child's signature
// tag it would sync, and writes nothing.
func TestSyncChildSignaturesDryRun(t *testing.T) {
	reg, index, sig := childSigned(t)
	root := newRoot(t)
	o := syncOptions()
	o.DryRun = true
	entries := []SyncEntry{{Entry: "tools", Source: reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}}}
	rep, err := Sync(context.Background(), root, entries, o)
	if err != nil {
		t.Fatal(err)
	}
	sigTag := cosignTag(index.Children["linux/arm64"], ".sig")
	if r := find(rep, "tools:"+sigTag); r == nil || r.Status != SyncWould || r.Subject != "tools:v1" || r.Digest.String() != sig.Digest {
		t.Errorf("tools:%s: %+v, want would-sync, %s, for tools:v1", sigTag, r, sig.Digest)
	}
	if _, ok, _ := root.TagDigest("tools", sigTag); ok {
		t.Errorf("a dry run tagged the child's .sig")
	}
}

// TestSyncChildSignaturesFail: a child signature the source will not say
// anything of (403 to its HEAD) fails the run, which then publishes
// nothing, as a release tag's failed HEAD does; with KeepGoing the rest
// is published.
func TestSyncChildSignaturesFail(t *testing.T) {
	reg, index, _ := childSigned(t)
	sigTag := cosignTag(index.Children["linux/arm64"], ".sig")
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/"+sigTag) {
			w.WriteHeader(http.StatusForbidden)
			return true
		}
		return false
	}
	root := newRoot(t)
	entries := []SyncEntry{{Entry: "tools", Source: reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}}}
	rep, err := Sync(context.Background(), root, entries, syncOptions())
	if err == nil || !strings.Contains(err.Error(), sigTag) {
		t.Errorf("error %v, want one naming %s", err, sigTag)
	}
	if r := find(rep, "tools:"+sigTag); r == nil || r.Status != SyncFailed {
		t.Errorf("tools:%s: %+v, want failed", sigTag, r)
	}
	if _, ok, _ := root.TagDigest("tools", "v1"); ok {
		t.Errorf("tools:v1 was published by a run that failed without KeepGoing")
	}

	o := syncOptions()
	o.KeepGoing = true
	rep, err = Sync(context.Background(), root, entries, o)
	if err == nil {
		t.Errorf("KeepGoing: no error")
	}
	if r := find(rep, "tools:v1"); r == nil || r.Status != SyncSynced {
		t.Errorf("KeepGoing: tools:v1 %+v, want synced", r)
	}
}

// TestSyncChildSignaturesNoReferrers: an entry saying NoReferrers leaves
// the children's signatures behind too.
func TestSyncChildSignaturesNoReferrers(t *testing.T) {
	reg, index, _ := childSigned(t)
	root := newRoot(t)
	entries := []SyncEntry{{Entry: "tools", Source: reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}, NoReferrers: true}}
	rep, err := Sync(context.Background(), root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 {
		t.Errorf("results %+v, want tools:v1 alone", rep.Results)
	}
	if _, ok, _ := root.TagDigest("tools", cosignTag(index.Children["linux/arm64"], ".sig")); ok {
		t.Errorf("the child's .sig travelled")
	}
}
