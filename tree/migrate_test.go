package tree_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/internal/legacytree"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// legacyFixture is a TripleO tree with every convention Migrate rewrites.
type legacyFixture struct {
	root                *tree.Root
	single, multi, flat legacytree.Image
	deep, linked        legacytree.Image
}

func buildLegacy(t *testing.T) *legacyFixture {
	dir := t.TempDir()
	b := legacytree.New(t, dir)
	shared := legacytree.Layer(t, 2<<10)
	f := &legacyFixture{}
	f.single = b.Single("tripleomaster/nova-api", "current", "amd64", shared)
	b.Single("tripleomaster/nova-api", "previous", "amd64", legacytree.Layer(t, 1<<10))
	f.multi = b.MultiArch("tripleomaster/nova-compute", "current", []string{"amd64", "arm64"}, shared)
	f.flat = b.Single("keystone", "v1", "amd64", legacytree.Layer(t, 1<<10))
	f.deep = b.Single("a/b/c", "v1", "amd64", shared)
	f.linked = b.Untagged("tripleomaster/nova-api", "amd64", legacytree.Layer(t, 1<<10))
	b.Symlink("tripleomaster/nova-api", "abs", f.linked.Digest, true)
	b.Symlink("tripleomaster/nova-api", "rel", f.single.Digest, false)
	b.RepoHtaccess("tripleomaster/nova-api")
	b.Finish()
	b.Umask077()
	root, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f.root = root
	return f
}

func TestMigrate(t *testing.T) {
	f := buildLegacy(t)
	r := f.root
	before := testtree.Snapshot(t, r.Dir(), ".image-serve")
	inodes := blobInodes(t, r)

	dry, err := tree.Fixture(r).Migrate(true)
	if err != nil {
		t.Fatal(err)
	}
	if got := testtree.Snapshot(t, r.Dir(), ".image-serve"); got != before {
		t.Fatalf("--dry-run changed the tree:\n%s", testtree.Diff(before, got))
	}
	rep, err := tree.Fixture(r).Migrate(false)
	if err != nil {
		t.Fatal(err)
	}
	dry.DryRun = false
	if !reportsEqual(dry, rep) {
		t.Errorf("dry run said %+v, the run did %+v", dry, rep)
	}
	for name, got := range map[string]int{
		"blobs renamed":           rep.BlobsRenamed,
		"headers rewritten":       rep.HeadersRewritten,
		"type maps rewritten":     rep.TypeMapsRewritten,
		"legacy tags converted":   rep.LegacyTagsConverted,
		"listings sorted":         rep.ListingsSorted,
		"modes fixed":             rep.ModesFixed,
		"nginx links added":       rep.NginxLinksAdded,
		"repository headers gone": rep.RepoHeadersRemoved,
	} {
		if got == 0 {
			t.Errorf("%s: 0 in %+v", name, rep)
		}
	}
	if rep.LegacyTagsConverted != 2 || len(rep.Problems) != 0 {
		t.Errorf("report %+v, want 2 legacy tags and no problem", rep)
	}
	// The multi-arch tag: the list first, at qs=1, its amd64 image at 0.001.
	vs, err := r.TagVariants("tripleomaster/nova-compute", "current")
	if err != nil || len(vs) != 2 || vs[0].Digest != f.multi.Digest || vs[0].QS != 1 || vs[1].Digest != f.multi.Children["amd64"] || vs[1].QS != 0.001 {
		t.Errorf("multi-arch type map %+v, %v", vs, err)
	}
	tags, err := tree.Fixture(r).Tags("tripleomaster/nova-api")
	if want := []string{"abs", "current", "previous", "rel"}; err != nil || !slices.Equal(tags, want) {
		t.Errorf("tags %v, %v; want %v", tags, err, want)
	}
	if listed, _, _ := tree.Fixture(r).ReadTagsList("tripleomaster/nova-api"); !slices.Equal(listed, tags) {
		t.Errorf("tags/list %v, want %v", listed, tags)
	}
	if cat, _ := tree.Fixture(r).ReadCatalog(); !slices.Equal(cat, []string{"a/b/c", "keystone", "tripleomaster/nova-api", "tripleomaster/nova-compute"}) {
		t.Errorf("_catalog %v", cat)
	}
	// No byte copied: every blob name is a link of the inode it had.
	for path, in := range inodes {
		plain := trimGz(path)
		for _, p := range []string{path, plain} {
			if got := inodeOf(t, p); got != in {
				t.Errorf("%s: inode %d, the blob was %d", p, got, in)
			}
		}
	}
	if fi, err := os.Stat(tree.Fixture(r).RepoDir("keystone")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("keystone's directory: %v, %v", fi.Mode(), err)
	}
	if findings, err := tree.Fixture(r).LegacyConventions(nil); err != nil || len(findings) != 0 {
		t.Errorf("after migrate, legacy conventions %v, %v", findings, err)
	}

	migrated := testtree.Snapshot(t, r.Dir(), ".image-serve/locks")
	again, err := tree.Fixture(r).Migrate(false)
	if err != nil || again.Changes() != 0 {
		t.Errorf("second run: %+v, %v; want no change", again, err)
	}
	if got := testtree.Snapshot(t, r.Dir(), ".image-serve/locks"); got != migrated {
		t.Errorf("second run changed the tree:\n%s", testtree.Diff(migrated, got))
	}
}

