// Package hostiletree builds hostile trees for tests: a tree with a
// symlink planted at every place a server reads, or a collector reads or
// removes, each leading outside the root — to a marker file, or into a
// fake repository of 15 entries next to the root, whose files all carry
// the Secret — and watches the outside for any access. Tests only.
package hostiletree

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// Secret is in every file outside the root.
const Secret = "secret-from-outside-the-root"

const OCIManifest = "application/vnd.oci.image.manifest.v1+json"

// Tree is what Build made.
type Tree struct {
	Root    *tree.Root
	Outside string          // the directory next to the root
	Marker  digest.Digest   // of outside/marker
	M       digest.Digest   // the fake repository's manifest
	Raw     []byte          // its bytes
	Blobs   []digest.Digest // its blobs
	Images  map[string]digest.Digest
	Links   map[string]string // planted link → what it stands for
}

// Build builds a tree with real repositories and the planted links:
// absolute, or relative ("../../…") when relative is set.
func Build(t testing.TB, relative bool) *Tree {
	t.Helper()
	root, outside := NewRoot(t)
	h := &Tree{Root: root, Outside: outside, Images: map[string]digest.Digest{}, Links: map[string]string{}}
	write := func(p string, b []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := func(parts ...string) string { return filepath.Join(append([]string{h.Outside}, parts...)...) }

	// Outside: the marker, and a complete repository "evil" of 15 entries.
	write(out("marker"), []byte(Secret))
	h.Marker = digest.FromString(Secret)
	var descs []string
	for _, part := range []string{"config", "layer"} {
		b := []byte(Secret + " " + part)
		d := digest.FromBytes(b)
		h.Blobs = append(h.Blobs, d)
		write(out("evil", "blobs", d.String()), b)
		descs = append(descs, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":%q,"size":%d}`, d, len(b)))
	}
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s],"annotations":{"s":%q}}`, OCIManifest, descs[0], descs[1], Secret)
	h.M, h.Raw = digest.FromBytes(raw), raw
	md := out("evil", "manifests", h.M.String())
	write(filepath.Join(md, "index.json"), raw)
	write(filepath.Join(md, "manifest.oci-manifest"), raw)
	write(filepath.Join(md, ".htaccess"), fmt.Appendf(nil, "Header set Content-Type \"application/vnd.%s+json\"\nHeader set Docker-Content-Digest %q\n", Secret, h.M))
	typeMap := typemap.Map{URI: "latest", Variants: []typemap.Variant{tree.TypeMapVariant(tree.TagVariant{Digest: h.M, MediaType: OCIManifest})}}.Marshal()
	write(out("evil", "manifests", "latest.type-map"), append(typeMap, "# "+Secret+"\n"...))
	if err := os.MkdirAll(out("evil", "manifests", ".tags"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../"+h.M.String(), out("evil", "manifests", ".tags", "latest")); err != nil {
		t.Fatal(err)
	}
	write(out("evil", "tags", "list"), fmt.Appendf(nil, `{"name":"evil","tags":["latest","%s"]}`, Secret))
	write(out("evil", "referrers", h.M.String()), fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"s":%q}}`, Secret))

	// Inside: real repositories, each exported as an image, tag v1.
	image := func(repo string) digest.Digest {
		t.Helper()
		d := Export(t, root, repo, "v1").Manifest
		h.Images[repo] = d
		return d
	}
	link := func(what, at, to string) {
		t.Helper()
		target := to
		if relative {
			var err error
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
		h.Links[at] = what
	}
	for _, repo := range []string{"app", "headers", "tagslist", "blobsdir", "nginx"} {
		image(repo)
	}
	// A real type map (app:linked) and a real .htaccess for the planted
	// index.json, so that only the link keeps the fake manifest out.
	fx := tree.Fixture(root)
	write(fx.TypeMapPath("app", "linked"), typemap.Map{URI: "linked", Variants: []typemap.Variant{tree.TypeMapVariant(tree.TagVariant{Digest: h.M, MediaType: OCIManifest})}}.Marshal())
	write(fx.HeadersPath("app", h.M), fmt.Appendf(nil, "Header set Content-Type %q\nHeader set Docker-Content-Digest %q\n", OCIManifest, h.M))
	write(fx.TypeMapPath("mdir", "latest"), typemap.Map{URI: "latest", Variants: []typemap.Variant{tree.TypeMapVariant(tree.TagVariant{Digest: h.M, MediaType: OCIManifest})}}.Marshal())

	link("a blob", fx.BlobPath("app", h.Marker), out("marker"))
	link("a manifest's index.json", fx.ManifestPath("app", h.M), filepath.Join(md, "index.json"))
	link("a type map", fx.TypeMapPath("app", "evil"), out("evil", "manifests", "latest.type-map"))
	link("a referrers index", fx.ReferrersPath("app", h.M), out("evil", "referrers", h.M.String()))
	link("a manifest's .htaccess", fx.HeadersPath("headers", h.Images["headers"]), filepath.Join(md, ".htaccess"))
	link("a tags/list", fx.TagsListPath("tagslist"), out("evil", "tags", "list"))
	link("a repository", fx.RepoDir("evil"), out("evil"))
	link("a blobs/ directory", filepath.Join(fx.RepoDir("blobsdir"), "blobs"), out("evil", "blobs"))
	link("a manifest directory", fx.ManifestDir("mdir", h.M), md)
	link("nginx's tag link directory", filepath.Join(fx.RepoDir("nginx"), "manifests", ".tags"), out("evil", "manifests", ".tags"))
	link("_catalog", fx.CatalogPath(), out("marker"))
	link("v2/index.json", fx.PingPath(), out("marker"))
	return h
}

