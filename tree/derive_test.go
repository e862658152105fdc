package tree

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	r, err := Open("/srv/root")
	if err != nil {
		t.Fatal(err)
	}
	const d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	for _, tc := range []struct {
		path string
		want Change
	}{
		{"/srv/root", Change{Watch: true, Tree: true}},
		{"/srv/root/v2", Change{Watch: true, Tree: true}},
		{"/srv", Change{}},
		{"/srv/rootx/v2", Change{}},
		{"/srv/root/.image-serve", Change{}},
		{"/srv/root/.image-serve/locks/repo-ns+app", Change{}},
		{"/srv/root/v2/_catalog", Change{Catalog: true}},
		{"/srv/root/v2/._catalog123", Change{}},
		{"/srv/root/v2/index.json", Change{}}, // the ping file: no repository can have that name, its directory would be this file
		{"/srv/root/v2/ns", Change{Repo: "ns", Catalog: true, Watch: true}},
		{"/srv/root/v2/ns/app", Change{Repo: "ns/app", Catalog: true, Watch: true}},
		{"/srv/root/v2/NS", Change{Catalog: true, Watch: true}}, // no repository name, maybe a directory above one
		{"/srv/root/v2/ns/app/blobs", Change{Repo: "ns/app", Catalog: true}},
		{"/srv/root/v2/ns/app/blobs/" + d, Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/manifests", Change{Repo: "ns/app", Catalog: true, Watch: true}},
		{"/srv/root/v2/ns/app/manifests/v1.type-map", Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/manifests/.v1.type-map.tmp123", Change{}},
		{"/srv/root/v2/ns/app/manifests/" + d, Change{Repo: "ns/app", Watch: true}},
		{"/srv/root/v2/ns/app/manifests/" + d + "/index.json", Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/manifests/" + d + "/.htaccess", Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/manifests/" + d + "/manifest.oci-manifest", Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/manifests/.tags", Change{}},
		{"/srv/root/v2/ns/app/manifests/.tags/v1", Change{}},
		{"/srv/root/v2/ns/app/tags", Change{Repo: "ns/app", Catalog: true, Watch: true}},
		{"/srv/root/v2/ns/app/tags/list", Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/referrers", Change{Repo: "ns/app", Catalog: true, Watch: true}},
		{"/srv/root/v2/ns/app/referrers/" + d, Change{Repo: "ns/app"}},
		{"/srv/root/v2/ns/app/sub/manifests/v1.type-map", Change{Repo: "ns/app/sub"}}, // nested repository
		{"/srv/root/v2/manifests/v1.type-map", Change{}},                              // no repository name
		{"/srv/root/v2/ns/app/tags/list/deeper", Change{}},
	} {
		if got := r.Classify(tc.path); got != tc.want {
			t.Errorf("Classify(%s) = %+v, want %+v", tc.path, got, tc.want)
		}
	}
}

// TestDeriveRepo: after changes made by hand — a type map copied in, one
// replaced, tags/list and links removed, a repository removed — DeriveRepo
// and DeriveCatalog set the derived files right, say what they changed, and
// a second run changes nothing.
func TestDeriveRepo(t *testing.T) {
	r := newTree(t)
	a := putManifest(t, r, "ns/app", mtOCIManifest, "a")
	b := putManifest(t, r, "ns/app", mtOCIManifest, "b")
	if err := r.putTag("ns/app", "v1", []TagVariant{{Digest: a, MediaType: mtOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	derive := func(repo string) Derived {
		t.Helper()
		l, err := r.lockExclusive()
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock()
		d, err := r.deriveRepo(repo)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := r.deriveRepo(repo); err != nil || again.Changed() {
			t.Errorf("a second DeriveRepo(%s) changed %+v (%v)", repo, again, err)
		}
		return d
	}
	if d := derive("ns/app"); d.Changed() {
		t.Errorf("DeriveRepo of an exported repository changed %+v", d)
	}

	// An rsync adds tag v2 (a type map naming b) and drops b's typed link.
	typeMap, err := os.ReadFile(r.typeMapPath("ns/app", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.ReplaceAll(string(typeMap), a.String(), b.String())
	writeFile(t, r.typeMapPath("ns/app", "v2"), []byte(strings.ReplaceAll(v2, "URI: v1", "URI: v2")))
	typed, _ := r.typedManifestPath("ns/app", b, mtOCIManifest)
	if err := os.Remove(typed); err != nil {
		t.Fatal(err)
	}
	d := derive("ns/app")
	if want := (Derived{Repo: "ns/app", TagsList: true, TagLinks: 2, Typed: 1}); !reflect.DeepEqual(d, want) {
		t.Errorf("after a new type map: %+v, want %+v", d, want)
	}
	if tags, _, _ := r.readTagsList("ns/app"); !slices.Equal(tags, []string{"v1", "v2"}) {
		t.Errorf("tags/list %v, want v1 v2", tags)
	}
	wantLinks(t, r, "ns/app", "v2", b, b)

	// v1's type map replaced to name b: both links re-pointed, tags/list
	// unchanged.
	writeFile(t, r.typeMapPath("ns/app", "v1"), []byte(strings.ReplaceAll(string(typeMap), a.String(), b.String())))
	if d := derive("ns/app"); !reflect.DeepEqual(d, Derived{Repo: "ns/app", TagLinks: 2}) {
		t.Errorf("after a replaced type map: %+v, want 2 tag links", d)
	}
	wantLinks(t, r, "ns/app", "v1", b, b)

	// A referrer copied in without its index.
	s := putReferrer(t, r, "ns/app", mtOCIManifest, a, map[string]any{"artifactType": "application/x-sig"})
	if d := derive("ns/app"); !reflect.DeepEqual(d, Derived{Repo: "ns/app", Referrers: 1}) {
		t.Errorf("after a referrer without its index: %+v, want 1 referrers index", d)
	}
	if got, _ := readIndex(t, r, "ns/app", a); len(got) != 1 || got[0].Digest != s.Digest {
		t.Errorf("referrers of %s: %v, want %s", a, got, s.Digest)
	}

	// A manifest's .htaccess removed: written again from its bytes, as
	// the export wrote it, and nothing else changes.
	exported, err := os.ReadFile(r.headersPath("ns/app", a))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.headersPath("ns/app", a)); err != nil {
		t.Fatal(err)
	}
	if d := derive("ns/app"); !reflect.DeepEqual(d, Derived{Repo: "ns/app", Headers: 1}) {
		t.Errorf("after removing a manifest's headers: %+v, want 1 header", d)
	}
	if got, err := os.ReadFile(r.headersPath("ns/app", a)); err != nil || string(got) != string(exported) {
		t.Errorf("headers written again: %q, %v; want %q", got, err, exported)
	}

	// Every type map removed by hand: a deletion to watch. tags/list and
	// the links go, each tag is named with what nginx served, and the
	// catalog drops the repository.
	for _, tag := range []string{"v1", "v2"} {
		if err := os.Remove(r.typeMapPath("ns/app", tag)); err != nil {
			t.Fatal(err)
		}
	}
	want := Derived{Repo: "ns/app", TagsList: true, TagLinks: 4, Removed: []RemovedTag{{"v1", b}, {"v2", b}}}
	if d := derive("ns/app"); !reflect.DeepEqual(d, want) {
		t.Errorf("after removing every type map: %+v, want %+v", d, want)
	}
	c, err := r.deriveCatalog()
	if err != nil || !c.Rewritten || len(c.Added) != 0 || !slices.Equal(c.Removed, []string{"ns/app"}) {
		t.Errorf("DeriveCatalog: %+v, %v; want ns/app removed", c, err)
	}
	if c, err := r.deriveCatalog(); err != nil || c.Rewritten {
		t.Errorf("a second DeriveCatalog: %+v, %v", c, err)
	}

	// A repository removed with rm -r: nothing to derive, not even a lock
	// file; a name that is no repository directory neither.
	if err := os.RemoveAll(r.repoDir("ns/app")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.repoLockPath("ns/app")); err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"ns/app", "ns"} {
		if d := derive(repo); d.Changed() {
			t.Errorf("DeriveRepo(%s) of no repository: %+v", repo, d)
		}
		if _, err := os.Lstat(r.repoLockPath(repo)); err == nil {
			t.Errorf("DeriveRepo(%s) of no repository made its lock file", repo)
		}
	}
}

// TestWatchDirs: the directories a watcher watches below each level, and
// never a symlink or a dot directory.
func TestWatchDirs(t *testing.T) {
	r := newTree(t)
	a := putManifest(t, r, "ns/app", mtOCIManifest, "a")
	if err := r.putTag("ns/app", "v1", []TagVariant{{Digest: a, MediaType: mtOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(r.repoDir("ns/app"), blobsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(r.repoDir("ns"), filepath.Join(r.v2Dir(), "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dir  string
		want []string
	}{
		{r.Dir(), []string{r.v2Dir()}},
		{r.v2Dir(), []string{r.repoDir("ns")}},
		{r.repoDir("ns"), []string{r.repoDir("ns/app")}},
		{r.repoDir("ns/app"), []string{r.manifestsDir("ns/app"), filepath.Dir(r.tagsListPath("ns/app"))}},
		{r.manifestsDir("ns/app"), []string{r.manifestDir("ns/app", a)}},
		{r.manifestDir("ns/app", a), nil},
		{r.repoDir("gone"), nil},
	} {
		got, err := r.WatchDirs(tc.dir)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("WatchDirs(%s) = %q, %v; want %q", tc.dir, got, err, tc.want)
		}
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(p), ".rsync-tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}
