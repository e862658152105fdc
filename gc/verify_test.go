package gc

import (
	"os"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestVerify damages a clean tree one way at a time and expects exactly
// the problem that damage is, at its path.
func TestVerify(t *testing.T) {
	type damaged struct {
		tr   *fixture
		ma   multiArch
		base desc
	}
	tests := []struct {
		name     string
		repos    []string
		damage   func(f damaged) (path string)
		wantMsg  string
		wantMore bool // the damage shows in more than one place
	}{
		{
			name: "flipped byte in a blob",
			damage: func(f damaged) string {
				p := f.tr.fx.BlobPath("app", f.base.Digest)
				flipByte(f.tr.t, p)
				return p
			},
			wantMsg:  "not the blob its name says",
			wantMore: true, // the base layer is hard-linked into "other" too
		},
		{
			name: "flipped byte in a legacy .gz blob",
			damage: func(f damaged) string {
				d := f.ma.uniqueAmd2.Digest
				p := f.tr.fx.LegacyBlobPath("app", d)
				if err := os.Rename(f.tr.fx.BlobPath("app", d), p); err != nil {
					f.tr.t.Fatal(err)
				}
				flipByte(f.tr.t, p)
				return p
			},
			wantMsg: "not the blob its name says",
		},
		{
			name: "missing blob",
			damage: func(f damaged) string {
				p := f.tr.fx.BlobPath("app", f.ma.uniqueAmd2.Digest)
				if err := os.Remove(p); err != nil {
					f.tr.t.Fatal(err)
				}
				return p
			},
			wantMsg: "missing: manifest sha256:",
		},
		{
			name: "tag pointing at a missing manifest",
			damage: func(f damaged) string {
				if err := os.RemoveAll(f.tr.fx.ManifestDir("app", f.ma.idx2.Digest)); err != nil {
					f.tr.t.Fatal(err)
				}
				return f.tr.fx.TypeMapPath("app", "multi2")
			},
			wantMsg: "names manifest " + "sha256:",
		},
		{
			name: "catalog entry without a repository",
			damage: func(f damaged) string {
				if err := os.WriteFile(f.tr.fx.CatalogPath(), []byte(`{"repositories":["app","ghost","other"]}`), 0o644); err != nil {
					f.tr.t.Fatal(err)
				}
				return f.tr.fx.CatalogPath()
			},
			wantMsg: "lists ghost, which is not a repository with tags",
		},
		{
			name: "index child missing",
			damage: func(f damaged) string {
				if err := os.RemoveAll(f.tr.fx.ManifestDir("app", f.ma.arm.Digest)); err != nil {
					f.tr.t.Fatal(err)
				}
				return f.tr.fx.ManifestPath("app", f.ma.idx1.Digest)
			},
			wantMsg:  "index child sha256:",
			wantMore: true, // idx2 lists it too
		},
		{
			name: "flipped byte in a manifest",
			damage: func(f damaged) string {
				p := f.tr.fx.ManifestPath("app", f.ma.amd2.Digest)
				flipByte(f.tr.t, p)
				return p
			},
			wantMsg:  "not the manifest its directory names",
			wantMore: true, // the flip may make it unparseable too
		},
		{
			name: "headers with the wrong media type",
			damage: func(f damaged) string {
				p := f.tr.fx.HeadersPath("app", f.ma.idx2.Digest)
				b, _ := os.ReadFile(p)
				if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), dockerList, ociIndex)), 0o644); err != nil {
					f.tr.t.Fatal(err)
				}
				return p
			},
			wantMsg:  "but the manifest's mediaType is",
			wantMore: true, // the tag offers it with the other type
		},
		{
			name: "tags/list behind the type maps",
			damage: func(f damaged) string {
				p := f.tr.fx.TagsListPath("app")
				if err := os.WriteFile(p, []byte(`{"name":"app","tags":["amd","multi"]}`), 0o644); err != nil {
					f.tr.t.Fatal(err)
				}
				return p
			},
			wantMsg: "lists [amd multi], the type maps are [amd multi multi2]",
		},
		{
			// Guards: _catalog's line said the repository had no tags
			// beside this one saying it had.
			name: "tags/list missing",
			damage: func(f damaged) string {
				p := f.tr.fx.TagsListPath("app")
				if err := os.Remove(p); err != nil {
					f.tr.t.Fatal(err)
				}
				return p
			},
			wantMsg: "missing: the repository has tags [amd multi multi2]",
		},
		{
			name:  "named repository missing",
			repos: []string{"app", "nope"},
			damage: func(f damaged) string {
				return f.tr.fx.RepoDir("nope")
			},
			wantMsg: "no such repository",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t)
			f := damaged{tr: tr, ma: buildMultiArch(tr)}
			f.base = desc{Digest: digest.FromBytes(layer("base", 2000))}
			tr.tag("other", "v1", tr.image("other", "v1", layer("base", 2000)))
			tr.verify() // clean before the damage
			path := tt.damage(f)
			rep, err := Verify(tr.root, tt.repos)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, p := range rep.Problems {
				if p.Path == path && strings.Contains(p.Message, tt.wantMsg) {
					found = true
				}
			}
			if !found {
				t.Errorf("problems %v lack %s: …%s…", rep.Problems, path, tt.wantMsg)
			}
			if !tt.wantMore && len(rep.Problems) != 1 {
				t.Errorf("problems %v: want exactly one", rep.Problems)
			}
		})
	}
}

func flipByte(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	// In place, as disk corruption would: the inode (and its other links)
	// changes.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}
