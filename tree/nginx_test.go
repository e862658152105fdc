package tree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	mtOCIManifest = "application/vnd.oci.image.manifest.v1+json"
	mtOCIIndex    = "application/vnd.oci.image.index.v1+json"
	mtDockerV2    = "application/vnd.docker.distribution.manifest.v2+json"
)

// putManifest stores a small manifest of type mt and returns its digest.
func putManifest(t *testing.T, r *Root, repo, mt, body string) digest.Digest {
	t.Helper()
	raw := []byte(`{"mediaType":"` + mt + `","x":"` + body + `"}`)
	d := digest.FromBytes(raw)
	if err := r.putManifest(repo, d, mt, raw); err != nil {
		t.Fatal(err)
	}
	return d
}

// typedLinks lists the typed links in manifest d's directory.
func typedLinks(t *testing.T, r *Root, repo string, d digest.Digest) []string {
	t.Helper()
	entries, err := os.ReadDir(r.manifestDir(repo, d))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), typedLinkPrefix) || strings.HasPrefix(e.Name(), "."+typedLinkPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestPutManifestTypedLink(t *testing.T) {
	r := newTree(t)
	d := putManifest(t, r, "ns/app", mtOCIManifest, "a")
	p, ok := r.typedManifestPath("ns/app", d, mtOCIManifest)
	if !ok || !r.sameInode(p, r.manifestPath("ns/app", d)) {
		t.Fatalf("typed link %s: not a hard link of index.json", p)
	}
	if got := typedLinks(t, r, "ns/app", d); len(got) != 1 || got[0] != "manifest.oci-manifest" {
		t.Errorf("typed links %q, want only manifest.oci-manifest", got)
	}

	// index.json republished as another inode (a legacy or repaired tree):
	// the stale link is replaced, and no temporary name stays behind.
	raw, _ := os.ReadFile(r.manifestPath("ns/app", d))
	if err := os.Remove(r.manifestPath("ns/app", d)); err != nil {
		t.Fatal(err)
	}
	if err := r.putManifest("ns/app", d, mtOCIManifest, raw); err != nil {
		t.Fatal(err)
	}
	if !r.sameInode(p, r.manifestPath("ns/app", d)) {
		t.Error("stale typed link kept after index.json was republished")
	}
	if got := typedLinks(t, r, "ns/app", d); len(got) != 1 {
		t.Errorf("typed links %q after a republish, want one", got)
	}

	// The same bytes recorded under another type: one link, the new one.
	if err := r.putManifest("ns/app", d, mtDockerV2, raw); err != nil {
		t.Fatal(err)
	}
	if got := typedLinks(t, r, "ns/app", d); len(got) != 1 || got[0] != "manifest.docker-v2" {
		t.Errorf("typed links %q after a new media type, want only manifest.docker-v2", got)
	}
}

// TestPutManifestUnknownType: a type nginx has no extension for is stored
// for Apache and the embedded server, without a typed link.
func TestPutManifestUnknownType(t *testing.T) {
	r := newTree(t)
	d := putManifest(t, r, "ns/app", "application/vnd.example.thing+json", "a")
	if _, ok := r.typedManifestPath("ns/app", d, "application/vnd.example.thing+json"); ok {
		t.Error("TypedManifestPath has a path for an unknown type")
	}
	if got := typedLinks(t, r, "ns/app", d); len(got) != 0 {
		t.Errorf("typed links %q for an unknown type, want none", got)
	}
}

// readLink returns a symlink's content, "" if there is none.
func readLink(t *testing.T, path string) string {
	t.Helper()
	s, err := os.Readlink(path)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantLinks(t *testing.T, r *Root, repo, tag string, main, fallback digest.Digest) {
	t.Helper()
	want := func(d digest.Digest) string {
		if d == "" {
			return ""
		}
		return "../" + d.String()
	}
	if got := readLink(t, r.tagLinkPath(repo, tag)); got != want(main) {
		t.Errorf("%s: %q, want %q", r.tagLinkPath(repo, tag), got, want(main))
	}
	if got := readLink(t, r.fallbackLinkPath(repo, tag)); got != want(fallback) {
		t.Errorf("%s: %q, want %q", r.fallbackLinkPath(repo, tag), got, want(fallback))
	}
}

func TestTagLinks(t *testing.T) {
	r := newTree(t)
	const repo = "ns/app"
	amd := putManifest(t, r, repo, mtOCIManifest, "amd64")
	idx := putManifest(t, r, repo, mtOCIIndex, "index")
	put := func(tag string, vs ...TagVariant) {
		t.Helper()
		if err := r.putTag(repo, tag, vs); err != nil {
			t.Fatal(err)
		}
	}
	put("single", TagVariant{Digest: amd, MediaType: mtOCIManifest})
	wantLinks(t, r, repo, "single", amd, amd)
	put("multi", TagVariant{Digest: idx, MediaType: mtOCIIndex, QS: 1}, TagVariant{Digest: amd, MediaType: mtOCIManifest, QS: 0.001})
	wantLinks(t, r, repo, "multi", idx, amd)
	// an index without an image variant falls back to itself
	put("idx", TagVariant{Digest: idx, MediaType: mtOCIIndex})
	wantLinks(t, r, repo, "idx", idx, idx)

	// the symlinks resolve to the manifest directories
	if fi, err := os.Stat(filepath.Join(r.tagLinkPath(repo, "multi"), "manifest.oci-index")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("multi does not resolve to the index's typed link: %v", err)
	}

	put("single", TagVariant{Digest: idx, MediaType: mtOCIIndex})
	wantLinks(t, r, repo, "single", idx, idx)

	if err := r.deleteTag(repo, "single"); err != nil {
		t.Fatal(err)
	}
	wantLinks(t, r, repo, "single", "", "")
	wantLinks(t, r, repo, "multi", idx, amd)
	if err := r.deleteTag(repo, "single"); !errors.Is(err, ErrTagUnknown) {
		t.Errorf("second DeleteTag = %v, want ErrTagUnknown", err)
	}
	if err := r.deleteTag("ns/none", "x"); !errors.Is(err, ErrTagUnknown) {
		t.Errorf("DeleteTag in an unknown repository = %v, want ErrTagUnknown", err)
	}
	if tags, _ := r.tags(repo); strings.Join(tags, ",") != "idx,multi" {
		t.Errorf("Tags = %q: the link directories must not count as tags", tags)
	}
}

// TestTagLinksRepaired: links a crashed writer left out of step with the
// type maps are set right by the next update of the repository.
func TestTagLinksRepaired(t *testing.T) {
	r := newTree(t)
	const repo = "ns/app"
	a := putManifest(t, r, repo, mtOCIManifest, "a")
	b := putManifest(t, r, repo, mtOCIManifest, "b")
	if err := r.putTag(repo, "v1", []TagVariant{{Digest: a, MediaType: mtOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	// A crash before v1's type map moved to b; another before "gone" got
	// its type map; a tree written before nginx support lacks "old"'s links.
	if err := r.publishSymlink("../"+b.String(), r.tagLinkPath(repo, "v1")); err != nil {
		t.Fatal(err)
	}
	if err := r.publishSymlink("../"+b.String(), r.tagLinkPath(repo, "gone")); err != nil {
		t.Fatal(err)
	}
	m := []byte("URI: old\n\nContent-Type: " + mtOCIManifest + "\nURI: " + a.String() + "/index.json\n\n")
	if err := os.WriteFile(r.typeMapPath(repo, "old"), m, 0o644); err != nil {
		t.Fatal(err)
	}

	if err := r.putTag(repo, "v2", []TagVariant{{Digest: b, MediaType: mtOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	wantLinks(t, r, repo, "v1", a, a)
	wantLinks(t, r, repo, "gone", "", "")
	wantLinks(t, r, repo, "old", a, a)
	wantLinks(t, r, repo, "v2", b, b)
}

// TestLinkForNginx backfills a tree written without any nginx link.
func TestLinkForNginx(t *testing.T) {
	r := newTree(t)
	const repo = "ns/app"
	d := putManifest(t, r, repo, mtOCIManifest, "a")
	if err := r.putTag(repo, "v1", []TagVariant{{Digest: d, MediaType: mtOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(r.manifestDir(repo, d), "manifest.oci-manifest"),
		filepath.Join(r.manifestsDir(repo), tagLinksDir),
		filepath.Join(r.manifestsDir(repo), fallbackLinksDir),
	} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.linkForNginxShared()
	if err != nil {
		t.Fatal(err)
	}
	if n.Manifests != 1 || n.Repos != 1 {
		t.Errorf("LinkForNginx = %+v, want 1 manifest in 1 repository", n)
	}
	wantLinks(t, r, repo, "v1", d, d)
	if got := typedLinks(t, r, repo, d); len(got) != 1 {
		t.Errorf("typed links %q, want one", got)
	}
	if n, err := r.linkForNginxShared(); err != nil || n.Manifests != 0 {
		t.Errorf("second LinkForNginx = %+v, %v; want nothing to do", n, err)
	}
}

// TestSweepTempSymlinks: a tag link's temporary symlink, left by a writer
// killed before its rename, is swept like a temporary file.
func TestSweepTempSymlinks(t *testing.T) {
	r := newTree(t)
	tmp := filepath.Join(r.manifestsDir("ns/app"), tagLinksDir, ".v1123456")
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../sha256:"+strings.Repeat("a", 64), tmp); err != nil {
		t.Fatal(err)
	}
	if n, err := r.sweepTemps(); err != nil || n != 1 {
		t.Fatalf("sweepTemps = %d, %v; want 1", n, err)
	}
	if _, err := os.Lstat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s survived the sweep", tmp)
	}
}
