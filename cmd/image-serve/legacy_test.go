package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// TestLegacySymlinkTags: a tree of TripleO's 2018-12..2019-04 exporter
// holds tags as symlinks, manifests/<tag> -> the digest directory,
// relative or absolute. Guards: verify said nothing of them and a gc
// collected what they named, so the tag was lost for good. No server
// serves them before migrate (all three agree: 404), but list names them,
// gc keeps what they name,
// verify names them as legacy without failing, delete removes them, and
// an export of the tag rewrites it as a type map.
func TestLegacySymlinkTags(t *testing.T) {
	root := testserver.TempRoot(t)
	for _, tag := range []string{"rel", "abs", "kept"} {
		mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "legacy/app:"+tag)
	}
	index := "sha256:eaee5ad67319a5c29ecb93f2b4d8968d693a0ecb71f0a5c418b39d4212aea078"
	fx := tree.Fixture(root)
	manifests := filepath.Join(fx.RepoDir("legacy/app"), "manifests")
	// As TripleO left them: no type map, no nginx links, the symlink.
	for tag, target := range map[string]string{"rel": index, "abs": filepath.Join(manifests, index)} {
		for _, p := range []string{fx.TypeMapPath("legacy/app", tag), filepath.Join(manifests, ".tags", tag), filepath.Join(manifests, ".tags-fallback", tag)} {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(target, filepath.Join(manifests, tag)); err != nil {
			t.Fatal(err)
		}
	}
	// TripleO's tags/list lists the symlink tags: verify finds it out of
	// step (a gc rewrites it), names the links as legacy, and never as
	// links leading outside the tree, absolute as they are.
	r := run(t, "--root", root.Dir(), "verify")
	if strings.Contains(r.stdout, "leads outside") {
		t.Errorf("verify takes a symlink tag for a link leading outside:\n%s", r.stdout)
	}
	for _, tag := range []string{"rel", "abs"} {
		if !strings.Contains(r.stdout, "legacy: "+filepath.Join(manifests, tag)+": a TripleO symlink tag") {
			t.Errorf("verify does not name %s as legacy:\n%s", tag, r.stdout)
		}
	}
	// list names them as tags, and --long says what they are.
	if out := mustRun(t, "--root", root.Dir(), "list", "legacy/app").stdout; out != "abs\nkept\nrel\n" {
		t.Errorf("list legacy/app:\n%s\nwant abs, kept, rel", out)
	}
	long := mustRun(t, "--root", root.Dir(), "list", "--long", "legacy/app").stdout
	for _, tag := range []string{"rel", "abs"} {
		if !regexp.MustCompile(`(?m)^legacy/app:` + tag + `\s+eaee5ad67319\s+oci-index\s.*\(TripleO symlink tag: run migrate\)$`).MatchString(long) {
			t.Errorf("list --long does not show %s as a symlink tag of the index:\n%s", tag, long)
		}
	}
	if strings.Contains(long, "kept  (TripleO") || strings.Count(long, "run migrate") != 2 {
		t.Errorf("list --long marks a tag with a type map as a symlink tag:\n%s", long)
	}
	// Nothing a symlink tag reaches is collected, even without grace.
	mustRun(t, "--root", root.Dir(), "delete", "--no-prune", "legacy/app:kept")
	mustRun(t, "--root", root.Dir(), "-q", "gc", "--grace", "0")
	ds, err := fx.ManifestDigests("legacy/app")
	if err != nil || len(ds) != 3 {
		t.Errorf("after gc: %d manifests (%v), want the index and both children a symlink tag reaches", len(ds), err)
	}
	mustRun(t, "--root", root.Dir(), "verify")
	mustRun(t, "--root", root.Dir(), "-q", "delete", "legacy/app:rel")
	if exists(filepath.Join(manifests, "rel")) {
		t.Error("delete left the symlink tag")
	}
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "legacy/app:abs")
	if exists(filepath.Join(manifests, "abs")) || !exists(fx.TypeMapPath("legacy/app", "abs")) {
		t.Error("the export did not rewrite the symlink tag as a type map")
	}
	base := testserver.Embedded(t, root)
	if d, err := pullDigest(strings.TrimPrefix(base, "http://") + "/legacy/app:abs"); err != nil || d.String() != index {
		t.Errorf("pull legacy/app:abs after the export: %v, %v", d, err)
	}
	if tags, _ := fx.Tags("legacy/app"); !slices.Equal(tags, []string{"abs"}) {
		t.Errorf("tags %v, want [abs]", tags)
	}
	if r := mustRun(t, "--root", root.Dir(), "verify"); strings.Contains(r.stdout, "legacy:") {
		t.Errorf("verify still reports legacy conventions:\n%s", r.stdout)
	}
}
