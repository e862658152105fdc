package tree_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/hostiletree"
	"github.com/image-serve/image-serve/tree"
)

// promptly is how long a read of a planted FIFO may take before the test
// calls it blocked: a refused one takes microseconds.
const promptly = 10 * time.Second

// within runs f and returns its error, failing the test when f has not
// returned after d: the code under test is blocked (in open(2) of a FIFO,
// typically). PlantFIFO lets such a reader go when the test ends.
func within(t *testing.T, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still blocked after %v", d)
		return nil
	}
}

// fifoTree is an initialised tree holding app:v1, exported by the tree's
// writers, resolved with os.Root alone when osRoot is set.
func fifoTree(t *testing.T, osRoot bool) (*tree.Root, hostiletree.Image) {
	t.Helper()
	r, err := tree.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	im := hostiletree.Export(t, r, "app", "v1")
	if osRoot {
		tree.WithoutOpenat2(r)
	}
	return r, im
}

// resolvers runs test resolving with openat2, and with os.Root alone as
// where the system has none.
func resolvers(t *testing.T, test func(t *testing.T, osRoot bool)) {
	for _, osRoot := range []bool{false, true} {
		name := "openat2"
		if osRoot {
			name = "os.Root"
		}
		t.Run(name, func(t *testing.T) { test(t, osRoot) })
	}
}

// TestNotRegularRefused: a read of any kind of file of the tree where a
// FIFO was planted — a blob, a manifest's index.json, its .htaccess, a
// type map, tags/list, _catalog, a referrers index, v2/index.json, a
// journal — returns at once with ErrNotRegular (not fs.ErrNotExist),
// naming the path and what is there. Before, each blocked in open(2)
// forever. Nothing is left open on the FIFO, and it is still there:
// reads change nothing.
func TestNotRegularRefused(t *testing.T) {
	type read = func(r *tree.Root, im hostiletree.Image) error
	err := func(_ any, err error) error { return err }
	cases := []struct {
		name string
		at   func(r *tree.Root, im hostiletree.Image) string
		read read
	}{
		{"blob/OpenBlob", blobAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(tree.Fixture(r).OpenBlob("app", im.Blobs[1]))
		}},
		{"blob/ReadBlob", blobAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(tree.Fixture(r).ReadBlob("app", im.Blobs[1], 1<<20))
		}},
		{"blob/OpenBlobFile", blobAt, func(r *tree.Root, im hostiletree.Image) error {
			f, _, err := tree.Fixture(r).OpenBlobFile("app", tree.StoredBlob{Digest: im.Blobs[1]})
			return err2(f, err)
		}},
		{"index.json/ReadManifest", manifestAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(tree.Fixture(r).ReadManifest("app", im.Manifest))
		}},
		{"index.json/OpenInTree", manifestAt, func(r *tree.Root, im hostiletree.Image) error {
			return err2(tree.Fixture(r).OpenInTree(tree.Fixture(r).ManifestPath("app", im.Manifest)))
		}},
		{".htaccess/ReadHeaders", headersAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(tree.Fixture(r).ReadHeaders("app", im.Manifest))
		}},
		{".htaccess/ManifestMediaType", headersAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(r.ManifestMediaType("app", im.Manifest))
		}},
		{"type map/TagVariants", typeMapAt, func(r *tree.Root, im hostiletree.Image) error { return err(r.TagVariants("app", "v1")) }},
		{"type map/ResolveTag", typeMapAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(tree.TagResolver{Root: r}.ResolveTag("app", "v1", "*/*"))
		}},
		{"tags/list/ReadTagsList", tagsListAt, func(r *tree.Root, im hostiletree.Image) error {
			_, _, err := tree.Fixture(r).ReadTagsList("app")
			return err
		}},
		{"tags/list/OpenInTree", tagsListAt, func(r *tree.Root, im hostiletree.Image) error {
			return err2(tree.Fixture(r).OpenInTree(tree.Fixture(r).TagsListPath("app")))
		}},
		{"_catalog/ReadCatalog", catalogAt, func(r *tree.Root, im hostiletree.Image) error { return err(tree.Fixture(r).ReadCatalog()) }},
		{"_catalog/OpenInTree", catalogAt, func(r *tree.Root, im hostiletree.Image) error {
			return err2(tree.Fixture(r).OpenInTree(tree.Fixture(r).CatalogPath()))
		}},
		{"referrers index/ReadReferrers", referrersAt, func(r *tree.Root, im hostiletree.Image) error {
			return err(tree.Fixture(r).ReadReferrers("app", im.Manifest))
		}},
		{"v2/index.json/OpenInTree", func(r *tree.Root, _ hostiletree.Image) string { return tree.Fixture(r).PingPath() }, func(r *tree.Root, im hostiletree.Image) error {
			return err2(tree.Fixture(r).OpenInTree(tree.Fixture(r).PingPath()))
		}},
		{"journal/ReadJournal", journalAt, func(r *tree.Root, im hostiletree.Image) error { return tree.ReadJournal(r, journalAt(r, im)) }},
	}
	resolvers(t, func(t *testing.T, osRoot bool) {
		for _, c := range cases {
			t.Run(strings.ReplaceAll(c.name, "/", "_"), func(t *testing.T) {
				t.Parallel() // a read that blocks costs the deadline
				r, im := fifoTree(t, osRoot)
				path := c.at(r, im)
				hostiletree.PlantFIFO(t, path)
				err := within(t, promptly, func() error { return c.read(r, im) })
				if !errors.Is(err, tree.ErrNotRegular) || errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%v, want ErrNotRegular (and not fs.ErrNotExist)", err)
				}
				var pe *fs.PathError
				if !errors.As(err, &pe) || pe.Path != path || !strings.HasSuffix(err.Error(), path+": not a regular file (fifo)") {
					t.Errorf("%q: want an *fs.PathError ending %q", err, path+": not a regular file (fifo)")
				}
				if fds := hostiletree.OpenDescriptors(t, path); len(fds) > 0 {
					t.Errorf("left open on the FIFO: %v", fds)
				}
				if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
					t.Errorf("the FIFO is not there any more: %v", err)
				}
			})
		}
	})
}

