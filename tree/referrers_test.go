package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

const refOCIIndex = "application/vnd.oci.image.index.v1+json"

// putReferrer stores a manifest of mediaType with subject s and the given
// extra top-level fields.
func putReferrer(t *testing.T, r *Root, repo, mediaType string, s digest.Digest, fields map[string]any) distribution.ReferrerDescriptor {
	t.Helper()
	m := map[string]any{"schemaVersion": 2, "mediaType": mediaType, "subject": map[string]any{"mediaType": gcOCIManifest, "digest": s, "size": 2}}
	for k, v := range fields {
		m[k] = v
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromBytes(raw)
	if err := r.putManifest(repo, d, mediaType, raw); err != nil {
		t.Fatal(err)
	}
	return distribution.ReferrerDescriptor{MediaType: mediaType, Digest: d, Size: int64(len(raw))}
}

func readIndex(t *testing.T, r *Root, repo string, s digest.Digest) ([]distribution.ReferrerDescriptor, bool) {
	t.Helper()
	b, err := r.readReferrers(repo, s)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	x, err := distribution.ParseReferrers(b)
	if err != nil {
		t.Fatal(err)
	}
	if x.SchemaVersion != 2 || x.MediaType != refOCIIndex {
		t.Errorf("index %s: schemaVersion %d, mediaType %q", b, x.SchemaVersion, x.MediaType)
	}
	return x.Manifests, true
}

// TestUpdateReferrers: the index lists exactly the manifests whose subject
// is the digest, sorted, with the artifactType the spec derives, and goes
// when the last of them goes.
func TestUpdateReferrers(t *testing.T) {
	r := newTree(t)
	const repo = "ns/app"
	subject := gcPutManifest(t, r, repo, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	other := digest.FromString("another subject")
	sig := putReferrer(t, r, repo, gcOCIManifest, subject, map[string]any{
		"artifactType": "application/vnd.example.sig",
		"config":       map[string]any{"mediaType": "application/vnd.oci.empty.v1+json"},
		"annotations":  map[string]string{"org.example.signed-by": "ci"},
	})
	sig.ArtifactType, sig.Annotations = "application/vnd.example.sig", map[string]string{"org.example.signed-by": "ci"}
	sbom := putReferrer(t, r, repo, gcOCIManifest, subject, map[string]any{
		"config": map[string]any{"mediaType": "application/vnd.example.sbom.config"},
		// not string to string: left out, the entry stays
		"annotations": map[string]any{"n": 1},
	})
	sbom.ArtifactType = "application/vnd.example.sbom.config"
	odd := putReferrer(t, r, repo, gcOCIManifest, subject, map[string]any{
		"artifactType": 5, // not a string: the config's type stands in
		"config":       map[string]any{"mediaType": "application/vnd.example.odd"},
	})
	odd.ArtifactType = "application/vnd.example.odd"
	idx := putReferrer(t, r, repo, refOCIIndex, subject, nil) // no artifactType at all
	putReferrer(t, r, repo, gcOCIManifest, other, map[string]any{"artifactType": "x/y"})

	if err := r.updateReferrers(repo, subject); err != nil {
		t.Fatal(err)
	}
	want := []distribution.ReferrerDescriptor{sig, sbom, odd, idx}
	slices.SortFunc(want, func(a, b distribution.ReferrerDescriptor) int {
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	got, ok := readIndex(t, r, repo, subject)
	if !ok || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("index of %s:\n got %+v\nwant %+v", subject, got, want)
	}
	if _, ok := readIndex(t, r, repo, other); ok {
		t.Errorf("index of %s written, but only %s was updated", other, subject)
	}
	gen, err := r.generatedReferrers(repo)
	if b, _ := r.readReferrers(repo, subject); err != nil || string(gen[subject]) != string(b) || len(gen) != 2 {
		t.Errorf("GeneratedReferrers = %v, %v; want the file of %s and one for %s", gen, err, subject, other)
	}

	for _, rd := range want {
		if err := r.removeManifest(repo, rd.Digest); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.updateReferrers(repo, subject); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.referrersPath(repo, subject)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("index without entries: %v, want it removed (the empty index answers)", err)
	}
}

// TestRefreshReferrers: a remover unlists what it is about to remove, and
// a refresh removes indexes nothing refers to and writes missing ones.
func TestRefreshReferrers(t *testing.T) {
	r := newTree(t)
	const repo = "ns/app"
	s1, s2, s3 := digest.FromString("s1"), digest.FromString("s2"), digest.FromString("s3")
	a := putReferrer(t, r, repo, gcOCIManifest, s1, map[string]any{"artifactType": "a/a"})
	b := putReferrer(t, r, repo, gcOCIManifest, s1, map[string]any{"artifactType": "b/b"})
	c := putReferrer(t, r, repo, gcOCIManifest, s2, map[string]any{"artifactType": "c/c"})
	// A stale index (its referrer's removal was killed) and none for s2
	// (its export was killed before the index).
	if err := r.publish(r.referrersPath(repo, s3), distribution.NewReferrersIndex([]distribution.ReferrerDescriptor{{Digest: s1}}).Marshal()); err != nil {
		t.Fatal(err)
	}
	if err := r.refreshReferrers(repo, a.Digest); err != nil {
		t.Fatal(err)
	}
	if got, _ := readIndex(t, r, repo, s1); len(got) != 1 || got[0].Digest != b.Digest {
		t.Errorf("index of s1 %+v: want only %s, %s is leaving", got, b.Digest, a.Digest)
	}
	if got, _ := readIndex(t, r, repo, s2); len(got) != 1 || got[0].Digest != c.Digest {
		t.Errorf("index of s2 %+v: want %s", got, c.Digest)
	}
	if _, ok := readIndex(t, r, repo, s3); ok {
		t.Error("index of s3, which nothing refers to, is still there")
	}
	want := []digest.Digest{s1, s2}
	slices.Sort(want)
	if subjects, err := r.referrerSubjects(repo); err != nil || !slices.Equal(subjects, want) {
		t.Errorf("ReferrerSubjects = %v, %v; want %v", subjects, err, want)
	}
}

// TestReferrersRemoveRepo: an emptied repository takes its referrers
// directory along, and Init writes the empty index the servers fall back
// to.
func TestReferrersRemoveRepo(t *testing.T) {
	r := newTree(t)
	if b, err := os.ReadFile(r.emptyReferrersPath()); err != nil || string(b) != `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` {
		t.Errorf("empty index %q, %v", b, err)
	}
	s := digest.FromString("s")
	rd := putReferrer(t, r, "ns/app", gcOCIManifest, s, nil)
	if err := r.updateReferrers("ns/app", s); err != nil {
		t.Fatal(err)
	}
	if !r.hasManifests("ns/app") || r.hasManifests("ns/nope") {
		t.Error("HasManifests: wrong for ns/app or ns/nope")
	}
	if err := r.removeManifest("ns/app", rd.Digest); err != nil {
		t.Fatal(err)
	}
	if gone, err := r.removeRepo("ns/app"); err != nil || !gone {
		t.Fatalf("RemoveRepo = %v, %v", gone, err)
	}
	if _, err := os.Stat(r.repoDir("ns/app")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("repository directory: %v, want it gone with its referrers", err)
	}
}
