package imagefs

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ent is a tar entry for a test layer: "name" a file with body, "name/"
// a directory, "name -> target" a symlink, "name => target" a hard link.
type ent struct {
	spec string
	body string
	mode int64
	uid  int
}

func tarOf(t testing.TB, es ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Mode: 0o644, Uid: e.uid, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		switch {
		case strings.Contains(e.spec, " -> "):
			h.Name, h.Linkname, _ = strings.Cut(e.spec, " -> ")
			h.Typeflag = tar.TypeSymlink
		case strings.Contains(e.spec, " => "):
			h.Name, h.Linkname, _ = strings.Cut(e.spec, " => ")
			h.Typeflag = tar.TypeLink
		case strings.HasSuffix(e.spec, "/"):
			h.Name, h.Typeflag, h.Mode = e.spec, tar.TypeDir, 0o755
		default:
			h.Name, h.Typeflag, h.Size = e.spec, tar.TypeReg, int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func build(t *testing.T, layers ...[]ent) *FS {
	t.Helper()
	f := New()
	for i, l := range layers {
		es, err := List(bytes.NewReader(tarOf(t, l...)))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if err := f.Apply(es); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	return f
}

// listing is f's paths, one line each: path type layer [link].
func listing(f *FS) string {
	var b strings.Builder
	for _, n := range f.Files() {
		fmt.Fprintf(&b, "%s %s %d", n.Path, n.Type, n.Layer)
		if n.Link != "" {
			fmt.Fprintf(&b, " %s", n.Link)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestWhiteoutAndOpaque(t *testing.T) {
	f := build(t,
		[]ent{{spec: "a/"}, {spec: "a/x", body: "x"}, {spec: "a/y", body: "y"}, {spec: "b/"}, {spec: "b/old", body: "o"}, {spec: "b/sub/"}, {spec: "b/sub/deep", body: "d"}},
		[]ent{{spec: "a/.wh.x"}, {spec: "b/"}, {spec: "b/.wh..wh..opq"}, {spec: "b/new", body: "n"}},
	)
	want := "a dir 0\na/y file 0\nb dir 1\nb/new file 1\n"
	if got := listing(f); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	if _, err := f.Lookup("/a/x"); !isDeleted(err, 1) {
		t.Errorf("a/x: %v, want deleted in layer 1", err)
	}
	if _, err := f.Lookup("/b/sub/deep"); !isDeleted(err, 1) {
		t.Errorf("b/sub/deep: %v, want deleted in layer 1", err)
	}
	if _, err := f.Lookup("/nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nope: %v", err)
	}
}

func isDeleted(err error, layer int) bool {
	var de *DeletedError
	return errors.As(err, &de) && de.Layer == layer
}

// An opaque marker at the top hides every lower path.
func TestOpaqueRoot(t *testing.T) {
	f := build(t,
		[]ent{{spec: "a/"}, {spec: "a/x", body: "x"}, {spec: "b", body: "b"}},
		[]ent{{spec: ".wh..wh..opq"}, {spec: "c", body: "c"}},
	)
	if got, want := listing(f), "c file 1\n"; got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	if _, err := f.Lookup("/a/x"); !isDeleted(err, 1) {
		t.Errorf("a/x: %v", err)
	}
}

// An opaque marker whose entries come before it in the layer keeps them.
func TestOpaqueAfterEntries(t *testing.T) {
	f := build(t,
		[]ent{{spec: "d/"}, {spec: "d/old", body: "o"}},
		[]ent{{spec: "d/new", body: "n"}, {spec: "d/.wh..wh..opq"}},
	)
	if got, want := listing(f), "d dir 0\nd/new file 1\n"; got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

// An opaque marker reached through a symlinked directory hides the real
// directory's lower contents; the link stays.
func TestOpaqueThroughSymlink(t *testing.T) {
	f := build(t,
		[]ent{{spec: "usr/"}, {spec: "usr/lib/"}, {spec: "usr/lib/a", body: "a"}, {spec: "lib -> usr/lib"}},
		[]ent{{spec: "lib/.wh..wh..opq"}, {spec: "lib/c", body: "c"}},
	)
	want := "lib symlink 0 usr/lib\nusr dir 0\nusr/lib dir 0\nusr/lib/c file 1\n"
	if got := listing(f); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
	n, err := f.Lookup("/lib/c")
	if err != nil || n.Path != "usr/lib/c" {
		t.Errorf("lib/c: %v %v", n, err)
	}
}

// A symlinked directory replaced by a real one, made opaque: the link's
// target keeps its contents (stereoscope #694's case).
func TestOpaqueReplacingSymlink(t *testing.T) {
	f := build(t,
		[]ent{{spec: "run/"}, {spec: "run/pid", body: "1"}, {spec: "var/"}, {spec: "var/run -> ../run"}},
		[]ent{{spec: "var/run/"}, {spec: "var/run/.wh..wh..opq"}, {spec: "var/run/x", body: "x"}},
	)
	want := "run dir 0\nrun/pid file 0\nvar dir 0\nvar/run dir 1\nvar/run/x file 1\n"
	if got := listing(f); got != want {
		t.Errorf("got\n%swant\n%s", got, want)
	}
}

// Symlinks never lead out of the image: ".." at the root stays there,
// an absolute target starts at the image's root.
func TestSymlinksStayInside(t *testing.T) {
	f := build(t,
		[]ent{{spec: "etc/"}, {spec: "etc/passwd", body: "in"}, {spec: "up -> ../../../etc"}, {spec: "abs -> /etc/passwd"}},
		[]ent{{spec: "up/new", body: "n"}},
	)
	for _, p := range []string{"up/passwd", "abs", "/up/../etc/passwd"} {
		n, err := f.Lookup(p)
		if err != nil || n.Path != "etc/passwd" {
			t.Errorf("%s: %v %v", p, n, err)
		}
	}
	if n, err := f.Lookup("etc/new"); err != nil || n.Layer != 1 {
		t.Errorf("etc/new: %v %v", n, err)
	}
}

func TestSymlinkLoop(t *testing.T) {
	f := build(t, []ent{{spec: "a -> b"}, {spec: "b -> a"}})
	if _, err := f.Lookup("a"); !errors.Is(err, ErrLoop) {
		t.Errorf("got %v", err)
	}
	es, err := List(bytes.NewReader(tarOf(t, ent{spec: "a/x", body: "x"})))
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Apply(nil)
	if err := f.Apply(es); !errors.Is(err, ErrLoop) {
		t.Errorf("entry under a loop: %v", err)
	}
}

func TestHardLinks(t *testing.T) {
	f := build(t,
		[]ent{{spec: "bin/"}, {spec: "bin/tool", body: "tool", mode: 0o755}},
		[]ent{{spec: "bin/tool2 => bin/tool"}, {spec: "bin/.wh.tool"}},
	)
	n, err := f.Lookup("bin/tool2")
	if err != nil || n.Type != Hardlink || n.Size != 4 || n.Mode != 0o755 || n.DataLayer != 0 {
		t.Fatalf("tool2: %+v %v", n, err)
	}
	if _, err := f.Lookup("bin/tool"); !isDeleted(err, 1) {
		t.Errorf("tool: %v", err)
	}
	g := New()
	es, _ := List(bytes.NewReader(tarOf(t, ent{spec: "x => missing"})))
	if err := g.Apply(es); !errors.Is(err, ErrNotFound) {
		t.Errorf("hard link to nothing: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	for _, name := range []string{"../etc/passwd", "/etc/passwd", "a/../../b"} {
		_, err := List(bytes.NewReader(tarOf(t, ent{spec: name, body: "x"})))
		var ee *EntryError
		if !errors.As(err, &ee) || ee.Name != name {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := List(bytes.NewReader(tarOf(t, ent{spec: "x => ../y"})))
	if !errors.Is(err, ErrDotDot) {
		t.Errorf("hard link out: %v", err)
	}
	good := tarOf(t, ent{spec: "a", body: strings.Repeat("a", 2000)}, ent{spec: "b", body: "b"})
	_, err = List(bytes.NewReader(good[:1500]))
	if err == nil || !strings.Contains(err.Error(), `"a"`) {
		t.Errorf("truncated tar: %v", err)
	}
}

func compress(t testing.TB, c Compression, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	switch c {
	case None:
		return b
	case Gzip:
		w = gzip.NewWriter(&out)
	case Zstd:
		w, err = zstd.NewWriter(&out)
	case XZ:
		w, err = xz.NewWriter(&out)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestDecompress(t *testing.T) {
	raw := tarOf(t, ent{spec: "f", body: "hello"})
	for _, tc := range []struct {
		c         Compression
		mediaType string
	}{
		{None, "application/vnd.oci.image.layer.v1.tar"},
		{Gzip, "application/vnd.oci.image.layer.v1.tar+gzip"},
		{Zstd, "application/vnd.oci.image.layer.v1.tar+zstd"},
		{XZ, ""},
		{None, "application/vnd.docker.image.rootfs.diff.tar.gzip"}, // Docker's says gzip of anything
		{Zstd, ""},
	} {
		b := compress(t, tc.c, raw)
		rc, got, err := Decompress(bytes.NewReader(b), tc.mediaType, int64(len(b)), Options{})
		if err != nil || got != tc.c {
			t.Errorf("%s %q: %v %v", tc.c, tc.mediaType, got, err)
			continue
		}
		es, err := List(rc)
		if err != nil || len(es) != 1 || es[0].Size != 5 {
			t.Errorf("%s: %v %v", tc.c, es, err)
		}
	}
	gz := compress(t, Gzip, raw)
	if _, _, err := Decompress(bytes.NewReader(gz), "application/vnd.oci.image.layer.v1.tar+zstd", int64(len(gz)), Options{}); err == nil {
		t.Error("gzip bytes said to be zstd: no error")
	}
	if _, _, err := Decompress(bytes.NewReader(gz), "application/vnd.oci.image.config.v1+json", int64(len(gz)), Options{}); err == nil {
		t.Error("a config as a layer: no error")
	}
}

func TestBomb(t *testing.T) {
	raw := tarOf(t, ent{spec: "zeros", body: strings.Repeat("\x00", 20<<20)})
	b := compress(t, Gzip, raw)
	rc, _, err := Decompress(bytes.NewReader(b), "", int64(len(b)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = List(rc)
	if !errors.Is(err, ErrBomb) || !strings.Contains(err.Error(), `"zeros"`) {
		t.Errorf("got %v", err)
	}
	rc, _, _ = Decompress(bytes.NewReader(b), "", int64(len(b)), Options{MaxRatio: 2000})
	if _, err := List(rc); err != nil {
		t.Errorf("with a higher ratio: %v", err)
	}
}

func TestExtract(t *testing.T) {
	raw := tarOf(t, ent{spec: "a", body: "first"}, ent{spec: "a", body: "second"})
	var b bytes.Buffer
	if err := Extract(bytes.NewReader(raw), 1, &b); err != nil || b.String() != "second" {
		t.Errorf("%q %v", b.String(), err)
	}
}

func TestDiff(t *testing.T) {
	a := build(t, []ent{{spec: "k", body: "same"}, {spec: "m", body: "old"}, {spec: "d", body: "del"}, {spec: "p", body: "p"}})
	b := build(t, []ent{{spec: "k", body: "same"}, {spec: "m", body: "new!"}, {spec: "n", body: "add"}, {spec: "p", body: "p", mode: 0o600, uid: 7}})
	var got []string
	for _, c := range Diff(a.Files(), b.Files(), true) {
		got = append(got, c.String())
	}
	want := "D /d\nC /m (content, size)\nA /n\nC /p (mode, owner)"
	if strings.Join(got, "\n") != want {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), want)
	}
}

func TestEncodeDecode(t *testing.T) {
	es, err := List(bytes.NewReader(tarOf(t, ent{spec: "a/"}, ent{spec: "a/b", body: "b"}, ent{spec: "c -> a"}, ent{spec: "a/.wh.z"})))
	if err != nil {
		t.Fatal(err)
	}
	b, err := EncodeList(es)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeList(b)
	if err != nil || len(back) != len(es) || back[1].Digest != es[1].Digest || back[3].Type != Whiteout {
		t.Errorf("%v %v", back, err)
	}
	for _, bad := range []string{`[{"path":"../x","type":"file"}]`, `[{"path":"x","type":"nope"}]`, `[{"path":"x","type":"file"}]`, `{`} {
		if _, err := DecodeList([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// FuzzLayer: whatever a layer's bytes, reading and applying it fails
// cleanly or yields paths inside the image.
func FuzzLayer(f *testing.F) {
	f.Add(tarOf(f, ent{spec: "a/"}, ent{spec: "a/b", body: "b"}, ent{spec: "a/.wh..wh..opq"}, ent{spec: "l -> ../../a"}, ent{spec: "l/c", body: "c"}, ent{spec: "h => a/b"}, ent{spec: "a/.wh.b"}))
	f.Add(tarOf(f, ent{spec: "x -> /"}, ent{spec: "x/y/z", body: ""}))
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := List(bytes.NewReader(b))
		if err != nil {
			return
		}
		fs := New()
		if err := fs.Apply(es); err != nil {
			return
		}
		_ = fs.Apply(es) // the same layer again, over itself
		for _, n := range fs.Files() {
			if n.Path == "" || strings.HasPrefix(n.Path, "/") || strings.Contains("/"+n.Path+"/", "/../") {
				t.Fatalf("path %q leaves the image", n.Path)
			}
		}
	})
}

// zstdOf is raw compressed by an encoder configured as the tools write
// layers, or as a hostile one may.
func zstdOf(t *testing.T, raw []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := zstd.NewWriter(&out, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func xzOf(t *testing.T, raw []byte, dictCap int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := xz.WriterConfig{DictCap: dictCap}.NewWriter(&out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestWindowBound: a layer whose compression asks for more history than
// MaxWindow is refused with ErrWindow, saying why; the windows the tools
// write (zstd's best level, 8 MiB; xz's preset 7, 16 MiB) are read.
func TestWindowBound(t *testing.T) {
	// Larger than the zstd encoder's block buffer: a smaller input is
	// written as one single-segment frame, its window its size.
	raw := tarOf(t, ent{spec: "f", body: strings.Repeat("hello ", 400_000)})
	for _, tc := range []struct {
		name, mediaType string
		layer           []byte
		refused         bool
		says            string
	}{
		{"zstd best level (8 MiB window)", "application/vnd.oci.image.layer.v1.tar+zstd",
			zstdOf(t, raw, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithWindowSize(8<<20)), false, ""},
		{"zstd 16 MiB window", "application/vnd.oci.image.layer.v1.tar+zstd",
			zstdOf(t, raw, zstd.WithWindowSize(MaxWindow), zstd.WithSingleSegment(false)), false, ""},
		{"zstd 32 MiB window", "application/vnd.oci.image.layer.v1.tar+zstd",
			zstdOf(t, raw, zstd.WithWindowSize(32<<20), zstd.WithSingleSegment(false)), true, "zstd --long"},
		{"zstd 128 MiB window (--long=27)", "",
			zstdOf(t, raw, zstd.WithWindowSize(128<<20), zstd.WithSingleSegment(false)), true, "zstd --long"},
		{"xz preset 6 (8 MiB dictionary)", "", xzOf(t, raw, 8<<20), false, ""},
		{"xz preset 7 (16 MiB dictionary)", "", xzOf(t, raw, 16<<20), false, ""},
		{"xz 24 MiB dictionary", "", xzOf(t, raw, 24<<20), true, "dictionary is 24 MiB"},
		{"xz preset 9 (64 MiB dictionary)", "", xzOf(t, raw, 64<<20), true, "xz -8 and -9"},
	} {
		rc, _, err := Decompress(bytes.NewReader(tc.layer), tc.mediaType, int64(len(tc.layer)), Options{})
		if err == nil {
			_, err = List(rc)
			rc.Close()
		}
		t.Logf("%s: %v", tc.name, err)
		switch {
		case !tc.refused && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.refused && (!errors.Is(err, ErrWindow) || !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "malformed")):
			t.Errorf("%s: got %v, want ErrWindow saying %q", tc.name, err, tc.says)
		}
	}
}
