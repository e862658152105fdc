package gc

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

func TestDeleteParseRef(t *testing.T) {
	d := digest.FromString("x")
	tests := []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{in: "ns/app:v1", want: Ref{Repo: "ns/app", Tag: "v1"}},
		{in: "ns/app@" + d.String(), want: Ref{Repo: "ns/app", Digest: d}},
		{in: "ns/app", wantErr: "want REPO:TAG or REPO@DIGEST"},
		{in: "ns/app:", wantErr: "invalid tag"},
		{in: "NS/app:v1", wantErr: "invalid repository name"},
		{in: "ns/app@sha256:nothex", wantErr: "invalid digest"},
		{in: "../x:v1", wantErr: "invalid repository name"},
	}
	for _, tt := range tests {
		got, err := ParseRef(tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseRef(%q) = %v, %v; want an error containing %q", tt.in, got, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("ParseRef(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// multiArch is the repository of TripleO's bug (serving-notes §3.2): two
// multi-arch tags sharing their arm64 child, and a single-arch tag naming
// the amd64 child of the first.
type multiArch struct {
	amd, arm, amd2, idx1, idx2 desc
	uniqueAmd2                 desc
}

func buildMultiArch(tr *fixture) multiArch {
	var ma multiArch
	ma.amd = tr.image("app", "amd64", layer("base", 2000), layer("amd", 100))
	ma.arm = tr.image("app", "arm64", layer("arm", 100))
	ma.amd2 = tr.image("app", "amd64-2", layer("amd2", 100))
	ma.uniqueAmd2 = desc{Digest: digest.FromBytes(layer("amd2", 100))}
	ma.idx1 = tr.index("app", ociIndex, map[string]desc{"amd64": ma.amd, "arm64": ma.arm})
	ma.idx2 = tr.index("app", dockerList, map[string]desc{"amd64": ma.amd2, "arm64": ma.arm})
	tr.tag("app", "multi", ma.idx1, ma.amd)
	tr.tag("app", "multi2", ma.idx2, ma.amd2)
	tr.tag("app", "amd", ma.amd)
	return ma
}

// TestDeleteTagPrunes: deleting a tag reclaims at once, grace or not,
// what it alone reached; children other tags share stay.
func TestDeleteTagPrunes(t *testing.T) {
	tr := newTree(t)
	ma := buildMultiArch(tr)
	fresh := tr.image("app", "untagged-fresh", layer("fresh", 100))
	rep, err := Delete(tr.root, []Ref{{Repo: "app", Tag: "multi2"}}, DeleteOptions{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Deleted, []string{"app:multi2"}) || rep.Prune == nil || rep.Prune.ManifestsDeleted != 2 {
		t.Errorf("report %+v %+v: want app:multi2 deleted, 2 manifests pruned", rep, rep.Prune)
	}
	for _, d := range []desc{ma.idx2, ma.amd2} {
		if tr.hasManifest("app", d) {
			t.Errorf("manifest %s of the deleted tag is still there", d.Digest)
		}
	}
	if tr.hasBlob("app", ma.uniqueAmd2) {
		t.Error("the deleted tag's unique layer is still there")
	}
	for _, d := range []desc{ma.idx1, ma.amd, ma.arm, fresh} {
		if !tr.hasManifest("app", d) {
			t.Errorf("manifest %s was deleted, but a tag or the grace period keeps it", d.Digest)
		}
	}
	tr.verify()
}

// TestDeleteEveryTag deletes the tags one by one: after each, every
// remaining tag resolves; after the last, the repository is gone.
func TestDeleteEveryTag(t *testing.T) {
	tr := newTree(t)
	buildMultiArch(tr)
	tr.tag("other", "v1", tr.image("other", "v1", layer("base", 2000)))
	for _, tag := range []string{"multi2", "amd", "multi"} {
		if _, err := Delete(tr.root, []Ref{{Repo: "app", Tag: tag}}, DeleteOptions{Grace: time.Hour}); err != nil {
			t.Fatalf("delete app:%s: %v", tag, err)
		}
		tr.verify()
	}
	if _, err := os.Stat(tr.fx.RepoDir("app")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("app after deleting its last tag: %v, want it gone", err)
	}
	var repos []string
	err := tr.root.Inspect(func(v *tree.View) (err error) { repos, err = v.ReadCatalog(); return err })
	if err != nil || !slices.Equal(repos, []string{"other"}) {
		t.Errorf("_catalog %v %v, want [other]", repos, err)
	}
}

// TestDeleteManifest: by digest, a manifest goes only when no tag and no
// index that stays names it; the refusal lists them.
func TestDeleteManifest(t *testing.T) {
	tests := []struct {
		name      string
		refs      func(ma multiArch) []Ref
		noPrune   bool
		wantErr   []string // substrings, one per failed ref
		wantGone  func(ma multiArch) []desc
		wantStays func(ma multiArch) []desc
	}{
		{
			name:    "tagged and indexed",
			refs:    func(ma multiArch) []Ref { return []Ref{{Repo: "app", Digest: ma.amd.Digest}} },
			wantErr: []string{"still referenced by tag amd, tag multi, index sha256:"},
			wantStays: func(ma multiArch) []desc {
				return []desc{ma.amd}
			},
		},
		{
			name:    "child of two indexes",
			refs:    func(ma multiArch) []Ref { return []Ref{{Repo: "app", Digest: ma.arm.Digest}} },
			wantErr: []string{"still referenced by index "},
			wantStays: func(ma multiArch) []desc {
				return []desc{ma.arm}
			},
		},
		{
			name: "tag and then its child, in one call",
			refs: func(ma multiArch) []Ref {
				return []Ref{{Repo: "app", Tag: "multi2"}, {Repo: "app", Digest: ma.amd2.Digest}}
			},
			wantGone:  func(ma multiArch) []desc { return []desc{ma.idx2, ma.amd2} },
			wantStays: func(ma multiArch) []desc { return []desc{ma.arm, ma.idx1} },
		},
		{
			name: "an index, its children stay for other tags",
			refs: func(ma multiArch) []Ref {
				return []Ref{{Repo: "app", Tag: "multi2"}, {Repo: "app", Digest: ma.idx2.Digest}}
			},
			noPrune:   true,
			wantGone:  func(ma multiArch) []desc { return []desc{ma.idx2} },
			wantStays: func(ma multiArch) []desc { return []desc{ma.amd2, ma.arm} },
		},
		{
			name:    "unknown",
			refs:    func(ma multiArch) []Ref { return []Ref{{Repo: "app", Digest: digest.FromString("nothing")}} },
			wantErr: []string{"manifest unknown"},
		},
		{
			name:    "unknown tag",
			refs:    func(ma multiArch) []Ref { return []Ref{{Repo: "app", Tag: "nope"}} },
			wantErr: []string{tree.ErrTagUnknown.Error()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t)
			ma := buildMultiArch(tr)
			_, err := Delete(tr.root, tt.refs(ma), DeleteOptions{Grace: time.Hour, NoPrune: tt.noPrune})
			for _, want := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Delete: %v, want an error containing %q", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("Delete: %v", err)
			}
			if tt.wantGone != nil {
				for _, d := range tt.wantGone(ma) {
					if tr.hasManifest("app", d) {
						t.Errorf("manifest %s is still there", d.Digest)
					}
				}
			}
			if tt.wantStays != nil {
				for _, d := range tt.wantStays(ma) {
					if !tr.hasManifest("app", d) {
						t.Errorf("manifest %s was deleted", d.Digest)
					}
				}
			}
			tr.verify()
		})
	}
}

// TestDeleteNoPrune leaves everything but the tag to the next collection.
func TestDeleteNoPrune(t *testing.T) {
	tr := newTree(t)
	img := tr.image("app", "v1", layer("l", 100))
	tr.tag("app", "v1", img)
	rep, err := Delete(tr.root, []Ref{{Repo: "app", Tag: "v1"}}, DeleteOptions{NoPrune: true})
	if err != nil || rep.Prune != nil {
		t.Fatalf("Delete --no-prune: %+v %v", rep, err)
	}
	if !tr.hasManifest("app", img) || !tr.hasBlob("app", desc{Digest: digest.FromBytes(layer("l", 100))}) {
		t.Fatal("--no-prune deleted more than the tag")
	}
	if repos, _ := tr.fx.ReadCatalog(); len(repos) != 0 {
		t.Errorf("_catalog %v: a repository without tags is listed", repos)
	}
	tr.verify()
	if _, err := Collect(tr.root, Options{Grace: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tr.fx.RepoDir("app")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the next gc left the repository: %v", err)
	}
}

// TestDeleteReferrer: a signature deleted by digest goes although its
// subject is kept.
func TestDeleteReferrer(t *testing.T) {
	tr := newTree(t)
	s := tr.image("app", "subject")
	tr.tag("app", "v1", s)
	sig := tr.referrer("app", s, "sig")
	if _, err := Delete(tr.root, []Ref{{Repo: "app", Digest: sig.manifest.Digest}}, DeleteOptions{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if tr.hasManifest("app", sig.manifest) || tr.hasBlob("app", sig.blob) {
		t.Error("the referrer or its blob is still there")
	}
	if !tr.hasManifest("app", s) {
		t.Error("the subject was deleted")
	}
	tr.verify()
}
