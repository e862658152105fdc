package gc

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// listed returns the digests the referrers index of s in repo lists, and
// false when there is none (the empty index answers).
func (tr *fixture) listed(repo string, s desc) ([]digest.Digest, bool) {
	tr.t.Helper()
	b, err := tr.fx.ReadReferrers(repo, s.Digest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		tr.t.Fatal(err)
	}
	x, err := distribution.ParseReferrers(b)
	if err != nil {
		tr.t.Fatal(err)
	}
	var ds []digest.Digest
	for _, m := range x.Manifests {
		ds = append(ds, m.Digest)
	}
	return ds, true
}

func (tr *fixture) wantListed(repo string, s desc, want ...desc) {
	tr.t.Helper()
	got, ok := tr.listed(repo, s)
	var ds []digest.Digest
	for _, d := range want {
		ds = append(ds, d.Digest)
	}
	slices.Sort(ds)
	switch {
	case len(want) == 0 && ok:
		tr.t.Errorf("referrers index of %s lists %v, want none (the empty index)", s.Digest, got)
	case len(want) > 0 && !slices.Equal(got, ds):
		tr.t.Errorf("referrers index of %s lists %v (present %v), want %v", s.Digest, got, ok, ds)
	}
}

// TestGCReferrersIndexes: a collection removes a swept subject's index
// with its referrers, keeps a kept subject's, and repairs indexes a killed
// writer left wrong or missing.
func TestGCReferrersIndexes(t *testing.T) {
	tr := newTree(t)
	s := tr.image("app", "subject", layer("s", 100))
	gone := tr.image("app", "gone", layer("g", 100))
	sig := tr.referrer("app", s, "sig-of-subject")
	tr.referrer("app", gone, "sig-of-gone")
	tr.tag("app", "v1", s)
	tr.tag("app", "old", gone)
	tr.untag("app", "old")
	o := Options{Now: later, Grace: time.Hour}
	if _, err := Collect(tr.root, o); err != nil {
		t.Fatal(err)
	}
	tr.wantListed("app", s, sig.manifest)
	tr.wantListed("app", gone)
	tr.verify()

	// Killed writers: an index without its file, and one for a subject
	// nothing refers to.
	stale := tr.fx.ReferrersPath("app", digest.FromString("stale"))
	if err := os.Rename(tr.fx.ReferrersPath("app", s.Digest), stale); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(tr.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range rep.Problems {
		paths = append(paths, p.Path)
	}
	if want := []string{tr.fx.ReferrersPath("app", s.Digest), stale}; !sameSet(paths, want) {
		t.Errorf("verify: %v, want problems at %v", rep.Problems, want)
	}
	if _, err := Collect(tr.root, o); err != nil {
		t.Fatal(err)
	}
	tr.wantListed("app", s, sig.manifest)
	tr.verify()
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestVerifyReferrersIndexOutOfStep: an index that lists other entries
// than the manifests make is a problem at its path.
func TestVerifyReferrersIndexOutOfStep(t *testing.T) {
	tr := newTree(t)
	s := tr.image("app", "subject")
	tr.tag("app", "v1", s)
	tr.referrer("app", s, "sig")
	p := tr.fx.ReferrersPath("app", s.Digest)
	if err := os.WriteFile(p, distribution.EmptyReferrers(), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(tr.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 1 || rep.Problems[0].Path != p || !strings.Contains(rep.Problems[0].Message, "does not list") {
		t.Errorf("verify: %v, want one problem at %s", rep.Problems, p)
	}
}

// TestDeleteReferrerByTag: a referrer deleted by its own tag goes with
// the prune although its subject stays; referrers no deleted tag named
// stay with their subject, and go with it.
func TestDeleteReferrerByTag(t *testing.T) {
	tr := newTree(t)
	s := tr.image("app", "subject", layer("s", 100))
	sbom := tr.referrer("app", s, "sbom")
	sig := tr.referrer("app", s, "sig")
	tr.tag("app", "v1", s)
	tr.tag("app", "v1-copy", s)
	tr.tag("app", "sbom", sbom.manifest)
	del := func(tag string) {
		t.Helper()
		if _, err := Delete(tr.root, []Ref{{Repo: "app", Tag: tag}}, DeleteOptions{Grace: time.Hour}); err != nil {
			t.Fatalf("delete app:%s: %v", tag, err)
		}
		tr.verify()
	}

	del("sbom")
	if tr.hasManifest("app", sbom.manifest) || tr.hasBlob("app", sbom.blob) {
		t.Error("the referrer deleted by its tag, or its blob, is still there")
	}
	tr.wantListed("app", s, sig.manifest)

	del("v1") // v1-copy keeps the subject, and the subject its referrer
	if !tr.hasManifest("app", s) || !tr.hasManifest("app", sig.manifest) {
		t.Error("deleting one of two tags of the subject took the subject or its referrer")
	}
	tr.wantListed("app", s, sig.manifest)

	del("v1-copy")
	if tr.hasManifest("app", sig.manifest) {
		t.Error("the referrer outlived its subject")
	}
	if _, err := os.Stat(tr.fx.RepoDir("app")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("repository: %v, want it removed with its referrers", err)
	}
}

// TestDeleteReferrerNoPrune: a referrer deleted by digest without a prune
// leaves its subject's index first.
func TestDeleteReferrerNoPrune(t *testing.T) {
	tr := newTree(t)
	s := tr.image("app", "subject")
	tr.tag("app", "v1", s)
	a, b := tr.referrer("app", s, "a"), tr.referrer("app", s, "b")
	if _, err := Delete(tr.root, []Ref{{Repo: "app", Digest: a.manifest.Digest}}, DeleteOptions{NoPrune: true}); err != nil {
		t.Fatal(err)
	}
	tr.wantListed("app", s, b.manifest)
	if _, err := Delete(tr.root, []Ref{{Repo: "app", Digest: b.manifest.Digest}}, DeleteOptions{NoPrune: true}); err != nil {
		t.Fatal(err)
	}
	tr.wantListed("app", s)
	tr.verify()
}
