package gc_test

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
	"time"
	"unsafe"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/gc"
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
	before := h.snapshot(t)
	events := watch(t, h.outside)
	do()
	if ev := events(); len(ev) > 0 {
		t.Errorf("accessed outside the root:\n%s", strings.Join(ev, "\n"))
	}
	if after := h.snapshot(t); after != before {
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
		r := h.root
		var all []string
		for p := range h.links {
			all = append(all, p)
		}
		tests := []struct {
			repos []string
			want  []string
		}{
			{nil, all},
			{[]string{"evil"}, []string{r.RepoDir("evil")}},
			{[]string{"blobsdir", "nginx"}, []string{filepath.Join(r.RepoDir("blobsdir"), "blobs"), filepath.Join(r.RepoDir("nginx"), "manifests", ".tags")}},
			{[]string{"app"}, []string{r.BlobPath("app", h.marker), r.TypeMapPath("app", "evil"), r.ManifestPath("app", h.m), r.ReferrersPath("app", h.m)}},
			{[]string{"headers", "mdir", "tagslist"}, []string{r.ManifestDir("mdir", h.m), r.HeadersPath("headers", h.images["headers"]), r.TagsListPath("tagslist")}},
		}
		untouched(t, h, func() {
			// Verify waits for disagreements to settle: let the waits
			// overlap. The group returns when every verify has.
			t.Run("verify", func(t *testing.T) {
				for _, tt := range tests {
					if tt.repos != nil {
						tt.want = append(tt.want, r.CatalogPath()) // _catalog is checked whatever the repositories
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
							if h.links[p.Path] != "" && seen[p.Path] {
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
				r := h.root
				untouched(t, h, func() {
					rep, err := gc.Collect(r, gc.Options{Now: later, DryRun: dry, Jobs: 1})
					var pe *gc.ProblemsError
					if !errors.As(err, &pe) {
						t.Fatalf("Collect: %v, want the problems", err)
					}
					got := problemPaths(rep.Problems)
					for _, p := range []string{r.ManifestPath("app", h.m), filepath.Join(r.RepoDir("blobsdir"), "blobs"), filepath.Join(r.RepoDir("nginx"), "manifests", ".tags")} {
						if !slices.Contains(got, p) {
							t.Errorf("Collect: no problem at %s; problems: %v", p, rep.Problems)
						}
					}
				})
				for _, p := range []string{r.TagsListPath("blobsdir"), r.TagsListPath("nginx"), r.TypeMapPath("mdir", "latest"), r.ManifestPath("app", h.images["app"])} {
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
				ref, err := gc.ParseRef(strings.ReplaceAll(tt.ref, "{m}", h.m.String()))
				if err != nil {
					t.Fatal(err)
				}
				untouched(t, h, func() {
					_, err := gc.Delete(h.root, []gc.Ref{ref}, gc.DeleteOptions{Now: later})
					if tt.outside && (err == nil || !strings.Contains(err.Error(), "outside the tree")) {
						t.Errorf("Delete %s: %v, want an error saying it leads outside the tree", ref, err)
					}
				})
			})
		})
	}
}
