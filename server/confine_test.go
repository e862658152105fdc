package server_test

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/server"
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

// answer is what the server sent.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string {
	return fmt.Sprintf("%d %s %q", a.status, a.header.Get("Content-Type"), a.body)
}

// leaks reports whether a carries anything from outside the root.
func (a answer) leaks() bool {
	if bytes.Contains(a.body, []byte(secret)) {
		return true
	}
	for _, vs := range a.header {
		for _, v := range vs {
			if strings.Contains(v, secret) {
				return true
			}
		}
	}
	return false
}

func serve(h http.Handler, method, path string) answer {
	rec := httptest.NewRecorder()
	// The handler returns when it has closed what it opened: the events of
	// one request are all queued when ServeHTTP returns.
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, body}
}

// TestServerConfined: for every path a planted link makes lead outside
// the root, the embedded server answers exactly as it does once the link
// is gone — the answer for a missing file — and never with a byte from
// outside, nor opening anything there.
func TestServerConfined(t *testing.T) {
	linkKinds(t, func(t *testing.T, h *hostileTree) {
		r := h.root
		requests := []struct {
			path string
		}{
			{"/v2/app/blobs/" + h.marker.String()},
			{"/v2/app/manifests/" + h.m.String()},
			{"/v2/app/manifests/linked"},
			{"/v2/app/manifests/evil"},
			{"/v2/app/referrers/" + h.m.String()},
			{"/v2/headers/manifests/" + h.images["headers"].String()},
			{"/v2/headers/manifests/v1"},
			{"/v2/tagslist/tags/list"},
			{"/v2/tagslist/tags/list?n=1"},
			{"/v2/evil/tags/list"},
			{"/v2/evil/manifests/latest"},
			{"/v2/evil/manifests/" + h.m.String()},
			{"/v2/evil/blobs/" + h.blobs[0].String()},
			{"/v2/evil/referrers/" + h.m.String()},
			{"/v2/blobsdir/blobs/" + h.blobs[0].String()},
			{"/v2/blobsdir/blobs/" + h.blobs[1].String()},
			{"/v2/mdir/manifests/" + h.m.String()},
			{"/v2/mdir/manifests/latest"},
			{"/v2/nginx/manifests/v1"},
			{"/v2/_catalog"},
			{"/v2/"},
		}
		handler := server.New(r, nil)
		before := h.snapshot(t)
		events := watch(t, h.outside)
		got := map[string]answer{}
		touched := map[string][]string{}
		for _, rq := range requests {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				got[method+" "+rq.path] = serve(handler, method, rq.path)
				touched[method+" "+rq.path] = events()
			}
		}
		if after := h.snapshot(t); after != before {
			t.Errorf("outside the root changed:\n%s", testtree.Diff(before, after))
		}
		// The same requests once every planted link is gone.
		for p := range h.links {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		for _, rq := range requests {
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				key := method + " " + rq.path
				t.Run(strings.ReplaceAll(key, "/", "_"), func(t *testing.T) {
					a, missing := got[key], serve(handler, method, rq.path)
					confined := !a.leaks() && len(touched[key]) == 0 && a.status == missing.status && bytes.Equal(a.body, missing.body) &&
						a.header.Get("Content-Type") == missing.header.Get("Content-Type") && a.header.Get("Content-Length") == missing.header.Get("Content-Length")
					if !confined {
						t.Errorf("through the link: %v\nonce it is gone: %v", a, missing)
						if len(touched[key]) > 0 {
							t.Errorf("accessed outside the root:\n%s", strings.Join(touched[key], "\n"))
						}
					}
				})
			}
		}
	})
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