// err2 closes what an open returned, keeping its error.
func err2(f *os.File, err error) error {
	if f != nil {
		f.Close()
	}
	return err
}

func blobAt(r *tree.Root, im hostiletree.Image) string {
	return tree.Fixture(r).BlobPath("app", im.Blobs[1])
}

func manifestAt(r *tree.Root, im hostiletree.Image) string {
	return tree.Fixture(r).ManifestPath("app", im.Manifest)
}

func headersAt(r *tree.Root, im hostiletree.Image) string {
	return tree.Fixture(r).HeadersPath("app", im.Manifest)
}

func typeMapAt(r *tree.Root, _ hostiletree.Image) string {
	return tree.Fixture(r).TypeMapPath("app", "v1")
}

func tagsListAt(r *tree.Root, _ hostiletree.Image) string { return tree.Fixture(r).TagsListPath("app") }

func catalogAt(r *tree.Root, _ hostiletree.Image) string { return tree.Fixture(r).CatalogPath() }

func referrersAt(r *tree.Root, im hostiletree.Image) string {
	return tree.Fixture(r).ReferrersPath("app", im.Manifest)
}

func journalAt(r *tree.Root, _ hostiletree.Image) string { return tree.JournalPath(r, "planted") }

// TestNotRegularTypes: what is refused besides a FIFO — a socket, a
// directory where a file belongs — is named by its type.
func TestNotRegularTypes(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, im := fifoTree(t, osRoot)
		sock := tree.Fixture(r).BlobPath("app", im.Blobs[1])
		hostiletree.PlantSocket(t, sock)
		dir := tree.Fixture(r).ManifestPath("app", im.Manifest)
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, want string
			read       func() error
		}{
			{"socket at a blob", sock + ": not a regular file (socket)", func() error { return err2(tree.Fixture(r).OpenBlob("app", im.Blobs[1])) }},
			{"directory at index.json", dir + ": not a regular file (directory)", func() error {
				_, err := tree.Fixture(r).ReadManifest("app", im.Manifest)
				return err
			}},
		} {
			err := within(t, promptly, c.read)
			if !errors.Is(err, tree.ErrNotRegular) || !strings.HasSuffix(fmt.Sprint(err), c.want) {
				t.Errorf("%s: %v, want ErrNotRegular ending %q", c.name, err, c.want)
			}
		}
	})
}

