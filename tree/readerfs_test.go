package tree_test

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/tree"
)

// TestFSServesRouteFiles: every file template of the route table, expanded
// with a request's match, names in FS the file the writers wrote, opened
// as an *os.File (what sendfile takes), with the bytes OpenInTree reads.
func TestFSServesRouteFiles(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, im := fifoTree(t, osRoot)
		hostiletree.Referrer(t, r, "app", im.Manifest)
		fsys := r.FS()
		want := map[string]string{
			tree.RoutePing:             tree.Fixture(r).PingPath(),
			tree.RouteManifestByDigest: tree.Fixture(r).ManifestPath("app", im.Manifest),
			tree.RouteManifestByTag:    tree.Fixture(r).TypeMapPath("app", "v1"),
			tree.RouteReferrers:        tree.Fixture(r).ReferrersPath("app", im.Manifest),
			tree.RouteCatalog:          tree.Fixture(r).CatalogPath(),
			tree.RouteTagsList:         tree.Fixture(r).TagsListPath("app"),
			tree.RouteCatalogPage:      tree.Fixture(r).PagePath(),
		}
		for _, rt := range tree.Routes() {
			if len(rt.Files) == 0 {
				continue
			}
			m := tree.Match{Repo: "app", Tag: "v1", Digest: im.Manifest}
			if rt.Name == tree.RouteBlob {
				m.Digest = im.Blobs[1]
				want[rt.Name] = tree.Fixture(r).BlobPath("app", im.Blobs[1])
			}
			name := m.Expand(rt.Files[0])
			f, err := fsys.Open(name)
			if err != nil {
				t.Errorf("route %s: %v", rt.Name, err)
				continue
			}
			if _, ok := f.(*os.File); !ok {
				t.Errorf("route %s: Open gives a %T, not an *os.File", rt.Name, f)
			}
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			wf, err := tree.Fixture(r).OpenInTree(want[rt.Name])
			if err != nil {
				t.Fatal(err)
			}
			wantData, _ := io.ReadAll(wf)
			wf.Close()
			if !bytes.Equal(got, wantData) {
				t.Errorf("route %s: %s holds %q, the writers wrote %q", rt.Name, name, got, wantData)
			}
			fi, err := fsys.Stat(name)
			if err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(wantData)) {
				t.Errorf("route %s: Stat(%s) = %v, %v", rt.Name, name, fi, err)
			}
			if rt.Requires != "" {
				if fi, err := fsys.Stat(m.Expand(rt.Requires)); err != nil || !fi.IsDir() {
					t.Errorf("route %s: Stat of its Requires = %v, %v", rt.Name, fi, err)
				}
			}
		}
	})
}

// TestFSNames: names are fs.FS names; anything else is fs.ErrInvalid,
// and a missing file fs.ErrNotExist, each an *fs.PathError naming the
// name asked for.
func TestFSNames(t *testing.T) {
	r, _ := fifoTree(t, false)
	fsys := r.FS()
	for _, name := range []string{"", "/v2/index.json", "../root/v2/index.json", "v2/../v2/index.json", "v2//index.json", "v2/index.json/"} {
		_, err := fsys.Open(name)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != name || !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Open(%q): %v, want an *fs.PathError of fs.ErrInvalid", name, err)
		}
		if _, err := fsys.Stat(name); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Stat(%q): %v, want fs.ErrInvalid", name, err)
		}
	}
	_, err := fsys.Open("v2/nothing/tags/list")
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != "v2/nothing/tags/list" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	if _, err := fsys.Open("v2"); !errors.Is(err, tree.ErrNotRegular) {
		t.Errorf("Open of a directory: %v, want ErrNotRegular", err)
	}
	if fi, err := fsys.Stat("v2"); err != nil || !fi.IsDir() {
		t.Errorf("Stat of a directory: %v, %v", fi, err)
	}
}

