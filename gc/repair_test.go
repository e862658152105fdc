package gc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// TestRepairNeverLosesATag damages a tree one way at a time and repairs
// it. What the tree still records is restored as an export writes it —
// a type map from nginx's links (before anything rewrites them from the
// type maps), headers from the manifest's bytes — and a tag that cannot
// be restored is named, with why, and counted as a problem left. Guards:
// repair rewrote tags/list and nginx's links from the remaining type maps,
// dropping a tag whose type map was removed, and exited 0.
func TestRepairNeverLosesATag(t *testing.T) {
	type damaged struct {
		tr *fixture
		ma multiArch
		v1 desc // other:v1, an image no index lists
	}
	rm := func(t testing.TB, paths ...string) {
		for _, p := range paths {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name         string
		damage       func(f damaged)
		wantRestored []RestoredTag
		wantLost     []string // REPO:TAG
		lostWhy      string   // in the first lost tag's reason
		wantRewrite  []string // in Rewritten, each as a suffix
		gone         []string // REPO:TAG no longer in tags/list
		broken       []string // REPO:TAG left for an export: named, and still recorded
	}{
		{
			name:         "an image tag's type map removed",
			damage:       func(f damaged) { rm(f.tr.t, f.tr.fx.TypeMapPath("other", "v1")) },
			wantRestored: []RestoredTag{{"other:v1", tree.FromLinks}},
		},
		{
			name:         "a multi-arch tag's type map removed",
			damage:       func(f damaged) { rm(f.tr.t, f.tr.fx.TypeMapPath("app", "multi2")) },
			wantRestored: []RestoredTag{{"app:multi2", tree.FromLinks}},
		},
		{
			name: "every type map of a repository removed, tags/list too",
			damage: func(f damaged) {
				for _, tag := range []string{"amd", "multi", "multi2"} {
					rm(f.tr.t, f.tr.fx.TypeMapPath("app", tag))
				}
				rm(f.tr.t, f.tr.fx.TagsListPath("app"))
			},
			wantRestored: []RestoredTag{{"app:amd", tree.FromLinks}, {"app:multi", tree.FromLinks}, {"app:multi2", tree.FromLinks}},
		},
		{
			name: "type map and main link removed: the fallback names the image",
			damage: func(f damaged) {
				rm(f.tr.t, f.tr.fx.TypeMapPath("other", "v1"), f.tr.fx.TagLinkPath("other", "v1"))
			},
			wantRestored: []RestoredTag{{"other:v1", tree.FromLinks}},
		},
		{
			name: "type map and main link removed: the fallback names an index's child",
			damage: func(f damaged) {
				rm(f.tr.t, f.tr.fx.TypeMapPath("app", "amd"), f.tr.fx.TagLinkPath("app", "amd"))
			},
			wantLost: []string{"app:amd"},
			lostWhy:  "only nginx's fallback link was left",
			gone:     []string{"app:amd"},
		},
		{
			name: "type map and both links removed, tags/list left",
			damage: func(f damaged) {
				rm(f.tr.t, f.tr.fx.TypeMapPath("app", "multi"), f.tr.fx.TagLinkPath("app", "multi"), f.tr.fx.FallbackLinkPath("app", "multi"))
			},
			wantLost: []string{"app:multi"},
			lostWhy:  "tags/list listed it, but no nginx link named its manifest",
			gone:     []string{"app:multi"},
		},
		{
			name: "type map removed, the link's manifest too",
			damage: func(f damaged) {
				rm(f.tr.t, f.tr.fx.TypeMapPath("other", "v1"))
				if err := os.RemoveAll(f.tr.fx.ManifestDir("other", f.v1.Digest)); err != nil {
					f.tr.t.Fatal(err)
				}
			},
			wantLost: []string{"other:v1"},
			lostWhy:  "which is not in the repository",
			gone:     []string{"other:v1"},
		},
		{
			name: "a type map emptied",
			damage: func(f damaged) {
				writeFile(f.tr.t, f.tr.fx.TypeMapPath("app", "multi"), "")
			},
			wantRestored: []RestoredTag{{"app:multi", tree.FromLinks}},
		},
		{
			name: "a type map emptied, and its links removed",
			damage: func(f damaged) {
				writeFile(f.tr.t, f.tr.fx.TypeMapPath("other", "v1"), "")
				rm(f.tr.t, f.tr.fx.TagLinkPath("other", "v1"), f.tr.fx.FallbackLinkPath("other", "v1"))
			},
			broken: []string{"other:v1"},
		},
		{
			name:        "a manifest's .htaccess removed",
			damage:      func(f damaged) { rm(f.tr.t, f.tr.fx.HeadersPath("app", f.ma.idx2.Digest)) },
			wantRewrite: []string{"@" + "%idx2" + " .htaccess"},
		},
		{
			name: "headers naming another digest",
			damage: func(f damaged) {
				p := f.tr.fx.HeadersPath("app", f.ma.amd.Digest)
				b, _ := os.ReadFile(p)
				writeFile(f.tr.t, p, strings.ReplaceAll(string(b), f.ma.amd.Digest.String(), f.ma.arm.Digest.String()))
			},
			wantRewrite: []string{"@" + "%amd" + " .htaccess"},
		},
		{
			name: "headers and type map removed together",
			damage: func(f damaged) {
				rm(f.tr.t, f.tr.fx.HeadersPath("app", f.ma.idx1.Digest), f.tr.fx.TypeMapPath("app", "multi"))
			},
			wantRestored: []RestoredTag{{"app:multi", tree.FromLinks}},
			wantRewrite:  []string{"@" + "%idx1" + " .htaccess"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t)
			f := damaged{tr: tr, ma: buildMultiArch(tr)}
			f.v1 = tr.image("other", "v1", layer("base", 2000))
			tr.tag("other", "v1", f.v1)
			tr.tag("other", "v2", tr.image("other", "v2", layer("v2", 100)))
			tr.verify()
			before := snapshotTags(t, tr.root)
			tt.damage(f)

			rep, err := Repair(tr.root, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Restored, orEmpty(tt.wantRestored)) {
				t.Errorf("restored %v, want %v", rep.Restored, tt.wantRestored)
			}
			var lost []string
			for _, l := range rep.Lost {
				lost = append(lost, l.Tag)
			}
			if !slices.Equal(lost, tt.wantLost) {
				t.Errorf("lost %v, want %v", rep.Lost, tt.wantLost)
			}
			if len(rep.Lost) > 0 && !strings.Contains(rep.Lost[0].Why, tt.lostWhy) {
				t.Errorf("lost %s because %q, want …%s…", rep.Lost[0].Tag, rep.Lost[0].Why, tt.lostWhy)
			}
			for _, tag := range tt.wantLost {
				if !slices.Contains(rep.NeedExport, tag) {
					t.Errorf("need export %v lacks the lost %s", rep.NeedExport, tag)
				}
			}
			if got := rep.ProblemsLeft(); tt.broken == nil && got != len(tt.wantLost) {
				t.Errorf("%d problems left (%v), want one per lost tag, %d", got, rep.Verify.Problems, len(tt.wantLost))
			}
			for _, tag := range tt.broken {
				repo, name, _ := strings.Cut(tag, ":")
				listed, _, _ := tr.fx.ReadTagsList(repo)
				// Named, a problem, and not listed: a listed tag must pull.
				if !slices.Contains(rep.NeedExport, tag) || rep.ProblemsLeft() == 0 || slices.Contains(listed, name) {
					t.Errorf("need export %v, problems %v, tags/list %v: want %s named, a problem, and not listed", rep.NeedExport, rep.Verify.Problems, listed, tag)
				}
			}
			for _, w := range tt.wantRewrite {
				w = strings.NewReplacer("%idx1", f.ma.idx1.Digest.String(), "%idx2", f.ma.idx2.Digest.String(), "%amd", f.ma.amd.Digest.String()).Replace(w)
				if !slices.ContainsFunc(rep.Rewritten, func(s string) bool { return strings.HasSuffix(s, w) }) {
					t.Errorf("rewritten %v lacks …%s", rep.Rewritten, w)
				}
			}
			if tt.broken != nil {
				return
			}
			// Everything not lost is byte for byte what the export wrote:
			// type maps, headers, tags/list, nginx's links, _catalog.
			after := snapshotTags(t, tr.root)
			for path, b := range before {
				if slices.ContainsFunc(tt.gone, func(ref string) bool { return recordOf(tr.root, ref, path) }) {
					if _, ok := after[path]; ok && !strings.HasSuffix(path, "tags/list") {
						t.Errorf("%s of a lost tag is still there", path)
					}
					continue
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), "index.json")); strings.HasSuffix(path, ".htaccess") && err != nil {
					continue // the damage removed the manifest
				}
				if after[path] != b {
					t.Errorf("%s after repair:\n%s\nwant, as exported:\n%s", path, after[path], b)
				}
			}
			for _, ref := range tt.gone {
				repo, tag, _ := strings.Cut(ref, ":")
				if listed, _, _ := tr.fx.ReadTagsList(repo); slices.Contains(listed, tag) {
					t.Errorf("tags/list of %s still lists the lost %s: %v", repo, tag, listed)
				}
			}
			if again, err := Repair(tr.root, nil); err != nil || len(again.Restored)+len(again.Lost)+len(again.Rewritten) > 0 || again.ProblemsLeft() > 0 {
				t.Errorf("a second repair: %+v, %v; want nothing to do", again, err)
			}
		})
	}
}

