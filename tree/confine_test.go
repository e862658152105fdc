package tree_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// The hostile tree these tests run on: internal/hostiletree builds it.
type hostileTree = hostiletree.Tree

const (
	secret      = hostiletree.Secret
	ociManifest = hostiletree.OCIManifest
)

func buildHostileTree(t *testing.T, relative bool) *hostileTree {
	return hostiletree.Build(t, relative)
}

func watch(t *testing.T, dir string) func() []string { return hostiletree.Watch(t, dir) }

// linkKinds runs test on a hostile tree of absolute links, and on one of
// relative links climbing out with "..", each resolved with openat2 and,
// as where the system has none, with os.Root alone.
func linkKinds(t *testing.T, test func(t *testing.T, h *hostileTree)) {
	linkKindsIn(t, []bool{false, true}, test)
}

// linkKindsPaired is linkKinds on two trees instead of four: absolute
// links resolved with openat2, relative ones with os.Root.
func linkKindsPaired(t *testing.T, test func(t *testing.T, h *hostileTree)) {
	linkKindsIn(t, nil, test)
}

func linkKindsIn(t *testing.T, resolvers []bool, test func(t *testing.T, h *hostileTree)) {
	for _, kind := range []struct {
		name     string
		relative bool
	}{{"absolute", false}, {"relative", true}} {
		modes := resolvers
		if modes == nil {
			modes = []bool{kind.relative}
		}
		for _, osRoot := range modes {
			name := kind.name + "/openat2"
			if osRoot {
				name = kind.name + "/os.Root"
			}
			t.Run(name, func(t *testing.T) {
				h := buildHostileTree(t, kind.relative)
				if osRoot {
					tree.WithoutOpenat2(h.Root)
				}
				test(t, h)
			})
		}
	}
}

// checkOutsideUntouched fails when anything under the outside directory
// was accessed (events) or differs from before.
func checkOutsideUntouched(t *testing.T, h *hostileTree, before string, events []string) {
	t.Helper()
	if len(events) > 0 {
		t.Errorf("accessed outside the root:\n%s", strings.Join(events, "\n"))
	}
	if after := h.Snapshot(t); after != before {
		t.Errorf("outside the root changed:\n%s", testtree.Diff(before, after))
	}
}

