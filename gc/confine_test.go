package gc_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
)

// The hostile tree these tests run on: internal/hostiletree builds it.
type hostileTree = hostiletree.Tree

func buildHostileTree(t *testing.T, relative bool) *hostileTree {
	return hostiletree.Build(t, relative)
}

func watch(t *testing.T, dir string) func() []string { return hostiletree.Watch(t, dir) }

// linkKinds runs test on a hostile tree of absolute links, and on one of
// relative links climbing out with "..".
func linkKinds(t *testing.T, test func(t *testing.T, h *hostileTree)) {
	for _, kind := range []struct {
		name     string
		relative bool
	}{{"absolute", false}, {"relative", true}} {
		t.Run(kind.name, func(t *testing.T) { test(t, buildHostileTree(t, kind.relative)) })
	}
}

// untouched runs do and fails when it accessed anything outside the
// root, or changed it.
func untouched(t *testing.T, h *hostileTree, do func()) {
	t.Helper()
	before := h.Snapshot(t)
	events := watch(t, h.Outside)
	do()
	if ev := events(); len(ev) > 0 {
		t.Errorf("accessed outside the root:\n%s", strings.Join(ev, "\n"))
	}
	if after := h.Snapshot(t); after != before {
		t.Errorf("outside the root changed:\n%s", testtree.Diff(before, after))
	}
}

// problemPaths are the paths of the problems that say a link leads
// outside the tree.
func problemPaths(ps []gc.Problem) []string {
	var out []string
	for _, p := range ps {
		if strings.Contains(p.Message, "outside the tree") {
			out = append(out, p.Path)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func later() time.Time { return time.Now().Add(2 * time.Hour) }

// TestVerifyReportsOutsideLinks: verify reports every planted link as a
// problem at its path, once, and reads nothing through it.
func TestVerifyReportsOutsideLinks(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.Root
		var all []string
		for p := range h.Links {
			all = append(all, p)
		}
		fx := tree.Fixture(r)
		tests := []struct {
			repos []string
			want  []string
		}{
			{nil, all},
			{[]string{"evil"}, []string{fx.RepoDir("evil")}},
			{[]string{"blobsdir", "nginx"}, []string{filepath.Join(fx.RepoDir("blobsdir"), "blobs"), filepath.Join(fx.RepoDir("nginx"), "manifests", ".tags")}},
			{[]string{"app"}, []string{fx.BlobPath("app", h.Marker), fx.TypeMapPath("app", "evil"), fx.ManifestPath("app", h.M), fx.ReferrersPath("app", h.M)}},
			{[]string{"headers", "mdir", "tagslist"}, []string{fx.ManifestDir("mdir", h.M), fx.HeadersPath("headers", h.Images["headers"]), fx.TagsListPath("tagslist")}},
		}
		untouched(t, h, func() {
			// Verify waits for disagreements to settle: let the waits
			// overlap. The group returns when every verify has.
			t.Run("verify", func(t *testing.T) {
				for _, tt := range tests {
					if tt.repos != nil {
						tt.want = append(tt.want, fx.CatalogPath()) // _catalog is checked whatever the repositories
					}
					slices.Sort(tt.want)
					t.Run(fmt.Sprint(tt.repos), func(t *testing.T) {
						t.Parallel()
						rep, err := gc.Verify(r, tt.repos)
						if err != nil {
							t.Fatal(err)
						}
						if got := problemPaths(rep.Problems); !slices.Equal(got, tt.want) {
							t.Errorf("links leading outside reported at\n%s\nwant\n%s\nall problems: %v", strings.Join(got, "\n"), strings.Join(tt.want, "\n"), rep.Problems)
						}
						seen := map[string]bool{}
						for _, p := range rep.Problems {
							if h.Links[p.Path] != "" && seen[p.Path] {
								t.Errorf("%s reported twice", p.Path)
							}
							seen[p.Path] = true
						}
					})
				}
			})
		})
	})
}

// TestCollectLeavesOutsideAlone: a collection, dry or not, of a tree with
// planted links reads and removes nothing outside the root, and leaves
// the repositories whose layout leads outside unswept, with a problem.
func TestCollectLeavesOutsideAlone(t *testing.T) {
	for _, dry := range []bool{true, false} {
		t.Run(fmt.Sprintf("dry-run=%v", dry), func(t *testing.T) {
			linkKinds(t, func(t *testing.T, h *hostileTree) {
				r := h.Root
				fx := tree.Fixture(r)
				untouched(t, h, func() {
					rep, err := gc.Collect(r, gc.Options{Now: later, DryRun: dry, Jobs: 1})
					var pe *gc.ProblemsError
					if !errors.As(err, &pe) {
						t.Fatalf("Collect: %v, want the problems", err)
					}
					got := problemPaths(rep.Problems)
					for _, p := range []string{fx.ManifestPath("app", h.M), filepath.Join(fx.RepoDir("blobsdir"), "blobs"), filepath.Join(fx.RepoDir("nginx"), "manifests", ".tags")} {
						if !slices.Contains(got, p) {
							t.Errorf("Collect: no problem at %s; problems: %v", p, rep.Problems)
						}
					}
				})
				for _, p := range []string{fx.TagsListPath("blobsdir"), fx.TagsListPath("nginx"), fx.TypeMapPath("mdir", "latest"), fx.ManifestPath("app", h.Images["app"])} {
					if _, err := os.Lstat(p); err != nil {
						t.Errorf("a repository with a problem was swept: %v", err)
					}
				}
			})
		})
	}
}

// TestDeleteLeavesOutsideAlone: deleting any reference of a hostile tree,
// with its prune, reads and removes nothing outside the root; a reference
// through a link that leads outside is refused with a message that says
// so. (Before confinement, deleting evil:latest removed the whole outside
// repository, all 15 entries.)
func TestDeleteLeavesOutsideAlone(t *testing.T) {
	tests := []struct {
		ref     string
		outside bool // the error says the reference leads outside the tree
	}{
		{"evil:latest", true},
		{"evil@{m}", false},
		{"blobsdir:v1", false},
		{"nginx:v1", false},
		{"mdir:latest", false},
		{"mdir@{m}", false},
		{"app:evil", false},
		{"app@{m}", false},
		{"app:v1", false},
		{"tagslist:v1", false},
		{"headers:v1", false},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			t.Parallel()
			linkKinds(t, func(t *testing.T, h *hostileTree) {
				ref, err := gc.ParseRef(strings.ReplaceAll(tt.ref, "{m}", h.M.String()))
				if err != nil {
					t.Fatal(err)
				}
				untouched(t, h, func() {
					_, err := gc.Delete(h.Root, []gc.Ref{ref}, gc.DeleteOptions{Now: later})
					if tt.outside && (err == nil || !strings.Contains(err.Error(), "outside the tree")) {
						t.Errorf("Delete %s: %v, want an error saying it leads outside the tree", ref, err)
					}
				})
			})
		})
	}
}
