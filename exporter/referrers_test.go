package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

// signed is a registry with app:1.0, an image with an OCI
// referrer (an SBOM with a subject, untagged) and a cosign signature tag;
// and tools:v1, an index whose arm64 child has a referrer of its own.
type signed struct {
	reg                *testregistry.Registry
	image, index       testregistry.Pushed
	sbom, childSBOM    testregistry.Pushed
	sig                testregistry.Pushed
	sigTag             string
	sbomRaw, childsRaw []byte
}

// signedRegistry starts a registry as signed describes: with the
// referrers API, or (api false) without, where go-containerregistry's
// client pushing the SBOMs keeps the referrers tag schema's tags.
func signedRegistry(t *testing.T, api bool) signed {
	reg := testregistry.Start(t)
	if api {
		reg = testregistry.StartWithReferrers(t)
	}
	s := signed{reg: reg}
	base := testregistry.Layer(t, 1024, types.OCILayer)
	s.image = reg.PushImage(t, "app:1.0", testregistry.OCIImage(t, "amd64", base))
	var blobs []v1.Layer
	s.sbomRaw, blobs = testregistry.ArtifactFor(t, s.image)
	s.sbom = reg.PushRaw(t, "app@"+digest.FromBytes(s.sbomRaw).String(), distribution.MediaTypeOCIManifest, s.sbomRaw, blobs...)
	s.sigTag = "sha256-" + strings.TrimPrefix(s.image.Digest, "sha256:") + ".sig"
	s.sig = reg.PushImage(t, "app:"+s.sigTag, testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 64, types.OCILayer)))

	s.index = reg.PushIndex(t, "tools:v1", types.OCIImageIndex, map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base),
		"arm64": testregistry.OCIImage(t, "arm64", base),
	})
	child := testregistry.Pushed{Digest: s.index.Children["linux/arm64"], MediaType: string(types.OCIManifestSchema1)}
	child.Raw = childRaw(t, reg, "tools", child.Digest)
	s.childsRaw, blobs = testregistry.ArtifactFor(t, child)
	s.childSBOM = reg.PushRaw(t, "tools@"+digest.FromBytes(s.childsRaw).String(), distribution.MediaTypeOCIManifest, s.childsRaw, blobs...)
	return s
}

// childRaw is the manifest d of repo, as the registry has it.
func childRaw(t *testing.T, reg *testregistry.Registry, repo, d string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Host+"/v2/"+repo+"/manifests/"+d, nil)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func find(rep *SyncReport, dest string) *SyncResult {
	for i := range rep.Results {
		if rep.Results[i].Dest == dest {
			return &rep.Results[i]
		}
	}
	return nil
}