// TestConfinedReads: every read through a planted link fails with
// ErrOutsideRoot, which is not fs.ErrNotExist (issue 18: servers answer
// it 404 by name), and opens nothing outside the root.
func TestConfinedReads(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.Root
		err := func(_ any, err error) error { return err }
		reads := []struct {
			name string
			read func() error
		}{
			{"OpenBlob through a blob link", func() error { return err(tree.Fixture(r).OpenBlob("app", h.Marker)) }},
			{"ReadManifest through index.json", func() error { return err(tree.Fixture(r).ReadManifest("app", h.M)) }},
			{"ManifestChanged through index.json", func() error { return err(tree.Fixture(r).ManifestChanged("app", h.M)) }},
			{"TagVariants through a type map", func() error { return err(r.TagVariants("app", "evil")) }},
			{"ReadReferrers through an index", func() error { return err(tree.Fixture(r).ReadReferrers("app", h.M)) }},
			{"ReadHeaders through .htaccess", func() error { return err(tree.Fixture(r).ReadHeaders("headers", h.Images["headers"])) }},
			{"ManifestMediaType through .htaccess", func() error { return err(r.ManifestMediaType("headers", h.Images["headers"])) }},
			{"ReadTagsList through tags/list", func() error { _, _, err := tree.Fixture(r).ReadTagsList("tagslist"); return err }},
			{"ReadTagsList of a linked repository", func() error { _, _, err := tree.Fixture(r).ReadTagsList("evil"); return err }},
			{"TagVariants of a linked repository", func() error { return err(r.TagVariants("evil", "latest")) }},
			{"ReadManifest of a linked repository", func() error { return err(tree.Fixture(r).ReadManifest("evil", h.M)) }},
			{"OpenBlob of a linked repository", func() error { return err(tree.Fixture(r).OpenBlob("evil", h.Blobs[0])) }},
			{"Tags of a linked repository", func() error { return err(tree.Fixture(r).Tags("evil")) }},
			{"ManifestDigests of a linked repository", func() error { return err(tree.Fixture(r).ManifestDigests("evil")) }},
			{"Blobs of a linked repository", func() error { return err(tree.Fixture(r).Blobs("evil")) }},
			{"ReferrerSubjects of a linked repository", func() error { return err(tree.Fixture(r).ReferrerSubjects("evil")) }},
			{"Blobs through a blobs/ link", func() error { return err(tree.Fixture(r).Blobs("blobsdir")) }},
			{"OpenBlob through a blobs/ link", func() error { return err(tree.Fixture(r).OpenBlob("blobsdir", h.Blobs[0])) }},
			{"BlobInodes through a blobs/ link", func() error { return err(tree.Fixture(r).BlobInodes("blobsdir", h.Blobs[0])) }},
			{"ReadManifest through a manifest directory link", func() error { return err(tree.Fixture(r).ReadManifest("mdir", h.M)) }},
			{"ReadHeaders through a manifest directory link", func() error { return err(tree.Fixture(r).ReadHeaders("mdir", h.M)) }},
			{"ReadCatalog through _catalog", func() error { return err(tree.Fixture(r).ReadCatalog()) }},
			{"OpenInTree through v2/index.json", func() error { return err(tree.Fixture(r).OpenInTree(tree.Fixture(r).PingPath())) }},
			{"OpenInTree through tags/list", func() error { return err(tree.Fixture(r).OpenInTree(tree.Fixture(r).TagsListPath("tagslist"))) }},
			{"OpenInTree through index.json", func() error { return err(tree.Fixture(r).OpenInTree(tree.Fixture(r).ManifestPath("app", h.M))) }},
			{"StatInTree through a manifest directory link", func() error { return err(tree.Fixture(r).StatInTree(tree.Fixture(r).ManifestPath("mdir", h.M))) }},
		}
		before := h.Snapshot(t)
		events := watch(t, h.Outside)
		for _, rd := range reads {
			err := rd.read()
			if !errors.Is(err, tree.ErrOutsideRoot) || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %v, want ErrOutsideRoot (not fs.ErrNotExist)", rd.name, err)
			} else if !strings.Contains(err.Error(), r.Dir()) {
				t.Errorf("%s: %v does not name the path in the tree", rd.name, err)
			}
			if ev := events(); len(ev) > 0 {
				t.Errorf("%s: accessed outside the root:\n%s", rd.name, strings.Join(ev, "\n"))
			}
		}
		// Nor does anything that answers without an error.
		if tree.Fixture(r).ManifestComplete("mdir", h.M) || tree.Fixture(r).ManifestComplete("app", h.M) {
			t.Error("ManifestComplete through a link leading outside")
		}
		if tree.Fixture(r).HasManifests("evil") {
			t.Error("HasManifests of a linked repository")
		}
		checkOutsideUntouched(t, h, before, events())
	})
}