// TestFSConfined: nothing of FS leaves the root: a name through a symlink
// leading outside is ErrOutsideRoot, not fs.ErrNotExist (issue 18: the
// server maps it by name), and nothing outside is accessed.
func TestFSConfined(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		fsys := h.Root.FS()
		rel := func(path string) string {
			return strings.TrimPrefix(path, h.Root.Dir()+"/")
		}
		names := []string{
			rel(tree.Fixture(h.Root).PingPath()),
			rel(tree.Fixture(h.Root).TagsListPath("tagslist")),
			rel(tree.Fixture(h.Root).ManifestPath("app", h.M)),
			rel(tree.Fixture(h.Root).ManifestPath("mdir", h.M)),
			rel(tree.Fixture(h.Root).BlobPath("app", h.Marker)),
			rel(tree.Fixture(h.Root).BlobPath("blobsdir", h.Blobs[0])),
		}
		events := watch(t, h.Outside)
		for _, name := range names {
			_, err := fsys.Open(name)
			if !errors.Is(err, tree.ErrOutsideRoot) || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open(%s): %v, want ErrOutsideRoot (not fs.ErrNotExist)", name, err)
			}
			if _, err := fsys.Stat(name); !errors.Is(err, tree.ErrOutsideRoot) {
				t.Errorf("Stat(%s): %v, want ErrOutsideRoot", name, err)
			}
			if ev := events(); len(ev) > 0 {
				t.Errorf("%s: accessed outside the root:\n%s", name, strings.Join(ev, "\n"))
			}
		}
	})
}

// TestFSNotRegular: a FIFO where a served file belongs is refused at once
// with ErrNotRegular, which is not fs.ErrNotExist.
func TestFSNotRegular(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, im := fifoTree(t, osRoot)
		path := tree.Fixture(r).ManifestPath("app", im.Manifest)
		hostiletree.PlantFIFO(t, path)
		err := within(t, promptly, func() error {
			f, err := r.FS().Open(strings.TrimPrefix(path, r.Dir()+"/"))
			if err == nil {
				f.Close()
			}
			return err
		})
		if !errors.Is(err, tree.ErrNotRegular) || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open of a FIFO: %v, want ErrNotRegular", err)
		}
	})
}

// rootDescriptors lists the descriptors of this process open on the
// directory dir itself (not on what is below it).
func rootDescriptors(t *testing.T, dir string) []string {
	t.Helper()
	var fds []string
	for _, fd := range hostiletree.OpenDescriptors(t, dir) {
		if strings.HasSuffix(fd, " -> "+dir) {
			fds = append(fds, fd)
		}
	}
	return fds
}

// TestFSHold: an FS held for a request opens the root directory once, for
// every Stat and Open until Close, and holds nothing after it: no
// descriptor of the root is left open (umount works on an idle server),
// and a second Close does nothing.
func TestFSHold(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, im := fifoTree(t, osRoot)
		if fds := rootDescriptors(t, r.Dir()); len(fds) > 0 {
			t.Fatalf("before Hold, open on the root: %v", fds)
		}
		fsys := r.FS().Hold()
		manifest := tree.Match{Repo: "app", Digest: im.Manifest}.Expand(manifestRoute(t).Files[0])
		for range 3 {
			if _, err := fsys.Stat(manifest); err != nil {
				t.Fatal(err)
			}
			f, err := fsys.Open(manifest)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		}
		if fds := rootDescriptors(t, r.Dir()); len(fds) != 1 {
			t.Errorf("held: %d descriptors open on the root, want the one held: %v", len(fds), fds)
		}
		f, err := fsys.Open(manifest) // outlives the hold
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := fsys.Close(); err != nil {
			t.Fatal(err)
		}
		if fds := rootDescriptors(t, r.Dir()); len(fds) > 0 {
			t.Errorf("after Close, open on the root: %v", fds)
		}
		if _, err := io.ReadAll(f); err != nil {
			t.Errorf("a file opened through the held FS, read after Close: %v", err)
		}
		if err := fsys.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := fsys.Stat(manifest); err != nil {
			t.Errorf("Stat after Close: %v", err)
		}
		if fds := rootDescriptors(t, r.Dir()); len(fds) > 0 {
			t.Errorf("after a Stat past Close, open on the root: %v", fds)
		}
	})
}