// TestSyncReferrers: referrers travel with the tags that move — an
// image's SBOM and an index child's, through the referrers API — and
// cosign's .sig tag as a tag; a rerun with nothing changed asks for none
// of them; a new tag naming the same image asks the referrers API and
// the cosign tags again, and GETs no referrer the tree holds.
func TestSyncReferrers(t *testing.T) {
	s := signedRegistry(t, true)
	root := newRoot(t)
	ctx := context.Background()
	entries := []SyncEntry{
		{Entry: "app", Source: s.reg.Host + "/app", Dest: "app", Tags: []string{"1.0"}},
		{Entry: "tools", Source: s.reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}},
	}
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "app:1.0"); r == nil || r.Status != SyncSynced || r.Referrers != 1 {
		t.Errorf("app:1.0: %+v, want synced with 1 referrer", r)
	}
	if r := find(rep, "tools:v1"); r == nil || r.Status != SyncSynced || r.Referrers != 1 {
		t.Errorf("tools:v1: %+v, want synced with 1 referrer (its arm64 child's)", r)
	}
	if r := find(rep, "app:"+s.sigTag); r == nil || r.Status != SyncSynced || r.Subject != "app:1.0" {
		t.Errorf("app:%s: %+v, want synced, for app:1.0", s.sigTag, r)
	}
	for repo, d := range map[string]string{"app": s.sbom.Digest, "tools": s.childSBOM.Digest} {
		if !holds(root, repo, digest.Digest(d)) {
			t.Errorf("%s: the referrer %s is not in the tree", repo, d)
		}
	}
	if d, ok, err := root.TagDigest("app", s.sigTag); err != nil || !ok || d.String() != s.sig.Digest {
		t.Errorf("app:%s names %s (%v %v), want %s", s.sigTag, d, ok, err, s.sig.Digest)
	}

	// Nothing moved: one HEAD per tag, no referrers asked for.
	s.reg.ResetRequests()
	rep, err = Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != SyncUnchanged {
			t.Errorf("an unchanged rerun: %s %s", r.Dest, r.Status)
		}
	}
	reqs := s.reg.Requests()
	if reqs["HEAD manifests"] != 2 || reqs["GET manifests"] != 0 || reqs["GET referrers"] != 0 || reqs["GET blobs"] != 0 {
		t.Errorf("an unchanged rerun: requests %v, want 2 HEADs and nothing else", reqs)
	}

	// A new tag of the same image: the referrer is in the tree, no GET.
	entries[0].Tags = []string{"1.0", "1.1"}
	retag := s.reg.PushRaw(t, "app:1.1", s.image.MediaType, s.image.Raw)
	s.reg.ResetRequests()
	rep, err = Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "app:1.1"); r == nil || r.Status != SyncSynced || r.Digest.String() != retag.Digest || r.Referrers != 0 {
		t.Errorf("app:1.1: %+v, want synced, no new referrer", r)
	}
	reqs = s.reg.Requests()
	// HEADs: 1.0, 1.1, tools:v1 and the three cosign tags of 1.1's digest (.sig
	// unchanged, .att and .sbom absent); GETs: 1.1's manifest only.
	if reqs["GET referrers"] != 1 || reqs["GET manifests"] != 1 || reqs["HEAD manifests"] != 6 || reqs["GET blobs"] != 0 {
		t.Errorf("a new tag of a mirrored image: requests %v, want 1 referrers GET, 1 manifest GET, 6 HEADs, no blob", reqs)
	}
	if r := find(rep, "app:"+s.sigTag); r == nil || r.Status != SyncUnchanged {
		t.Errorf("app:%s: %+v, want unchanged", s.sigTag, r)
	}
}

// TestSyncReferrersTagSchema: a source without the referrers API (404)
// is asked for the referrers tag schema's sha256-<hex> index, which
// go-containerregistry's client kept when it pushed the SBOMs.
func TestSyncReferrersTagSchema(t *testing.T) {
	s := signedRegistry(t, false)
	root := newRoot(t)
	s.reg.ResetRequests()
	rep, err := Sync(context.Background(), root, []SyncEntry{{Entry: "app", Source: s.reg.Host + "/app", Dest: "app"}}, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "app:1.0"); r == nil || r.Referrers != 1 || !holds(root, "app", digest.Digest(s.sbom.Digest)) {
		t.Errorf("app:1.0: %+v; want its SBOM found through the sha256-<hex> tag, and in the tree", r)
	}
	// The listing has the schema's tag and the .sig: never release tags.
	for _, r := range rep.Results {
		if SignatureTag(strings.TrimPrefix(r.Dest, "app:")) && r.Subject == "" {
			t.Errorf("%s synced as a release tag", r.Dest)
		}
	}
	if _, ok, _ := root.TagDigest("app", schemaTag(digest.Digest(s.image.Digest))); ok {
		t.Errorf("the referrers tag schema's tag was mirrored: the tree serves the API")
	}
	if r := find(rep, "app:"+s.sigTag); r == nil || r.Status != SyncSynced {
		t.Errorf("app:%s: %+v, want synced (the listing holds it)", s.sigTag, r)
	}
	if n := s.reg.Requests()["GET referrers"]; n != 1 {
		t.Errorf("%d referrers API requests, want 1 (answered 404)", n)
	}
}