// TestConfinedListings: listings never name what a planted link leads
// to, nor the links themselves as blobs, tags or repositories.
func TestConfinedListings(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.Root
		before := h.Snapshot(t)
		events := watch(t, h.Outside)
		repos, err := tree.Fixture(r).StoredRepositories()
		if want := []string{"app", "blobsdir", "headers", "mdir", "nginx", "tagslist"}; err != nil || !slices.Equal(repos, want) {
			t.Errorf("StoredRepositories = %v, %v; want %v", repos, err, want)
		}
		if tags, err := tree.Fixture(r).Tags("app"); err != nil || !slices.Equal(tags, []string{"linked", "v1"}) {
			t.Errorf("Tags(app) = %v, %v; want the regular type maps only", tags, err)
		}
		if bs, err := tree.Fixture(r).Blobs("app"); err != nil || slices.ContainsFunc(bs, func(b tree.StoredBlob) bool { return b.Digest == h.Marker }) {
			t.Errorf("Blobs(app) = %v, %v: lists the blob link", bs, err)
		}
		if ds, err := tree.Fixture(r).ManifestDigests("mdir"); err != nil || len(ds) != 0 {
			t.Errorf("ManifestDigests(mdir) = %v, %v: lists the manifest directory link", ds, err)
		}
		if ss, err := tree.Fixture(r).ReferrerSubjects("app"); err != nil || len(ss) != 0 {
			t.Errorf("ReferrerSubjects(app) = %v, %v: lists the link", ss, err)
		}
		checkOutsideUntouched(t, h, before, events())
	})
}

// TestOutsideLinks: the whole tree's and each repository's links leading
// outside are found, and the layout's; the tree's own links are not.
func TestOutsideLinks(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.Root
		before := h.Snapshot(t)
		events := watch(t, h.Outside)
		links, err := tree.Fixture(r).OutsideLinks("")
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, l := range links {
			got = append(got, l.Path)
			if l.Target == "" {
				t.Errorf("%s: no target", l.Path)
			}
		}
		for p := range h.Links {
			want = append(want, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("OutsideLinks(\"\"):\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for _, tt := range []struct {
			repo   string
			links  []string // OutsideLinks(repo)
			layout []string // OutsideLayout(repo)
		}{
			{"app", []string{tree.Fixture(r).BlobPath("app", h.Marker), tree.Fixture(r).ManifestPath("app", h.M), tree.Fixture(r).ReferrersPath("app", h.M), tree.Fixture(r).TypeMapPath("app", "evil")}, nil},
			{"evil", []string{tree.Fixture(r).RepoDir("evil")}, []string{tree.Fixture(r).RepoDir("evil")}},
			{"evil/nested", []string{tree.Fixture(r).RepoDir("evil")}, []string{tree.Fixture(r).RepoDir("evil")}},
			{"blobsdir", []string{filepath.Join(tree.Fixture(r).RepoDir("blobsdir"), "blobs")}, []string{filepath.Join(tree.Fixture(r).RepoDir("blobsdir"), "blobs")}},
			{"nginx", []string{filepath.Join(tree.Fixture(r).RepoDir("nginx"), "manifests", ".tags")}, []string{filepath.Join(tree.Fixture(r).RepoDir("nginx"), "manifests", ".tags")}},
			{"mdir", []string{tree.Fixture(r).ManifestDir("mdir", h.M)}, nil},
			{"headers", []string{tree.Fixture(r).HeadersPath("headers", h.Images["headers"])}, nil},
			{"tagslist", []string{tree.Fixture(r).TagsListPath("tagslist")}, nil},
		} {
			paths := func(ls []tree.OutsideLink, err error) []string {
				if err != nil {
					t.Errorf("%s: %v", tt.repo, err)
				}
				var ps []string
				for _, l := range ls {
					ps = append(ps, l.Path)
				}
				slices.Sort(ps)
				return ps
			}
			slices.Sort(tt.links)
			if got := paths(tree.Fixture(r).OutsideLinks(tt.repo)); !slices.Equal(got, tt.links) {
				t.Errorf("OutsideLinks(%s) = %v, want %v", tt.repo, got, tt.links)
			}
			if got := paths(tree.Fixture(r).OutsideLayout(tt.repo)); !slices.Equal(got, tt.layout) {
				t.Errorf("OutsideLayout(%s) = %v, want %v", tt.repo, got, tt.layout)
			}
		}
		checkOutsideUntouched(t, h, before, events())
	})
}