// TestFSHoldReplacedRoot: a root directory replaced by another under its
// name (mv, a restored tree) is what the next Hold reads; the FS held
// before the move reads the directory it holds until its Close, which is
// why a hold lasts one request.
func TestFSHoldReplacedRoot(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, _ := fifoTree(t, osRoot)
		other, _ := fifoTree(t, osRoot)
		const ping = "v2/index.json"
		mark := func(dir, body string) {
			if err := os.WriteFile(dir+"/"+ping, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mark(r.Dir(), "old")
		mark(other.Dir(), "new")
		read := func(fsys tree.FS) string {
			t.Helper()
			f, err := fsys.Open(ping)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
		before := r.FS().Hold()
		defer before.Close()
		if got := read(before); got != "old" {
			t.Fatalf("held FS reads %q, want old", got)
		}
		if err := os.Rename(r.Dir(), r.Dir()+".moved"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(other.Dir(), r.Dir()); err != nil {
			t.Fatal(err)
		}
		if got := read(before); got != "old" {
			t.Errorf("the FS held before the move reads %q, want the directory it holds (old)", got)
		}
		after := r.FS().Hold()
		defer after.Close()
		if got := read(after); got != "new" {
			t.Errorf("Hold after the move reads %q, want the new root directory's (new)", got)
		}
		before.Close()
		if got := read(before); got != "new" {
			t.Errorf("after Close, the FS reads %q, want the new root directory's (new)", got)
		}
	})
}

// TestFSHoldBeforeTree: a server may start before its root exists. An FS
// held then holds nothing: each operation reports the missing root, and
// sees the tree once it is there.
func TestFSHoldBeforeTree(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		dir := t.TempDir() + "/root"
		r, err := tree.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		if osRoot {
			tree.WithoutOpenat2(r)
		}
		fsys := r.FS().Hold()
		defer fsys.Close()
		if _, err := fsys.Stat("v2"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat without a root: %v, want fs.ErrNotExist", err)
		}
		if err := r.Init(); err != nil {
			t.Fatal(err)
		}
		if fi, err := fsys.Stat("v2"); err != nil || !fi.IsDir() {
			t.Errorf("Stat once the tree is there: %v, %v", fi, err)
		}
		fsys.Close()
		if fds := rootDescriptors(t, dir); len(fds) > 0 {
			t.Errorf("after Close, open on the root: %v", fds)
		}
	})
}

// manifestRoute is the route of a manifest by digest.
func manifestRoute(t *testing.T) tree.Route {
	t.Helper()
	rt, ok := tree.LookupRoute(tree.RouteManifestByDigest)
	if !ok {
		t.Fatal("no manifest-by-digest route")
	}
	return rt
}

// TestOutsideRootIsPathError: a path leading outside the root fails with
// an *fs.PathError naming the path asked for, whose cause is
// ErrOutsideRoot itself — the error contract of io/fs — and which is not
// fs.ErrNotExist, from the FS a server reads through and from the tree's
// own reads (issue 18).
func TestOutsideRootIsPathError(t *testing.T) {
	linkKindsPaired(t, func(t *testing.T, h *hostileTree) {
		r := h.Root
		paths := []string{
			tree.Fixture(r).PingPath(),
			tree.Fixture(r).TagsListPath("tagslist"),
			tree.Fixture(r).ManifestPath("app", h.M),
			tree.Fixture(r).ManifestPath("mdir", h.M),
			tree.Fixture(r).BlobPath("blobsdir", h.Blobs[0]),
		}
		check := func(op, path string, err error) {
			t.Helper()
			var pe *fs.PathError
			switch {
			case !errors.As(err, &pe):
				t.Errorf("%s %s: %v (%T), want an *fs.PathError", op, path, err, err)
			case pe.Err != tree.ErrOutsideRoot:
				t.Errorf("%s %s: cause %v (%T), want ErrOutsideRoot", op, path, pe.Err, pe.Err)
			case pe.Path != path:
				t.Errorf("%s %s: names %s", op, path, pe.Path)
			case errors.Is(err, fs.ErrNotExist):
				t.Errorf("%s %s: %v matches fs.ErrNotExist", op, path, err)
			}
		}
		for _, path := range paths {
			name := strings.TrimPrefix(path, r.Dir()+"/")
			f, err := r.FS().Open(name)
			if err == nil {
				f.Close()
			}
			check("FS.Open", name, err)
			_, err = r.FS().Stat(name)
			check("FS.Stat", name, err)
			f2, err := tree.Fixture(r).OpenInTree(path)
			if err == nil {
				f2.Close()
			}
			check("OpenInTree", path, err)
			_, err = tree.Fixture(r).StatInTree(path)
			check("StatInTree", path, err)
		}
	})
}