// TestSyncNoReferrers: an entry that leaves referrers behind asks for
// none, and gets neither the SBOM nor the .sig tag.
func TestSyncNoReferrers(t *testing.T) {
	s := signedRegistry(t, true)
	root := newRoot(t)
	s.reg.ResetRequests()
	rep, err := Sync(context.Background(), root, []SyncEntry{{Entry: "app", Source: s.reg.Host + "/app", Dest: "app", Tags: []string{"1.0"}, NoReferrers: true}}, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Referrers != 0 {
		t.Errorf("results %+v, want app:1.0 alone", rep.Results)
	}
	if holds(root, "app", digest.Digest(s.sbom.Digest)) {
		t.Errorf("the SBOM travelled")
	}
	if _, ok, _ := root.TagDigest("app", s.sigTag); ok {
		t.Errorf("the .sig tag travelled")
	}
	if n := s.reg.Requests()["GET referrers"]; n != 0 {
		t.Errorf("%d referrers requests", n)
	}
}

// TestSyncReferrersBounded: a source listing more than MaxReferrers
// referrers of a subject fails that tag, naming the limit; nothing of it
// is published.
func TestSyncReferrersBounded(t *testing.T) {
	s := signedRegistry(t, true)
	var list []any
	for i := range MaxReferrers + 1 {
		list = append(list, map[string]any{"mediaType": distribution.MediaTypeOCIManifest, "digest": digest.FromString(fmt.Sprint(i)), "size": 100})
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": distribution.MediaTypeOCIIndex, "manifests": list})
	s.reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/referrers/") {
			w.Header().Set("Content-Type", distribution.MediaTypeOCIIndex)
			w.Write(idx)
			return true
		}
		return false
	}
	root := newRoot(t)
	_, err := Sync(context.Background(), root, []SyncEntry{{Entry: "app", Source: s.reg.Host + "/app", Dest: "app", Tags: []string{"1.0"}}}, syncOptions())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("over the limit of %d per subject", MaxReferrers)) {
		t.Fatalf("err %v, want the referrers limit named", err)
	}
	if _, ok, _ := root.TagDigest("app", "1.0"); ok {
		t.Errorf("app:1.0 was tagged")
	}
}

// TestSyncReferrersPlatforms: with platforms, the referrers of what the
// tree stores as the source has it travel — the selected child's — and
// an index rewritten to keep several platforms, which the source never
// had, is not asked about.
func TestSyncReferrersPlatforms(t *testing.T) {
	s := signedRegistry(t, true)
	for _, platforms := range [][]string{{"linux/arm64"}, {"linux/amd64", "linux/arm64"}} {
		root := newRoot(t)
		s.reg.ResetRequests()
		rep, err := Sync(context.Background(), root, []SyncEntry{{Entry: "tools", Source: s.reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}, Platforms: platforms}}, syncOptions())
		if err != nil {
			t.Fatal(err)
		}
		if r := find(rep, "tools:v1"); r == nil || r.Referrers != 1 || !holds(root, "tools", digest.Digest(s.childSBOM.Digest)) {
			t.Errorf("platforms %v: tools:v1 %+v, want the arm64 child's SBOM in the tree", platforms, r)
		}
		if n, want := s.reg.Requests()["GET referrers"], len(platforms); n != want {
			t.Errorf("platforms %v: %d referrers requests, want %d (one per child stored)", platforms, n, want)
		}
	}
}

// TestSyncReferrersDryRun: a dry run counts the referrers and cosign tags
// that would travel, fetches no blob, and writes nothing.
func TestSyncReferrersDryRun(t *testing.T) {
	s := signedRegistry(t, true)
	root := newRoot(t)
	before := hashTree(t, root.Dir())
	o := syncOptions()
	o.DryRun = true
	s.reg.ResetRequests()
	rep, err := Sync(context.Background(), root, []SyncEntry{{Entry: "app", Source: s.reg.Host + "/app", Dest: "app", Tags: []string{"1.0"}}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if r := find(rep, "app:1.0"); r == nil || r.Status != SyncWould || r.Referrers != 1 || r.Manifests != 1 {
		t.Errorf("app:1.0: %+v, want would-sync, 1 manifest and 1 referrer", r)
	}
	if r := find(rep, "app:"+s.sigTag); r == nil || r.Status != SyncWould || r.Subject != "app:1.0" {
		t.Errorf("app:%s: %+v, want would-sync for app:1.0", s.sigTag, r)
	}
	if after := hashTree(t, root.Dir()); after != before {
		t.Errorf("a dry run changed the tree")
	}
	if n := s.reg.Requests()["GET blobs"]; n != 0 {
		t.Errorf("a dry run fetched %d blobs", n)
	}
}