// TestConfinedChanges: removals and writes on a hostile tree change
// nothing outside the root and read nothing there. A planted link is
// removed as a link, or replaced when a file is published over it;
// through a linked directory, nothing is done and the error says why.
func TestConfinedChanges(t *testing.T) {
	const (
		ok      = "ok"
		outside = "outside"
		failed  = "failed"
	)
	blob := []byte("new blob")
	fetch := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(blob)), nil }
	isLink := func(r *tree.Root, p string) bool {
		fi, err := os.Lstat(p)
		return err == nil && fi.Mode()&fs.ModeSymlink != 0
	}
	tests := []struct {
		name   string
		change func(h *hostileTree) error
		want   string
		after  func(h *hostileTree) error // what the tree holds then
	}{
		{"RemoveBlob of a blob link", func(h *hostileTree) error { _, err := tree.Fixture(h.Root).RemoveBlob("app", h.Marker); return err }, ok,
			func(h *hostileTree) error { return gone(tree.Fixture(h.Root).BlobPath("app", h.Marker)) }},
		{"RemoveBlob through a blobs/ link", func(h *hostileTree) error {
			_, err := tree.Fixture(h.Root).RemoveBlob("blobsdir", h.Blobs[0])
			return err
		}, outside, nil},
		{"RemoveManifest of an index.json link", func(h *hostileTree) error { return tree.Fixture(h.Root).RemoveManifest("app", h.M) }, ok,
			func(h *hostileTree) error { return gone(tree.Fixture(h.Root).ManifestDir("app", h.M)) }},
		{"RemoveManifest through a manifest directory link", func(h *hostileTree) error { return tree.Fixture(h.Root).RemoveManifest("mdir", h.M) }, outside, nil},
		{"RemoveManifest of a linked repository", func(h *hostileTree) error { return tree.Fixture(h.Root).RemoveManifest("evil", h.M) }, outside, nil},
		{"RemoveRepo of a linked repository", func(h *hostileTree) error { _, err := tree.Fixture(h.Root).RemoveRepo("evil"); return err }, outside, nil},
		{"RemoveRepo with a blobs/ link", func(h *hostileTree) error {
			if err := tree.Fixture(h.Root).DeleteTag("blobsdir", "v1"); err != nil {
				return err
			}
			if err := tree.Fixture(h.Root).RemoveManifest("blobsdir", h.Images["blobsdir"]); err != nil {
				return err
			}
			if gone, err := tree.Fixture(h.Root).RemoveRepo("blobsdir"); !gone || err != nil {
				return fmt.Errorf("RemoveRepo: %v, %v", gone, err)
			}
			return nil
		}, ok, func(h *hostileTree) error { return gone(tree.Fixture(h.Root).RepoDir("blobsdir")) }},
		{"DeleteTag of a linked repository", func(h *hostileTree) error { return tree.Fixture(h.Root).DeleteTag("evil", "latest") }, outside, nil},
		{"DeleteTag of a type map link", func(h *hostileTree) error { return tree.Fixture(h.Root).DeleteTag("app", "evil") }, ok,
			func(h *hostileTree) error { return gone(tree.Fixture(h.Root).TypeMapPath("app", "evil")) }},
		{"DeleteTag with a tags/list link", func(h *hostileTree) error { return tree.Fixture(h.Root).DeleteTag("tagslist", "v1") }, ok,
			func(h *hostileTree) error { return gone(tree.Fixture(h.Root).TagsListPath("tagslist")) }},
		{"RefreshReferrers with a referrers link", func(h *hostileTree) error { return tree.Fixture(h.Root).RefreshReferrers("app") }, ok, nil},
		{"SweepTemps", func(h *hostileTree) error { _, err := tree.SweepTemps(h.Root); return err }, ok, nil},
		{"SweepEmptyDirs", func(h *hostileTree) error { _, err := tree.SweepEmptyDirs(h.Root); return err }, ok, nil},
		{"SweepCatalogTemps", func(h *hostileTree) error { _, err := tree.SweepCatalogTemps(h.Root); return err }, ok, nil},
		{"SweepRepoTemps of a linked repository", func(h *hostileTree) error { _, err := tree.Fixture(h.Root).SweepRepoTemps("evil"); return err }, ok, nil},
		{"SweepRepoTemps with a blobs/ link", func(h *hostileTree) error { _, err := tree.Fixture(h.Root).SweepRepoTemps("blobsdir"); return err }, ok, nil},
		{"PutBlob through a blobs/ link", func(h *hostileTree) error {
			_, _, err := tree.Fixture(h.Root).PutBlob("blobsdir", digest.FromBytes(blob), int64(len(blob)), false, fetch)
			return err
		}, outside, nil},
		{"PutBlob of a blob outside into a linked repository", func(h *hostileTree) error {
			_, _, err := tree.Fixture(h.Root).PutBlob("evil", h.Blobs[0], -1, false, fetch)
			return err
		}, outside, nil},
		{"PutManifest through a manifest directory link", func(h *hostileTree) error {
			return tree.Fixture(h.Root).PutManifest("mdir", h.M, ociManifest, h.Raw)
		}, outside, nil},
		{"PutManifest into a linked repository", func(h *hostileTree) error {
			return tree.Fixture(h.Root).PutManifest("evil", digest.FromString("{}"), ociManifest, []byte("{}"))
		}, outside, nil},
		{"PutTag on a linked repository", func(h *hostileTree) error {
			return tree.Fixture(h.Root).PutTag("evil", "v2", []tree.TagVariant{{Digest: h.M, MediaType: ociManifest}})
		}, failed, nil},
		{"PutTag over a type map link", func(h *hostileTree) error {
			return tree.Fixture(h.Root).PutTag("app", "evil", []tree.TagVariant{{Digest: h.Images["app"], MediaType: ociManifest}})
		}, ok, func(h *hostileTree) error { return regular(tree.Fixture(h.Root).TypeMapPath("app", "evil")) }},
		{"RefreshTags over a tags/list link", func(h *hostileTree) error { return tree.Fixture(h.Root).RefreshTags("tagslist") }, ok,
			func(h *hostileTree) error { return regular(tree.Fixture(h.Root).TagsListPath("tagslist")) }},
		{"RefreshCatalog over a _catalog link", func(h *hostileTree) error { return tree.Fixture(h.Root).RefreshCatalog() }, ok,
			func(h *hostileTree) error { return regular(tree.Fixture(h.Root).CatalogPath()) }},
		{"Init over a v2/index.json link", func(h *hostileTree) error { return h.Root.Init() }, ok,
			func(h *hostileTree) error { return regular(tree.Fixture(h.Root).PingPath()) }},
		{"RefreshTags through nginx's link directory", func(h *hostileTree) error { return tree.Fixture(h.Root).RefreshTags("nginx") }, outside,
			func(h *hostileTree) error {
				if !isLink(h.Root, filepath.Join(tree.Fixture(h.Root).RepoDir("nginx"), "manifests", ".tags")) {
					return errors.New("the .tags link went")
				}
				return nil
			}},
		{"LinkForNginx", func(h *hostileTree) error { _, err := tree.Fixture(h.Root).LinkForNginx(); return err }, outside, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			linkKindsPaired(t, func(t *testing.T, h *hostileTree) {
				before := h.Snapshot(t)
				events := watch(t, h.Outside)
				err := tt.change(h)
				switch {
				case tt.want == ok && err != nil,
					tt.want == outside && !errors.Is(err, tree.ErrOutsideRoot),
					tt.want == failed && err == nil:
					t.Errorf("%v, want %s", err, tt.want)
				}
				checkOutsideUntouched(t, h, before, events())
				if tt.after != nil {
					if err := tt.after(h); err != nil {
						t.Error(err)
					}
				}
			})
		})
	}
}