// TestRepairSalvagesBeforeJournals: a tag move a crash interrupted is
// finished before repair's own work, and finishing it rewrites the
// repository's nginx links from its type maps. A tag of that repository
// whose type map is gone is restored first, so the move does not drop it;
// a tag the journal moves is left to the journal.
func TestRepairSalvagesBeforeJournals(t *testing.T) {
	tr := newTree(t)
	a := tr.image("app", "a", layer("a", 100))
	b := tr.image("app", "b", layer("b", 100))
	tr.tag("app", "kept", a)
	tr.tag("app", "moved", a)
	// A batch that meant to move "moved" to b died after its journal, and
	// both type maps are lost since.
	j := map[string]any{"tags": []map[string]any{{
		"repo": "app", "tag": "moved", "existed": true,
		"variants": []tree.TagVariant{{Digest: b.Digest, MediaType: ociManifest}},
		"previous": []tree.TagVariant{{Digest: a.Digest, MediaType: ociManifest}},
	}}}
	raw, _ := json.Marshal(j)
	dir := filepath.Join(tr.root.Dir(), ".image-serve", "journal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "crashed.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"kept", "moved"} {
		if err := os.Remove(tr.fx.TypeMapPath("app", tag)); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := Repair(tr.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Both come back from the links: a journal moves a tag only from
	// where its batch left it, and a lost type map is not there. The
	// journal then finishes "moved" from its restored target to b.
	want := []RestoredTag{{"app:kept", tree.FromLinks}, {"app:moved", tree.FromLinks}}
	if !slices.Equal(rep.Restored, want) || len(rep.Lost) > 0 || rep.ProblemsLeft() > 0 {
		t.Errorf("restored %v, lost %v, problems %v; want %v and nothing else", rep.Restored, rep.Lost, rep.Verify.Problems, want)
	}
	for tag, d := range map[string]digest.Digest{"kept": a.Digest, "moved": b.Digest} {
		vs, err := tr.fx.TagVariants("app", tag)
		if err != nil || len(vs) != 1 || vs[0].Digest != d {
			t.Errorf("app:%s offers %v (%v), want %s", tag, vs, err, d)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		t.Errorf("the journal is still there: %v", entries)
	}
}

// snapshotTags reads what a tag is made of in every repository: type maps,
// tags/list, nginx's tag links, every manifest's headers, and _catalog.
func snapshotTags(t *testing.T, r *tree.Root) map[string]string {
	t.Helper()
	out := map[string]string{}
	fx := tree.Fixture(r)
	err := filepath.WalkDir(fx.V2Dir(), func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[p] = "-> " + target
			return err
		case e.Type().IsRegular() && (strings.HasSuffix(p, ".type-map") || strings.HasSuffix(p, "/tags/list") ||
			strings.HasSuffix(p, "/.htaccess") || p == fx.CatalogPath()):
			b, err := os.ReadFile(p)
			out[p] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recordOf reports whether path is one of the records of tag REPO:TAG:
// its type map, nginx's links, its repository's tags/list.
func recordOf(r *tree.Root, ref, path string) bool {
	repo, tag, _ := strings.Cut(ref, ":")
	fx := tree.Fixture(r)
	return path == fx.TypeMapPath(repo, tag) || path == fx.TagLinkPath(repo, tag) ||
		path == fx.FallbackLinkPath(repo, tag) || path == fx.TagsListPath(repo)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