// Snapshot is the outside directory as text: it must not change.
func (h *Tree) Snapshot(t testing.TB) string { return testtree.Snapshot(t, h.Outside) }

// Watch reports every access to the files and directories under dir from
// now on — an open, a read, a write, a removal, a change of attributes —
// by this process or any other, with inotify(7). The kernel queues each
// event during the call that causes it, so the events of a call that has
// returned are there to read: no waiting.
func Watch(t testing.TB, dir string) (events func() []string) {
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

// Image is what Export wrote: a manifest and its blobs, config first.
type Image struct {
	Manifest digest.Digest
	Blobs    []digest.Digest
}

// Export writes an image of two small blobs, named after repo and tag,
// into repo as tag, through the tree's writers.
func Export(t testing.TB, root *tree.Root, repo, tag string) Image {
	t.Helper()
	var im Image
	var descs []string
	fx := tree.Fixture(root)
	for _, part := range []string{"config", "layer"} {
		b := []byte(repo + ":" + tag + " " + part)
		d := digest.FromBytes(b)
		if _, _, err := fx.PutBlob(repo, d, int64(len(b)), false, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
			t.Fatal(err)
		}
		im.Blobs = append(im.Blobs, d)
		descs = append(descs, fmt.Sprintf(`{"mediaType":"application/octet-stream","digest":%q,"size":%d}`, d, len(b)))
	}
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s]}`, OCIManifest, descs[0], descs[1])
	im.Manifest = digest.FromBytes(raw)
	if err := fx.PutManifest(repo, im.Manifest, OCIManifest, raw); err != nil {
		t.Fatal(err)
	}
	if err := fx.PutTag(repo, tag, []tree.TagVariant{{Digest: im.Manifest, MediaType: OCIManifest}}); err != nil {
		t.Fatal(err)
	}
	return im
}

// PlantFIFO replaces whatever is at path (its directory made if missing)
// with a FIFO, as anyone who can write to the tree can. open(2) of a FIFO
// for reading waits for a writer: code that opens it blocking hangs. When
// the test ends, whoever still waits in such an open is let go (the FIFO
// is opened for writing and closed again), so that such code fails its
// test instead of keeping a thread blocked for the rest of the run.
func PlantFIFO(t testing.TB, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ReleaseFIFO(path) })
}

// ReleaseFIFO lets go whoever waits to open the FIFO at path for reading:
// it opens it for writing without blocking — which fails at once when
// nobody waits — and closes it, so that a waiting reader reads its end.
func ReleaseFIFO(path string) {
	for range 100 {
		fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err != nil {
			return // no reader waits, or no FIFO any more
		}
		syscall.Close(fd)
	}
}

// Referrer writes into repo a manifest whose subject is subject, and the
// subject's referrers index, through the tree's writers.
func Referrer(t testing.TB, root *tree.Root, repo string, subject digest.Digest) digest.Digest {
	t.Helper()
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"subject":{"mediaType":%q,"digest":%q,"size":1}}`, OCIManifest, OCIManifest, subject)
	d := digest.FromBytes(raw)
	if err := tree.Fixture(root).PutManifest(repo, d, OCIManifest, raw); err != nil {
		t.Fatal(err)
	}
	if err := tree.Fixture(root).UpdateReferrers(repo, subject); err != nil {
		t.Fatal(err)
	}
	return d
}

// PlantSocket replaces whatever is at path with a listening unix socket,
// closed when the test ends. It is bound in a short temporary directory
// and renamed into place: a socket's address has room for 107 bytes.
func PlantSocket(t testing.TB, path string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "s"), path); err != nil {
		t.Fatal(err)
	}
}

// NewRoot makes an initialised, empty tree at BASE/root in a temporary
// directory, and returns it with BASE/outside: the path beside it where
// tests put what must stay untouched (not created here).
func NewRoot(t testing.TB) (root *tree.Root, outside string) {
	t.Helper()
	base := t.TempDir()
	root, err := tree.Open(filepath.Join(base, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	return root, filepath.Join(base, "outside")
}

// OpenDescriptors lists the descriptors of this process open on path or
// on anything below it, each as "FD -> TARGET": what a test of a reader
// checks is left over after a refusal.
func OpenDescriptors(t testing.TB, path string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range entries {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && (target == path || strings.HasPrefix(target, path+"/")) {
			fds = append(fds, e.Name()+" -> "+target)
		}
	}
	return fds
}