// gone reports an error unless nothing is at p, not even a link.
func gone(p string) error {
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is still there (%v)", p, err)
	}
	return nil
}

// regular reports an error unless p is a regular file (no link).
func regular(p string) error {
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %v, want a regular file", p, err)
	}
	return nil
}

// TestStateDirOutside: with .image-serve a link leading outside, no lock
// is taken and nothing is created out there.
func TestStateDirOutside(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	r, err := tree.Open(filepath.Join(base, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(tree.Fixture(r).V2Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.Dir(), ".image-serve")); err != nil {
		t.Fatal(err)
	}
	events := watch(t, outside)
	for name, f := range map[string]func() error{
		"LockShared":    func() error { l, err := tree.Fixture(r).LockShared(); l.Unlock(); return err },
		"LockExclusive": func() error { l, err := tree.Fixture(r).LockExclusive(); l.Unlock(); return err },
		"TryLockGC":     func() error { l, err := tree.Fixture(r).TryLockGC(); l.Unlock(); return err },
		"Init":          r.Init,
		"DeleteTag":     func() error { return tree.Fixture(r).DeleteTag("app", "v1") },
	} {
		if err := f(); !errors.Is(err, tree.ErrOutsideRoot) {
			t.Errorf("%s: %v, want ErrOutsideRoot", name, err)
		}
	}
	if ev := events(); len(ev) > 0 {
		t.Errorf("accessed outside the root:\n%s", strings.Join(ev, "\n"))
	}
	if s := testtree.Snapshot(t, outside); s != ". drwxr-xr-x" {
		t.Errorf("outside the root now:\n%s", s)
	}
}

// TestLinksInsideRootFollowed: symlinks that stay inside the root are
// followed, as os.Root follows them: the tree's own (nginx's tag links),
// and others'.
func TestLinksInsideRootFollowed(t *testing.T) {
	h := buildHostileTree(t, true)
	r := h.Root
	if err := os.Symlink("app", tree.Fixture(r).RepoDir("alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.TagVariants("alias", "v1"); err != nil {
		t.Errorf("TagVariants through a link inside the tree: %v", err)
	}
	if _, err := tree.Fixture(r).ReadManifest("alias", h.Images["app"]); err != nil {
		t.Errorf("ReadManifest through a link inside the tree: %v", err)
	}
	link := filepath.Join(tree.Fixture(r).RepoDir("app"), "manifests", ".tags", "v1")
	fi, err := tree.Fixture(r).StatInTree(link)
	if err != nil || !fi.IsDir() {
		t.Errorf("nginx's tag link: %v, %v; want the manifest's directory", fi, err)
	}
	if inStep, err := tree.Fixture(r).TagsInStep("headers", []string{"v1"}); !inStep || err != nil {
		t.Errorf("TagsInStep(headers) = %v, %v", inStep, err)
	}
	if links, err := tree.Fixture(r).OutsideLinks("alias"); err != nil || len(links) != 0 {
		t.Errorf("OutsideLinks(alias) = %v, %v; want none: it stays inside", links, err)
	}
}

// openInside lists the descriptors of this process open on a file under
// dir.
func openInside(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var in []string
	for _, fd := range fds {
		p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && (p == dir || strings.HasPrefix(p, dir+"/")) {
			in = append(in, fd.Name()+" -> "+p)
		}
	}
	return in
}

// TestRootDescriptor: a Root keeps no descriptor of the tree between
// operations (a server must not keep a file system busy, nor serve a root
// directory that was replaced), except while it holds a lock; a root that
// does not exist yet is no error until read.
func TestRootDescriptor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	r, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Fixture(r).ReadCatalog(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tree.Fixture(r).CatalogPath()) {
		t.Errorf("ReadCatalog before the tree exists: %v", err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	if err := tree.Fixture(r).RefreshCatalog(); err != nil {
		t.Fatal(err)
	}
	if _, err := tree.Fixture(r).ReadCatalog(); err != nil {
		t.Errorf("ReadCatalog once the tree exists: %v", err)
	}
	if fds := openInside(t, dir); len(fds) > 0 {
		t.Errorf("descriptors left open after the operations:\n%s", strings.Join(fds, "\n"))
	}
	l, err := tree.Fixture(r).LockShared()
	if err != nil {
		t.Fatal(err)
	}
	if held := openInside(t, dir); !slices.ContainsFunc(held, func(s string) bool { return strings.HasSuffix(s, " -> "+dir) }) {
		t.Errorf("holding the tree lock: %v, want the root kept open", held)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if fds := openInside(t, dir); len(fds) > 0 {
		t.Errorf("descriptors left open after the unlock:\n%s", strings.Join(fds, "\n"))
	}
	// A tree replaced under a running server is the new tree at once.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r2, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Init(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(tree.Fixture(r2).CatalogPath()); err != nil { // the old tree's is there
		t.Fatal(err)
	}
	if _, err := tree.Fixture(r).ReadCatalog(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadCatalog of the new tree, which has none: %v", err)
	}
	if _, err := tree.Fixture(r).OpenInTree(tree.Fixture(r).PingPath()); err != nil {
		t.Errorf("v2/index.json of the new tree: %v", err)
	}
}

// TestReadDirAsOS: the tree's own directory listing (getdents64 after
// openat2, or os.Root's) names and types entries as os.ReadDir does.
func TestReadDirAsOS(t *testing.T) {
	for _, osRoot := range []bool{false, true} {
		r, err := tree.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if osRoot {
			tree.WithoutOpenat2(r)
		}
		dir := filepath.Join(r.Dir(), "d")
		if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 300 { // more than one getdents64 buffer
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d-%s", i, strings.Repeat("x", 40))), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("sub", filepath.Join(dir, "link")); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tree.ReadDir(r, dir)
		if err != nil {
			t.Fatal(err)
		}
		str := func(es []fs.DirEntry) string {
			var b strings.Builder
			for _, e := range es {
				fmt.Fprintf(&b, "%s %v %v\n", e.Name(), e.Type(), e.IsDir())
			}
			return b.String()
		}
		if str(got) != str(want) {
			t.Errorf("osRoot=%v: readDir\n%s\nos.ReadDir\n%s", osRoot, str(got), str(want))
		}
		if fi, err := got[0].Info(); err != nil || fi.Name() != want[0].Name() {
			t.Errorf("osRoot=%v: Info() = %v, %v", osRoot, fi, err)
		}
		if _, err := tree.ReadDir(r, filepath.Join(dir, "link", "..", "f000-"+strings.Repeat("x", 40))); err == nil {
			t.Errorf("osRoot=%v: readDir of a file: no error", osRoot)
		}
	}
}

// TestReadsAcrossLocks: readers holding no lock keep reading correctly
// while another goroutine takes and drops the tree lock, which opens and
// closes the descriptor the Root keeps while locked.
func TestReadsAcrossLocks(t *testing.T) {
	h := buildHostileTree(t, false)
	r, d := h.Root, h.Images["app"]
	want, err := tree.Fixture(r).ReadManifest("app", d)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			for range 500 {
				got, err := tree.Fixture(r).ReadManifest("app", d)
				if err == nil && !bytes.Equal(got, want) {
					err = fmt.Errorf("read %q", got)
				}
				if err == nil {
					_, err = tree.Fixture(r).ReadManifest("app", h.M)
					if errors.Is(err, tree.ErrOutsideRoot) {
						err = nil
					} else {
						err = fmt.Errorf("through the link: %v", err)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 200 {
		l, err := tree.Fixture(r).LockShared()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tree.Fixture(r).ReadManifest("app", d); err != nil {
			t.Error(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if fds := openInside(t, r.Dir()); len(fds) > 0 {
		t.Errorf("descriptors left open:\n%s", strings.Join(fds, "\n"))
	}
}
