package gc

import (
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/legacytree"
	"github.com/image-serve/image-serve/tree"
)

// TestVerifyNamesLegacyConventions: a tree as TripleO's exporter left it
// holds no damage. Guards: verify failed such a tree on its unsorted
// tags/list, its two-level _catalog and its list-typed children, and
// said nothing of .gz layers, ETag headers, size-ranked type maps or
// 0700 directories. Now each convention is one legacy line naming its
// path and "run migrate", no problem is reported, and after migrate
// nothing is legacy.
func TestVerifyNamesLegacyConventions(t *testing.T) {
	dir := t.TempDir()
	b := legacytree.New(t, dir)
	shared := legacytree.Layer(t, 1<<10)
	b.Single("tripleomaster/nova-api", "current", "amd64", shared)
	b.Single("tripleomaster/nova-api", "previous", "amd64", legacytree.Layer(t, 1<<10))
	old := b.Untagged("tripleomaster/nova-api", "amd64", legacytree.Layer(t, 1<<10))
	b.Symlink("tripleomaster/nova-api", "2019", old.Digest, true)
	b.MultiArch("tripleomaster/nova-compute", "current", []string{"amd64", "arm64"}, shared)
	b.Single("keystone", "v1", "amd64", legacytree.Layer(t, 1<<10))
	b.RepoHtaccess("tripleomaster/nova-api")
	b.Finish()
	b.Umask077()
	root, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 {
		t.Errorf("verify reports legacy conventions as problems: %v", rep.Problems)
	}
	fx := tree.Fixture(root)
	for _, want := range []struct{ path, says string }{
		{fx.LegacyBlobPath("keystone", ""), "<digest>.gz"},
		{"/manifests/sha256:", "unquoted ETag"},
		{"tripleomaster/nova-api/manifests/.htaccess", "per-repository .htaccess"},
		{fx.TypeMapPath("tripleomaster/nova-compute", "current"), "without qs"},
		{fx.LegacyTagPath("tripleomaster/nova-api", "2019"), "symlink tag"},
		{fx.TagsListPath("tripleomaster/nova-api"), "unsorted, or listing symlink tags"},
		{fx.CatalogPath(), "two-level"},
		{fx.RepoDir("keystone"), "umask of 077"},
	} {
		found := false
		for _, l := range rep.Legacy {
			if strings.Contains(l.Path, strings.TrimSuffix(want.path, ".gz")) && strings.Contains(l.Message, want.says) && strings.HasSuffix(l.Message, "legacy, run migrate") {
				found = true
			}
		}
		if !found {
			t.Errorf("no legacy line for %s saying %q:\n%v", want.path, want.says, rep.Legacy)
		}
	}
	if _, err := fx.Migrate(false); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(root, nil)
	if err != nil || len(rep.Problems)+len(rep.Legacy) > 0 {
		t.Errorf("after migrate: %v, problems %v, legacy %v", err, rep.Problems, rep.Legacy)
	}
}
