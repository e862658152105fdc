package catalog_test

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
	"unsafe"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// A hostile tree: one the tests build with a symlink planted at every
// place a server reads, or a collector reads or removes, each leading
// outside the root — to a marker file, or into a fake repository of 15
// entries next to the root, whose files all carry the secret. The same
// builder is in catalog/, gc/ and server/ (tests of one package cannot
// share files with another's).

// secret is in every file outside the root.
const secret = "secret-from-outside-the-root"

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// hostileTree is what buildHostileTree made.
type hostileTree struct {
	root    *catalog.Root
	outside string          // the directory next to the root
	marker  digest.Digest   // of outside/marker
	m       digest.Digest   // the fake repository's manifest
	raw     []byte          // its bytes
	blobs   []digest.Digest // its blobs
	images  map[string]digest.Digest
	links   map[string]string // planted link → what it stands for
}

// buildHostileTree builds a tree with real repositories and the planted
// links: absolute, or relative ("../../…") when relative is set.
func buildHostileTree(t *testing.T, relative bool) *hostileTree {
	t.Helper()
	base := t.TempDir()
	root, err := catalog.Open(filepath.Join(base, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	h := &hostileTree{root: root, outside: filepath.Join(base, "outside"), images: map[string]digest.Digest{}, links: map[string]string{}}
	write := func(p string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := func(parts ...string) string { return filepath.Join(append([]string{h.outside}, parts...)...) }

	// Outside: the marker, and a complete repository "evil" of 15 entries.
	write(out("marker"), []byte(secret))
	h.marker = digest.FromString(secret)
	var descs []string
	for _, part := range []string{"config", "layer"} {
		b := []byte(secret + " " + part)
		d := digest.FromBytes(b)
		h.blobs = append(h.blobs, d)
		write(out("evil", "blobs", d.String()), b)
		descs = append(descs, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":%q,"size":%d}`, d, len(b)))
	}
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s],"annotations":{"s":%q}}`, ociManifest, descs[0], descs[1], secret)
	h.m, h.raw = digest.FromBytes(raw), raw
	md := out("evil", "manifests", h.m.String())
	write(filepath.Join(md, "index.json"), raw)
	write(filepath.Join(md, "manifest.oci-manifest"), raw)
	write(filepath.Join(md, ".htaccess"), fmt.Appendf(nil, "Header set Content-Type \"application/vnd.%s+json\"\nHeader set Docker-Content-Digest %q\n", secret, h.m))
	typeMap := typemap.Map{URI: "latest", Variants: []typemap.Variant{catalog.TypeMapVariant(catalog.TagVariant{Digest: h.m, MediaType: ociManifest})}}.Marshal()
	write(out("evil", "manifests", "latest.type-map"), append(typeMap, "# "+secret+"\n"...))
	if err := os.MkdirAll(out("evil", "manifests", ".tags"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../"+h.m.String(), out("evil", "manifests", ".tags", "latest")); err != nil {
		t.Fatal(err)
	}
	write(out("evil", "tags", "list"), fmt.Appendf(nil, `{"name":"evil","tags":["latest","%s"]}`, secret))
	write(out("evil", "referrers", h.m.String()), fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"s":%q}}`, secret))

	// Inside: real repositories, each exported as an image, tag v1.
	image := func(repo string) digest.Digest {
		t.Helper()
		var descs []string
		for _, part := range []string{"config", "layer"} {
			b := []byte(repo + " " + part)
			d := digest.FromBytes(b)
			if _, _, err := root.PutBlob(repo, d, int64(len(b)), false, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
				t.Fatal(err)
			}
			descs = append(descs, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":%q,"size":%d}`, d, len(b)))
		}
		raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s]}`, ociManifest, descs[0], descs[1])
		d := digest.FromBytes(raw)
		if err := root.PutManifest(repo, d, ociManifest, raw); err != nil {
			t.Fatal(err)
		}
		if err := root.PutTag(repo, "v1", []catalog.TagVariant{{Digest: d, MediaType: ociManifest}}); err != nil {
			t.Fatal(err)
		}
		h.images[repo] = d
		return d
	}
	link := func(what, at, to string) {
		t.Helper()
		target := to
		if relative {
			if target, err = filepath.Rel(filepath.Dir(at), to); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.RemoveAll(at); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
		h.links[at] = what
	}
	for _, repo := range []string{"app", "headers", "tagslist", "blobsdir", "nginx"} {
		image(repo)
	}
	// A real type map (app:linked) and a real .htaccess for the planted
	// index.json, so that only the link keeps the fake manifest out.
	write(root.TypeMapPath("app", "linked"), typemap.Map{URI: "linked", Variants: []typemap.Variant{catalog.TypeMapVariant(catalog.TagVariant{Digest: h.m, MediaType: ociManifest})}}.Marshal())
	write(root.HeadersPath("app", h.m), fmt.Appendf(nil, "Header set Content-Type %q\nHeader set Docker-Content-Digest %q\n", ociManifest, h.m))
	write(root.TypeMapPath("mdir", "latest"), typemap.Map{URI: "latest", Variants: []typemap.Variant{catalog.TypeMapVariant(catalog.TagVariant{Digest: h.m, MediaType: ociManifest})}}.Marshal())

	link("a blob", root.BlobPath("app", h.marker), out("marker"))
	link("a manifest's index.json", root.ManifestPath("app", h.m), filepath.Join(md, "index.json"))
	link("a type map", root.TypeMapPath("app", "evil"), out("evil", "manifests", "latest.type-map"))
	link("a referrers index", root.ReferrersPath("app", h.m), out("evil", "referrers", h.m.String()))
	link("a manifest's .htaccess", root.HeadersPath("headers", h.images["headers"]), filepath.Join(md, ".htaccess"))
	link("a tags/list", root.TagsListPath("tagslist"), out("evil", "tags", "list"))
	link("a repository", root.RepoDir("evil"), out("evil"))
	link("a blobs/ directory", filepath.Join(root.RepoDir("blobsdir"), "blobs"), out("evil", "blobs"))
	link("a manifest directory", root.ManifestDir("mdir", h.m), md)
	link("nginx's tag link directory", filepath.Join(root.RepoDir("nginx"), "manifests", ".tags"), out("evil", "manifests", ".tags"))
	link("_catalog", root.CatalogPath(), out("marker"))
	link("v2/index.json", root.PingPath(), out("marker"))
	return h
}

// snapshot is the outside directory as text: it must not change.
func (h *hostileTree) snapshot(t *testing.T) string { return testtree.Snapshot(t, h.outside) }

// watch reports every access to the files and directories under dir from
// now on — an open, a read, a write, a removal, a change of attributes —
// by this process or any other, with inotify(7). The kernel queues each
// event during the call that causes it, so the events of a call that has
// returned are there to read: no waiting.
func watch(t *testing.T, dir string) (events func() []string) {
	t.Helper()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	var all []string // listed before watching: the listing is no event
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			all = append(all, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[int32]string{}
	for _, p := range all {
		wd, err := syscall.InotifyAddWatch(fd, p, syscall.IN_ALL_EVENTS|syscall.IN_DONT_FOLLOW)
		if err != nil {
			t.Fatal(err)
		}
		dirs[int32(wd)] = p
	}
	names := map[uint32]string{
		syscall.IN_ACCESS: "read", syscall.IN_MODIFY: "write", syscall.IN_ATTRIB: "attrib",
		syscall.IN_CLOSE_WRITE: "close", syscall.IN_CLOSE_NOWRITE: "close", syscall.IN_OPEN: "open",
		syscall.IN_MOVED_FROM: "rename", syscall.IN_MOVED_TO: "rename", syscall.IN_CREATE: "create",
		syscall.IN_DELETE: "remove", syscall.IN_DELETE_SELF: "remove", syscall.IN_MOVE_SELF: "rename",
	}
	return func() []string {
		var out []string
		buf := make([]byte, 64<<10)
		for {
			n, err := syscall.Read(fd, buf)
			if err == syscall.EINTR {
				continue
			}
			if err == syscall.EAGAIN || n <= 0 {
				return out
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00"))
				off += syscall.SizeofInotifyEvent + int(ev.Len)
				if ev.Mask&syscall.IN_IGNORED != 0 {
					continue
				}
				what := fmt.Sprintf("%#x", ev.Mask)
				for bit, s := range names {
					if ev.Mask&bit != 0 {
						what = s
					}
				}
				out = append(out, what+" "+filepath.Join(dirs[ev.Wd], name))
			}
		}
	}
}

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
					catalog.WithoutOpenat2(h.root)
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
	if after := h.snapshot(t); after != before {
		t.Errorf("outside the root changed:\n%s", testtree.Diff(before, after))
	}
}

// TestConfinedReads: every read through a planted link fails with
// ErrOutsideRoot, which is also fs.ErrNotExist (servers answer 404), and
// opens nothing outside the root.
func TestConfinedReads(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.root
		err := func(_ any, err error) error { return err }
		reads := []struct {
			name string
			read func() error
		}{
			{"OpenBlob through a blob link", func() error { return err(r.OpenBlob("app", h.marker)) }},
			{"ReadManifest through index.json", func() error { return err(r.ReadManifest("app", h.m)) }},
			{"ManifestChanged through index.json", func() error { return err(r.ManifestChanged("app", h.m)) }},
			{"TagVariants through a type map", func() error { return err(r.TagVariants("app", "evil")) }},
			{"ReadReferrers through an index", func() error { return err(r.ReadReferrers("app", h.m)) }},
			{"ReadHeaders through .htaccess", func() error { return err(r.ReadHeaders("headers", h.images["headers"])) }},
			{"ManifestMediaType through .htaccess", func() error { return err(r.ManifestMediaType("headers", h.images["headers"])) }},
			{"ReadTagsList through tags/list", func() error { _, _, err := r.ReadTagsList("tagslist"); return err }},
			{"ReadTagsList of a linked repository", func() error { _, _, err := r.ReadTagsList("evil"); return err }},
			{"TagVariants of a linked repository", func() error { return err(r.TagVariants("evil", "latest")) }},
			{"ReadManifest of a linked repository", func() error { return err(r.ReadManifest("evil", h.m)) }},
			{"OpenBlob of a linked repository", func() error { return err(r.OpenBlob("evil", h.blobs[0])) }},
			{"Tags of a linked repository", func() error { return err(r.Tags("evil")) }},
			{"ManifestDigests of a linked repository", func() error { return err(r.ManifestDigests("evil")) }},
			{"Blobs of a linked repository", func() error { return err(r.Blobs("evil")) }},
			{"ReferrerSubjects of a linked repository", func() error { return err(r.ReferrerSubjects("evil")) }},
			{"Blobs through a blobs/ link", func() error { return err(r.Blobs("blobsdir")) }},
			{"OpenBlob through a blobs/ link", func() error { return err(r.OpenBlob("blobsdir", h.blobs[0])) }},
			{"BlobInodes through a blobs/ link", func() error { return err(r.BlobInodes("blobsdir", h.blobs[0])) }},
			{"ReadManifest through a manifest directory link", func() error { return err(r.ReadManifest("mdir", h.m)) }},
			{"ReadHeaders through a manifest directory link", func() error { return err(r.ReadHeaders("mdir", h.m)) }},
			{"ReadCatalog through _catalog", func() error { return err(r.ReadCatalog()) }},
			{"OpenInTree through v2/index.json", func() error { return err(r.OpenInTree(r.PingPath())) }},
			{"OpenInTree through tags/list", func() error { return err(r.OpenInTree(r.TagsListPath("tagslist"))) }},
			{"OpenInTree through index.json", func() error { return err(r.OpenInTree(r.ManifestPath("app", h.m))) }},
			{"StatInTree through a manifest directory link", func() error { return err(r.StatInTree(r.ManifestPath("mdir", h.m))) }},
		}
		before := h.snapshot(t)
		events := watch(t, h.outside)
		for _, rd := range reads {
			err := rd.read()
			if !errors.Is(err, catalog.ErrOutsideRoot) || !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %v, want ErrOutsideRoot (and fs.ErrNotExist)", rd.name, err)
			} else if !strings.Contains(err.Error(), r.Dir()) {
				t.Errorf("%s: %v does not name the path in the tree", rd.name, err)
			}
			if ev := events(); len(ev) > 0 {
				t.Errorf("%s: accessed outside the root:\n%s", rd.name, strings.Join(ev, "\n"))
			}
		}
		// Nor does anything that answers without an error.
		if r.ManifestComplete("mdir", h.m) || r.ManifestComplete("app", h.m) {
			t.Error("ManifestComplete through a link leading outside")
		}
		if r.HasManifests("evil") {
			t.Error("HasManifests of a linked repository")
		}
		checkOutsideUntouched(t, h, before, events())
	})
}

// TestConfinedListings: listings never name what a planted link leads
// to, nor the links themselves as blobs, tags or repositories.
func TestConfinedListings(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.root
		before := h.snapshot(t)
		events := watch(t, h.outside)
		repos, err := r.StoredRepositories()
		if want := []string{"app", "blobsdir", "headers", "mdir", "nginx", "tagslist"}; err != nil || !slices.Equal(repos, want) {
			t.Errorf("StoredRepositories = %v, %v; want %v", repos, err, want)
		}
		if tags, err := r.Tags("app"); err != nil || !slices.Equal(tags, []string{"linked", "v1"}) {
			t.Errorf("Tags(app) = %v, %v; want the regular type maps only", tags, err)
		}
		if bs, err := r.Blobs("app"); err != nil || slices.ContainsFunc(bs, func(b catalog.StoredBlob) bool { return b.Digest == h.marker }) {
			t.Errorf("Blobs(app) = %v, %v: lists the blob link", bs, err)
		}
		if ds, err := r.ManifestDigests("mdir"); err != nil || len(ds) != 0 {
			t.Errorf("ManifestDigests(mdir) = %v, %v: lists the manifest directory link", ds, err)
		}
		if ss, err := r.ReferrerSubjects("app"); err != nil || len(ss) != 0 {
			t.Errorf("ReferrerSubjects(app) = %v, %v: lists the link", ss, err)
		}
		checkOutsideUntouched(t, h, before, events())
	})
}

// TestOutsideLinks: the whole tree's and each repository's links leading
// outside are found, and the layout's; the tree's own links are not.
func TestOutsideLinks(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.root
		before := h.snapshot(t)
		events := watch(t, h.outside)
		links, err := r.OutsideLinks("")
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
		for p := range h.links {
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
			{"app", []string{r.BlobPath("app", h.marker), r.ManifestPath("app", h.m), r.ReferrersPath("app", h.m), r.TypeMapPath("app", "evil")}, nil},
			{"evil", []string{r.RepoDir("evil")}, []string{r.RepoDir("evil")}},
			{"evil/nested", []string{r.RepoDir("evil")}, []string{r.RepoDir("evil")}},
			{"blobsdir", []string{filepath.Join(r.RepoDir("blobsdir"), "blobs")}, []string{filepath.Join(r.RepoDir("blobsdir"), "blobs")}},
			{"nginx", []string{filepath.Join(r.RepoDir("nginx"), "manifests", ".tags")}, []string{filepath.Join(r.RepoDir("nginx"), "manifests", ".tags")}},
			{"mdir", []string{r.ManifestDir("mdir", h.m)}, nil},
			{"headers", []string{r.HeadersPath("headers", h.images["headers"])}, nil},
			{"tagslist", []string{r.TagsListPath("tagslist")}, nil},
		} {
			paths := func(ls []catalog.OutsideLink, err error) []string {
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
			if got := paths(r.OutsideLinks(tt.repo)); !slices.Equal(got, tt.links) {
				t.Errorf("OutsideLinks(%s) = %v, want %v", tt.repo, got, tt.links)
			}
			if got := paths(r.OutsideLayout(tt.repo)); !slices.Equal(got, tt.layout) {
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
	isLink := func(r *catalog.Root, p string) bool {
		fi, err := os.Lstat(p)
		return err == nil && fi.Mode()&fs.ModeSymlink != 0
	}
	tests := []struct {
		name   string
		change func(h *hostileTree) error
		want   string
		after  func(h *hostileTree) error // what the tree holds then
	}{
		{"RemoveBlob of a blob link", func(h *hostileTree) error { _, err := h.root.RemoveBlob("app", h.marker); return err }, ok,
			func(h *hostileTree) error { return gone(h.root.BlobPath("app", h.marker)) }},
		{"RemoveBlob through a blobs/ link", func(h *hostileTree) error { _, err := h.root.RemoveBlob("blobsdir", h.blobs[0]); return err }, outside, nil},
		{"RemoveManifest of an index.json link", func(h *hostileTree) error { return h.root.RemoveManifest("app", h.m) }, ok,
			func(h *hostileTree) error { return gone(h.root.ManifestDir("app", h.m)) }},
		{"RemoveManifest through a manifest directory link", func(h *hostileTree) error { return h.root.RemoveManifest("mdir", h.m) }, outside, nil},
		{"RemoveManifest of a linked repository", func(h *hostileTree) error { return h.root.RemoveManifest("evil", h.m) }, outside, nil},
		{"RemoveRepo of a linked repository", func(h *hostileTree) error { _, err := h.root.RemoveRepo("evil"); return err }, outside, nil},
		{"RemoveRepo with a blobs/ link", func(h *hostileTree) error {
			if err := h.root.DeleteTag("blobsdir", "v1"); err != nil {
				return err
			}
			if err := h.root.RemoveManifest("blobsdir", h.images["blobsdir"]); err != nil {
				return err
			}
			if gone, err := h.root.RemoveRepo("blobsdir"); !gone || err != nil {
				return fmt.Errorf("RemoveRepo: %v, %v", gone, err)
			}
			return nil
		}, ok, func(h *hostileTree) error { return gone(h.root.RepoDir("blobsdir")) }},
		{"DeleteTag of a linked repository", func(h *hostileTree) error { return h.root.DeleteTag("evil", "latest") }, outside, nil},
		{"DeleteTag of a type map link", func(h *hostileTree) error { return h.root.DeleteTag("app", "evil") }, ok,
			func(h *hostileTree) error { return gone(h.root.TypeMapPath("app", "evil")) }},
		{"DeleteTag with a tags/list link", func(h *hostileTree) error { return h.root.DeleteTag("tagslist", "v1") }, ok,
			func(h *hostileTree) error { return gone(h.root.TagsListPath("tagslist")) }},
		{"RefreshReferrers with a referrers link", func(h *hostileTree) error { return h.root.RefreshReferrers("app") }, ok, nil},
		{"SweepTemps", func(h *hostileTree) error { _, err := h.root.SweepTemps(); return err }, ok, nil},
		{"SweepEmptyDirs", func(h *hostileTree) error { _, err := h.root.SweepEmptyDirs(); return err }, ok, nil},
		{"SweepCatalogTemps", func(h *hostileTree) error { _, err := h.root.SweepCatalogTemps(); return err }, ok, nil},
		{"SweepRepoTemps of a linked repository", func(h *hostileTree) error { _, err := h.root.SweepRepoTemps("evil"); return err }, ok, nil},
		{"SweepRepoTemps with a blobs/ link", func(h *hostileTree) error { _, err := h.root.SweepRepoTemps("blobsdir"); return err }, ok, nil},
		{"PutBlob through a blobs/ link", func(h *hostileTree) error {
			_, _, err := h.root.PutBlob("blobsdir", digest.FromBytes(blob), int64(len(blob)), false, fetch)
			return err
		}, outside, nil},
		{"PutBlob of a blob outside into a linked repository", func(h *hostileTree) error {
			_, _, err := h.root.PutBlob("evil", h.blobs[0], -1, false, fetch)
			return err
		}, outside, nil},
		{"PutManifest through a manifest directory link", func(h *hostileTree) error {
			return h.root.PutManifest("mdir", h.m, ociManifest, h.raw)
		}, outside, nil},
		{"PutManifest into a linked repository", func(h *hostileTree) error {
			return h.root.PutManifest("evil", digest.FromString("{}"), ociManifest, []byte("{}"))
		}, outside, nil},
		{"PutTag on a linked repository", func(h *hostileTree) error {
			return h.root.PutTag("evil", "v2", []catalog.TagVariant{{Digest: h.m, MediaType: ociManifest}})
		}, failed, nil},
		{"PutTag over a type map link", func(h *hostileTree) error {
			return h.root.PutTag("app", "evil", []catalog.TagVariant{{Digest: h.images["app"], MediaType: ociManifest}})
		}, ok, func(h *hostileTree) error { return regular(h.root.TypeMapPath("app", "evil")) }},
		{"RefreshTags over a tags/list link", func(h *hostileTree) error { return h.root.RefreshTags("tagslist") }, ok,
			func(h *hostileTree) error { return regular(h.root.TagsListPath("tagslist")) }},
		{"RefreshCatalog over a _catalog link", func(h *hostileTree) error { return h.root.RefreshCatalog() }, ok,
			func(h *hostileTree) error { return regular(h.root.CatalogPath()) }},
		{"Init over a v2/index.json link", func(h *hostileTree) error { return h.root.Init() }, ok,
			func(h *hostileTree) error { return regular(h.root.PingPath()) }},
		{"RefreshTags through nginx's link directory", func(h *hostileTree) error { return h.root.RefreshTags("nginx") }, outside,
			func(h *hostileTree) error {
				if !isLink(h.root, filepath.Join(h.root.RepoDir("nginx"), "manifests", ".tags")) {
					return errors.New("the .tags link went")
				}
				return nil
			}},
		{"LinkForNginx", func(h *hostileTree) error { _, err := h.root.LinkForNginx(); return err }, outside, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			linkKindsPaired(t, func(t *testing.T, h *hostileTree) {
				before := h.snapshot(t)
				events := watch(t, h.outside)
				err := tt.change(h)
				switch {
				case tt.want == ok && err != nil,
					tt.want == outside && !errors.Is(err, catalog.ErrOutsideRoot),
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
	r, err := catalog.Open(filepath.Join(base, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.V2Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.Dir(), ".image-serve")); err != nil {
		t.Fatal(err)
	}
	events := watch(t, outside)
	for name, f := range map[string]func() error{
		"LockShared":    func() error { l, err := r.LockShared(); l.Unlock(); return err },
		"LockExclusive": func() error { l, err := r.LockExclusive(); l.Unlock(); return err },
		"TryLockGC":     func() error { l, err := r.TryLockGC(); l.Unlock(); return err },
		"Init":          r.Init,
		"DeleteTag":     func() error { return r.DeleteTag("app", "v1") },
	} {
		if err := f(); !errors.Is(err, catalog.ErrOutsideRoot) {
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
	r := h.root
	if err := os.Symlink("app", r.RepoDir("alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.TagVariants("alias", "v1"); err != nil {
		t.Errorf("TagVariants through a link inside the tree: %v", err)
	}
	if _, err := r.ReadManifest("alias", h.images["app"]); err != nil {
		t.Errorf("ReadManifest through a link inside the tree: %v", err)
	}
	link := filepath.Join(r.RepoDir("app"), "manifests", ".tags", "v1")
	fi, err := r.StatInTree(link)
	if err != nil || !fi.IsDir() {
		t.Errorf("nginx's tag link: %v, %v; want the manifest's directory", fi, err)
	}
	if inStep, err := r.TagsInStep("headers", []string{"v1"}); !inStep || err != nil {
		t.Errorf("TagsInStep(headers) = %v, %v", inStep, err)
	}
	if links, err := r.OutsideLinks("alias"); err != nil || len(links) != 0 {
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
	r, err := catalog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadCatalog(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), r.CatalogPath()) {
		t.Errorf("ReadCatalog before the tree exists: %v", err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	if err := r.RefreshCatalog(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadCatalog(); err != nil {
		t.Errorf("ReadCatalog once the tree exists: %v", err)
	}
	if fds := openInside(t, dir); len(fds) > 0 {
		t.Errorf("descriptors left open after the operations:\n%s", strings.Join(fds, "\n"))
	}
	l, err := r.LockShared()
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
	r2, err := catalog.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Init(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadCatalog(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadCatalog of the new tree, which has none: %v", err)
	}
	if _, err := r.OpenInTree(r.PingPath()); err != nil {
		t.Errorf("v2/index.json of the new tree: %v", err)
	}
}

// TestReadDirAsOS: the tree's own directory listing (getdents64 after
// openat2, or os.Root's) names and types entries as os.ReadDir does.
func TestReadDirAsOS(t *testing.T) {
	for _, osRoot := range []bool{false, true} {
		r, err := catalog.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if osRoot {
			catalog.WithoutOpenat2(r)
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
		got, err := catalog.ReadDir(r, dir)
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
		if _, err := catalog.ReadDir(r, filepath.Join(dir, "link", "..", "f000-"+strings.Repeat("x", 40))); err == nil {
			t.Errorf("osRoot=%v: readDir of a file: no error", osRoot)
		}
	}
}

// TestReadsAcrossLocks: readers holding no lock keep reading correctly
// while another goroutine takes and drops the tree lock, which opens and
// closes the descriptor the Root keeps while locked.
func TestReadsAcrossLocks(t *testing.T) {
	h := buildHostileTree(t, false)
	r, d := h.root, h.images["app"]
	want, err := r.ReadManifest("app", d)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			for range 500 {
				got, err := r.ReadManifest("app", d)
				if err == nil && !bytes.Equal(got, want) {
					err = fmt.Errorf("read %q", got)
				}
				if err == nil {
					_, err = r.ReadManifest("app", h.m)
					if errors.Is(err, catalog.ErrOutsideRoot) {
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
		l, err := r.LockShared()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadManifest("app", d); err != nil {
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