// TestLegacyConventionsNamed: every convention of the fixture is named,
// with its path.
func TestLegacyConventionsNamed(t *testing.T) {
	f := buildLegacy(t)
	findings, err := tree.Fixture(f.root).LegacyConventions(nil)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[tree.LegacyKind]int{}
	for _, fd := range findings {
		kinds[fd.Kind]++
	}
	for _, k := range []tree.LegacyKind{tree.LegacyBlob, tree.LegacyHeaders, tree.LegacyRepoHeaders, tree.LegacyTypeMap,
		tree.LegacySymlinkTag, tree.LegacyTagsList, tree.LegacyCatalog, tree.LegacyMode} {
		if kinds[k] == 0 {
			t.Errorf("no %s found: %v", k, findings)
		}
	}
	if kinds[tree.LegacySymlinkTag] != 2 || kinds[tree.LegacyTypeMap] != 1 {
		t.Errorf("findings %v", kinds)
	}
}

func reportsEqual(a, b *tree.MigrateReport) bool {
	return fmt.Sprint(*a) == fmt.Sprint(*b)
}

func blobInodes(t *testing.T, r *tree.Root) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	repos, err := tree.Fixture(r).StoredRepositories()
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range repos {
		bs, err := tree.Fixture(r).Blobs(repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.Legacy {
				out[tree.Fixture(r).BlobFilePath(repo, b)] = inodeOf(t, tree.Fixture(r).BlobFilePath(repo, b))
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("the fixture has no .gz blob")
	}
	return out
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func trimGz(path string) string {
	return filepath.Join(filepath.Dir(path), digest.Digest(filepath.Base(path)[:len(filepath.Base(path))-len(".gz")]).String())
}

// TestMigrateLeavesOutsideLinksMode: a file of the tree hard-linked from
// outside keeps its mode, and migrate names it as a problem; the tree's
// own files, hard-linked across repositories, are still fixed. Guards:
// migrate chmodded a private file outside the tree (0600 → 0644) through
// a hard link planted in a blobs directory.
func TestMigrateLeavesOutsideLinksMode(t *testing.T) {
	f := buildLegacy(t)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("private"), 0o600); err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(tree.Fixture(f.root).RepoDir("keystone"), "blobs", "planted")
	if err := os.Link(outside, planted); err != nil {
		t.Fatal(err)
	}
	rep, err := tree.Fixture(f.root).Migrate(false)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(outside); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the outside file: %v, %v; want mode 0600 kept", fi.Mode(), err)
	}
	named := false
	for _, p := range rep.Problems {
		named = named || p.Path == planted
	}
	if !named {
		t.Errorf("problems %+v do not name %s", rep.Problems, planted)
	}
	// The tree's own files, a layer hard-linked across repositories
	// among them, were fixed.
	for path := range blobInodes(t, f.root) {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: %v, %v; want 0644", path, fi.Mode(), err)
		}
	}
}

// TestLegacyConventionsTagDeletedMeanwhile guards "verify exits 1 when a
// tag is deleted while it runs" (issue 17): a tag delete holds the tree
// lock shared, as verify does, so a type map may go between the moment a
// walk lists the manifests directory and the moment it looks at the
// entry. The tag is gone, not a failure: the legacy scan, a migrate plan
// and a migrate go on without it.
func TestLegacyConventionsTagDeletedMeanwhile(t *testing.T) {
	for _, dryRun := range []bool{true, false} {
		f := buildLegacy(t)
		gone := tree.Fixture(f.root).TypeMapPath("tripleomaster/nova-api", "previous")
		tree.AfterReadDir(t, func(path string) {
			if path == filepath.Dir(gone) {
				os.Remove(gone)
			}
		})
		if _, err := tree.Fixture(f.root).LegacyConventions(nil); err != nil {
			t.Fatalf("legacy conventions with a tag deleted meanwhile: %v", err)
		}
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Fatalf("the hook never ran: %s still there (%v)", gone, err)
		}
		f = buildLegacy(t)
		gone = tree.Fixture(f.root).TypeMapPath("tripleomaster/nova-api", "previous")
		if _, err := tree.Fixture(f.root).Migrate(dryRun); err != nil {
			t.Fatalf("migrate (dry run %v) with a tag deleted meanwhile: %v", dryRun, err)
		}
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Fatalf("the hook never ran in migrate: %s still there (%v)", gone, err)
		}
	}
}