// TestNotRegularListedAndRemoved: NotRegularFiles finds every FIFO and
// socket planted under v2/ and the state directory (lock files aside),
// NotRegularTags the type maps among them, without opening any; and
// RemoveNotRegular removes one — the entry, inside the tree — but never a
// regular file. No FIFO is left where one was removed.
func TestNotRegularListedAndRemoved(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, im := fifoTree(t, osRoot)
		other := hostiletree.Export(t, r, "other", "v1")
		planted := []string{
			blobAt(r, im), manifestAt(r, im), headersAt(r, im), typeMapAt(r, im), tagsListAt(r, im),
			referrersAt(r, im), catalogAt(r, im), journalAt(r, im), tree.Fixture(r).TypeMapPath("other", "planted"),
		}
		for _, p := range planted {
			hostiletree.PlantFIFO(t, p)
		}
		sock := tree.Fixture(r).BlobPath("other", other.Blobs[0])
		hostiletree.PlantSocket(t, sock)
		planted = append(planted, sock)
		// A lock file is only locked, never read: a FIFO there still locks.
		lock, err := tree.Fixture(r).LockShared()
		if err != nil {
			t.Fatal(err)
		}
		lock.Unlock()
		treeLock := filepath.Join(r.Dir(), ".image-serve", "tree.lock")
		hostiletree.PlantFIFO(t, treeLock)
		lock, err = tree.Fixture(r).LockExclusive()
		if err != nil {
			t.Fatalf("tree lock on a FIFO: %v", err)
		}
		lock.Unlock()

		var all []tree.NotRegularFile
		if err := within(t, promptly, func() (err error) { all, err = tree.Fixture(r).NotRegularFiles(""); return err }); err != nil {
			t.Fatal(err)
		}
		if got, want := paths(all), sorted(planted); !slices.Equal(got, want) {
			t.Errorf("NotRegularFiles:\n got %v\nwant %v", got, want)
		}
		for _, f := range all {
			want := "fifo"
			if f.Path == sock {
				want = "socket"
			}
			if f.String() != f.Path+": not a regular file ("+want+")" {
				t.Errorf("%q", f)
			}
		}
		inOther, err := tree.Fixture(r).NotRegularFiles("other")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := paths(inOther), sorted([]string{tree.Fixture(r).TypeMapPath("other", "planted"), sock}); !slices.Equal(got, want) {
			t.Errorf("NotRegularFiles(other):\n got %v\nwant %v", got, want)
		}
		tags, err := tree.Fixture(r).NotRegularTags("app")
		if err != nil {
			t.Fatal(err)
		}
		if got := paths(tags); !slices.Equal(got, []string{typeMapAt(r, im)}) {
			t.Errorf("NotRegularTags(app) = %v, want the type map", got)
		}

		for _, f := range all {
			if err := tree.Fixture(r).RemoveNotRegular(f.Path); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(f.Path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: still there after RemoveNotRegular (%v)", f.Path, err)
			}
		}
		if left, err := tree.Fixture(r).NotRegularFiles(""); err != nil || len(left) > 0 {
			t.Errorf("left: %v %v", left, err)
		}
		regular := tree.Fixture(r).BlobPath("other", other.Blobs[1])
		if err := tree.Fixture(r).RemoveNotRegular(regular); err == nil {
			t.Error("RemoveNotRegular removed a regular file")
		}
		if fi, err := os.Lstat(regular); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: not left alone: %v", regular, err)
		}
	})
}

func paths(fs []tree.NotRegularFile) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Path)
	}
	return sorted(out)
}

func sorted(ss []string) []string {
	c := slices.Clone(ss)
	slices.Sort(c)
	return c
}

// TestWritersReplaceNotRegular: a writer publishing a file where a FIFO
// was planted — a type map, tags/list, _catalog, a referrers index —
// replaces it by rename without opening it; a FIFO among the journals is
// no journal, and a maintenance run neither reads it nor fails on it. No
// FIFO is left where a file was published.
func TestWritersReplaceNotRegular(t *testing.T) {
	resolvers(t, func(t *testing.T, osRoot bool) {
		r, im := fifoTree(t, osRoot)
		hostiletree.Referrer(t, r, "app", im.Manifest)
		for _, p := range []string{typeMapAt(r, im), tagsListAt(r, im), catalogAt(r, im), referrersAt(r, im), journalAt(r, im)} {
			hostiletree.PlantFIFO(t, p)
		}
		steps := []struct {
			name string
			do   func() error
		}{
			{"PutTag", func() error {
				return tree.Fixture(r).PutTag("app", "v1", []tree.TagVariant{{Digest: im.Manifest, MediaType: hostiletree.OCIManifest}})
			}},
			{"RefreshReferrers", func() error { return tree.Fixture(r).RefreshReferrers("app") }},
			{"PendingTags", func() error { _, err := tree.Fixture(r).PendingTags("app"); return err }},
			{"Maintain", func() error {
				return r.Maintain(tree.MaintainOptions{Sweep: true}, func(*tree.Maint) error { return nil })
			}},
		}
		for _, s := range steps {
			if err := within(t, promptly, s.do); err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
		}
		for _, p := range []string{typeMapAt(r, im), tagsListAt(r, im), catalogAt(r, im), referrersAt(r, im)} {
			if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s: not replaced by a regular file (%v)", p, err)
			}
		}
		// A FIFO among the journals is no journal: set aside as one that
		// cannot be trusted, never opened — still a FIFO, renamed.
		if fi, err := os.Lstat(journalAt(r, im) + ".invalid"); err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
			t.Errorf("%s: the FIFO among the journals was not set aside as it is (%v)", journalAt(r, im), err)
		}
		if vs, err := r.TagVariants("app", "v1"); err != nil || len(vs) != 1 || vs[0].Digest != im.Manifest {
			t.Errorf("app:v1 after PutTag: %v %v", vs, err)
		}
	})
}
