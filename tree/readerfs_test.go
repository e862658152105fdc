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
			tree.RoutePing:             r.PingPath(),
			tree.RouteManifestByDigest: r.ManifestPath("app", im.Manifest),
			tree.RouteManifestByTag:    r.TypeMapPath("app", "v1"),
			tree.RouteReferrers:        r.ReferrersPath("app", im.Manifest),
			tree.RouteCatalog:          r.CatalogPath(),
			tree.RouteTagsList:         r.TagsListPath("app"),
		}
		for _, rt := range tree.Routes() {
			if len(rt.Files) == 0 {
				continue
			}
			m := tree.Match{Repo: "app", Tag: "v1", Digest: im.Manifest}
			if rt.Name == tree.RouteBlob {
				m.Digest = im.Blobs[1]
				want[rt.Name] = r.BlobPath("app", im.Blobs[1])
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
			wf, err := r.OpenInTree(want[rt.Name])
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
// leading outside is ErrOutsideRoot and fs.ErrNotExist, and nothing
// outside is accessed.
func TestFSConfined(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		fsys := h.Root.FS()
		rel := func(path string) string {
			return strings.TrimPrefix(path, h.Root.Dir()+"/")
		}
		names := []string{
			rel(h.Root.PingPath()),
			rel(h.Root.TagsListPath("tagslist")),
			rel(h.Root.ManifestPath("app", h.M)),
			rel(h.Root.ManifestPath("mdir", h.M)),
			rel(h.Root.BlobPath("app", h.Marker)),
			rel(h.Root.BlobPath("blobsdir", h.Blobs[0])),
		}
		events := watch(t, h.Outside)
		for _, name := range names {
			_, err := fsys.Open(name)
			if !errors.Is(err, tree.ErrOutsideRoot) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Open(%s): %v, want ErrOutsideRoot (and fs.ErrNotExist)", name, err)
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
		path := r.ManifestPath("app", im.Manifest)
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
