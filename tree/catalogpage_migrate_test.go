package tree_test

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/image-serve/image-serve/tree"
)

// TestPageFollowsMigrate: once migrate ran, the catalog page lists the
// tags it rewrote, exactly those of tags/list.
func TestPageFollowsMigrate(t *testing.T) {
	f := buildLegacy(t)
	if _, err := tree.Fixture(f.root).Migrate(false); err != nil {
		t.Fatal(err)
	}
	var want []string
	if err := f.root.Inspect(func(v *tree.View) error {
		repos, err := v.Repositories()
		if err != nil {
			return err
		}
		for _, repo := range repos {
			tags, err := v.ListableTags(repo)
			if err != nil {
				return err
			}
			for _, tag := range tags {
				want = append(want, repo+":"+tag)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(tree.Fixture(f.root).PagePath())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^<tr><td>([^<]*)<td>`).FindAllStringSubmatch(string(page), -1) {
		got = append(got, m[1])
	}
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("after migrate the page lists %q, want %q", got, want)
	}
}
