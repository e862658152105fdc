package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/imagefs")

// tarEntry is an entry of a test layer: "name" a file with body, "name/"
// a directory, "name -> target" a symlink, "name => target" a hard link,
// "name|" a FIFO.
type tarEntry struct {
	spec     string
	body     string
	mode     int64
	uid, gid int
	mtime    int64 // seconds after 2024-01-01; 0 is that instant
}

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func tarLayer(t testing.TB, es ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range es {
		h := &tar.Header{Mode: 0o644, Uid: e.uid, Gid: e.gid, ModTime: epoch.Add(time.Duration(e.mtime) * time.Second), Format: tar.FormatPAX}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		switch {
		case strings.Contains(e.spec, " -> "):
			h.Name, h.Linkname, _ = strings.Cut(e.spec, " -> ")
			h.Typeflag, h.Mode = tar.TypeSymlink, 0o777
		case strings.Contains(e.spec, " => "):
			h.Name, h.Linkname, _ = strings.Cut(e.spec, " => ")
			h.Typeflag = tar.TypeLink
		case strings.HasSuffix(e.spec, "|"):
			h.Name, h.Typeflag = strings.TrimSuffix(e.spec, "|"), tar.TypeFifo
		case strings.HasSuffix(e.spec, "/"):
			h.Name, h.Typeflag = e.spec, tar.TypeDir
			if e.mode == 0 {
				h.Mode = 0o755
			}
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

// testLayer is a layer's bytes, compressed, and its media type.
type testLayer struct {
	mediaType string
	data      []byte
	diffID    digest.Digest // the uncompressed tar's
}

func compressLayer(t testing.TB, how string, raw []byte) testLayer {
	t.Helper()
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	mt := "application/vnd.oci.image.layer.v1.tar"
	switch how {
	case "none":
		return testLayer{mt, raw, digest.FromBytes(raw)}
	case "gzip":
		w, mt = gzip.NewWriter(&out), mt+"+gzip"
	case "zstd":
		w, mt = nil, mt+"+zstd"
		w, err = zstd.NewWriter(&out)
	case "xz":
		// No OCI media type says xz: Docker's, which states none a reader
		// trusts, and the magic bytes tell.
		mt = "application/vnd.docker.image.rootfs.diff.tar.gzip"
		w, err = xz.NewWriter(&out)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return testLayer{mt, out.Bytes(), digest.FromBytes(raw)}
}

// ociLayout writes an OCI layout at dir holding one image per tag, each
// of the layers given, and returns the layers' digests per tag.
func ociLayout(t testing.TB, dir string, images map[string][]testLayer) {
	t.Helper()
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	put := func(b []byte) digest.Digest {
		d := digest.FromBytes(b)
		if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      digest.Digest     `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	var index []desc
	for _, tag := range sortedKeys(images) {
		var layers []desc
		var diffIDs []string
		for _, l := range images[tag] {
			layers = append(layers, desc{MediaType: l.mediaType, Digest: put(l.data), Size: int64(len(l.data))})
			diffIDs = append(diffIDs, l.diffID.String())
		}
		config, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
		manifest, _ := json.Marshal(map[string]any{
			"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
			"config": desc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: put(config), Size: int64(len(config))},
			"layers": layers,
		})
		index = append(index, desc{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: put(manifest), Size: int64(len(manifest)),
			Annotations: map[string]string{"org.opencontainers.image.ref.name": tag}})
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": index})
	for name, b := range map[string][]byte{"index.json": idx, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// knownLayers are the layers of the image whose files the golden files
// hold: one gzip, one zstd, one xz and one uncompressed.
func knownLayers(t testing.TB) []testLayer {
	ls := knownLayerTars(t)
	return []testLayer{compressLayer(t, "gzip", ls[0]), compressLayer(t, "zstd", ls[1]), compressLayer(t, "xz", ls[2]), compressLayer(t, "none", ls[3])}
}

// knownLayerTars are the known image's layers as plain tar.
func knownLayerTars(t testing.TB) [][]byte {
	l0 := tarLayer(t,
		tarEntry{spec: "etc/"},
		tarEntry{spec: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\n"},
		tarEntry{spec: "etc/motd", body: "hello\nfrom\nthe\nbase\n"},
		tarEntry{spec: "etc/gone", body: "deleted later\n"},
		tarEntry{spec: "etc/run.sh", body: "#!/bin/sh\necho run\n"},
		tarEntry{spec: "etc/owned", body: "mine\n"},
		tarEntry{spec: "etc/old.conf", body: "old=1\n"},
		tarEntry{spec: "usr/"}, tarEntry{spec: "usr/lib/"},
		tarEntry{spec: "usr/lib/a.so", body: "AAAA"},
		tarEntry{spec: "usr/lib/b.so", body: "BBBB"},
		tarEntry{spec: "lib -> usr/lib"},
		tarEntry{spec: "opt/"}, tarEntry{spec: "opt/app/"},
		tarEntry{spec: "opt/app/old", body: "old app\n"},
		tarEntry{spec: "bin/"},
		tarEntry{spec: "bin/tool", body: "#!/bin/sh\necho tool\n", mode: 0o755},
		tarEntry{spec: "run/"}, tarEntry{spec: "run/pid", body: "1\n"},
		tarEntry{spec: "var/"}, tarEntry{spec: "var/run -> ../run"},
	)
	l1 := tarLayer(t,
		tarEntry{spec: "etc/", mtime: 60},
		tarEntry{spec: "etc/motd", body: "hello\nfrom\nthe\nupdate\n", mtime: 60},
		tarEntry{spec: "etc/.wh.gone", mtime: 60},
		tarEntry{spec: "etc/run.sh", body: "#!/bin/sh\necho run\n", mode: 0o755},
		tarEntry{spec: "etc/owned", body: "mine\n", uid: 1000, gid: 1000},
		tarEntry{spec: "opt/app/", mtime: 60},
		tarEntry{spec: "opt/app/.wh..wh..opq", mtime: 60},
		tarEntry{spec: "opt/app/new", body: "new app\n", mtime: 60},
		// through the symlink lib -> usr/lib: the real directory's lower
		// contents hidden, the link kept
		tarEntry{spec: "lib/.wh..wh..opq", mtime: 60},
		tarEntry{spec: "lib/c.so", body: "CCCC", mtime: 60},
	)
	l2 := tarLayer(t,
		tarEntry{spec: "bin/tool2 => bin/tool", mode: 0o755, mtime: 120}, // a hard link's header carries its inode's mode
		tarEntry{spec: "etc/greeting -> motd", mtime: 120},
		tarEntry{spec: "run/fifo|", mtime: 120},
		// a symlinked directory replaced by a real one, made opaque: the
		// link's target keeps its contents
		tarEntry{spec: "var/run/", mtime: 120},
		tarEntry{spec: "var/run/.wh..wh..opq", mtime: 120},
		tarEntry{spec: "var/run/lock", body: "", mtime: 120},
	)
	l3 := tarLayer(t,
		tarEntry{spec: "etc/.wh.old.conf", mtime: 180},
		tarEntry{spec: "srv/", mtime: 180},
		tarEntry{spec: "srv/data", body: "data\n", mtime: 180},
	)
	return [][]byte{l0, l1, l2, l3}
}

// imageRoot exports the known image into a new tree: app:v1 its bottom
// layer alone, app:v2 all four layers.
func imageRoot(t *testing.T) string {
	t.Helper()
	layers := knownLayers(t)
	src := t.TempDir()
	ociLayout(t, src, map[string][]testLayer{"v1": layers[:1], "v2": layers})
	root := filepath.Join(t.TempDir(), "root")
	for _, tag := range []string{"v1", "v2"} {
		mustRun(t, "--root", root, "-q", "export", "oci:"+src+":"+tag, "app:"+tag)
	}
	return root
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "imagefs", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}

// TestFilesDiffCat: the known image's files, one layer's entries and the
// diffs give exactly the golden output, with the right layer for each
// path; cat returns exact bytes, and says what a deleted path, a missing
// one and a directory are.
func TestFilesDiffCat(t *testing.T) {
	root := imageRoot(t)
	is := func(args ...string) string { return mustRun(t, append([]string{"--root", root}, args...)...).stdout }
	golden(t, "files.txt", is("files", "app:v2"))
	golden(t, "files.json", is("files", "--json", "app:v2"))
	golden(t, "files-layer1.txt", is("files", "--layer", "1", "app:v2"))
	var layered struct {
		Image struct {
			Layers []struct{ Digest digest.Digest }
		}
		Layer struct{ Index int }
	}
	if err := json.Unmarshal([]byte(is("files", "--json", "--layer", "1", "app:v2")), &layered); err != nil || layered.Layer.Index != 1 {
		t.Fatalf("files --json --layer 1: %+v %v", layered, err)
	}
	for _, sel := range []string{layered.Image.Layers[1].Digest.String(), layered.Image.Layers[1].Digest.Encoded()[:12]} {
		if got := is("files", "--layer", sel, "app:v2"); got != is("files", "--layer", "1", "app:v2") {
			t.Errorf("files --layer %s differs from --layer 1:\n%s", sel, got)
		}
	}
	golden(t, "diff.txt", is("diff", "app:v1", "app:v2"))
	golden(t, "diff-semantic.json", is("diff", "--json", "--semantic", "app:v1", "app:v2"))
	golden(t, "diff-top.txt", is("diff", "app:v2"))
	golden(t, "diff-content.txt", is("diff", "--content", "--semantic", "app:v1", "app:v2"))

	for path, want := range map[string]string{
		"/etc/motd":        "hello\nfrom\nthe\nupdate\n",
		"etc/greeting":     "hello\nfrom\nthe\nupdate\n", // a symlink, followed
		"/lib/c.so":        "CCCC",                       // through the symlinked directory
		"/usr/lib/c.so":    "CCCC",
		"/bin/tool2":       "#!/bin/sh\necho tool\n", // a hard link
		"/etc/passwd":      "root:x:0:0:root:/root:/bin/sh\n",
		"/run/pid":         "1\n",
		"/var/run/lock":    "",
		"/srv/../srv/data": "data\n",
	} {
		if got := is("cat", "app:v2", path); got != want {
			t.Errorf("cat %s = %q, want %q", path, got, want)
		}
	}
	out := filepath.Join(t.TempDir(), "motd")
	is("cat", "-o", out, "app:v1", "/etc/motd")
	if b, err := os.ReadFile(out); err != nil || string(b) != "hello\nfrom\nthe\nbase\n" {
		t.Errorf("cat -o: %q %v", b, err)
	}
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != fs.FileMode(0o666&^umask) {
		t.Errorf("cat -o: mode %v %v, want a file as any other (0666 less the umask %03o)", fi.Mode(), err, umask)
	}
	for _, tc := range []struct{ path, msg string }{
		{"/etc/gone", "app:v2: /etc/gone: deleted in layer 1 (sha256:"},
		{"/usr/lib/a.so", "deleted in layer 1"},
		{"/etc/old.conf", "deleted in layer 3"},
		{"/nope", "app:v2: /nope: no such file in the image"},
		{"/etc", "/etc: is a directory"},
		{"/run/fifo", "/run/fifo: not a regular file (fifo)"},
	} {
		r := run(t, "--root", root, "cat", "-o", out+"2", "app:v2", tc.path)
		if r.code != 1 || !strings.Contains(r.stderr, tc.msg) || r.stdout != "" {
			t.Errorf("cat %s: exit %d, stderr %q; want exit 1 and %q", tc.path, r.code, r.stderr, tc.msg)
		}
		if _, err := os.Stat(out + "2"); !os.IsNotExist(err) {
			t.Errorf("cat -o %s: the output file was written", tc.path)
		}
	}
	for _, args := range [][]string{{"files"}, {"files", "a", "b"}, {"files", "--layer", "9", "app:v2"}, {"cat", "app:v2"}, {"diff"}, {"files", "--max-ratio", "0", "app:v2"}, {"files", "bad ref!"}} {
		if r := run(t, append([]string{"--root", root}, args...)...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, r.code, r.stderr)
		}
	}
	if r := run(t, "--root", root, "files", "app:v3"); r.code != 1 || !strings.Contains(r.stderr, "not in the tree") {
		t.Errorf("files of a missing tag: exit %d %s", r.code, r.stderr)
	}
}

// TestFilesCached: a second files over the same layers opens no layer —
// its blobs replaced by garbage, it answers the same from the layer index.
func TestFilesCached(t *testing.T) {
	root := imageRoot(t)
	first := mustRun(t, "--root", root, "files", "--json", "app:v2").stdout
	var out struct {
		Image struct {
			Layers []struct{ Digest digest.Digest }
		}
	}
	if err := json.Unmarshal([]byte(first), &out); err != nil {
		t.Fatal(err)
	}
	r, err := tree.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range out.Image.Layers {
		if err := os.WriteFile(tree.Fixture(r).BlobPath("app", l.Digest), []byte("not a layer"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if second := mustRun(t, "--root", root, "files", "--json", "app:v2").stdout; second != first {
		t.Errorf("the second files differs:\n%s", second)
	}
	mustRun(t, "--root", root, "diff", "app:v1", "app:v2")
	// cat reads the layer itself: now garbage, said so.
	if r := run(t, "--root", root, "cat", "app:v2", "/etc/motd"); r.code != 1 || !strings.Contains(r.stderr, "layer 1 (sha256:") {
		t.Errorf("cat from a garbage blob: exit %d %s", r.code, r.stderr)
	}
}

// TestFilesBadLayers: a malformed tar, an entry with "..", an absolute
// name and a decompression bomb each fail with a message naming the layer
// and the entry, exit 1, and leave no layer index.
func TestFilesBadLayers(t *testing.T) {
	truncated := tarLayer(t, tarEntry{spec: "big", body: strings.Repeat("x", 4000)}, tarEntry{spec: "after", body: "a"})[:2500]
	cases := map[string]struct {
		layer testLayer
		msg   string
	}{
		"malformed": {compressLayer(t, "gzip", truncated), `layer 0 (sha256:`},
		"dotdot":    {compressLayer(t, "gzip", tarLayer(t, tarEntry{spec: "etc/../../escape", body: "x"})), `entry "etc/../../escape": path with a ".." component`},
		"absolute":  {compressLayer(t, "none", tarLayer(t, tarEntry{spec: "/etc/abs", body: "x"})), `entry "/etc/abs": absolute path`},
		"bomb":      {compressLayer(t, "gzip", tarLayer(t, tarEntry{spec: "zeros", body: strings.Repeat("\x00", 24<<20)})), `entry "zeros": decompression bomb`},
	}
	src := t.TempDir()
	images := map[string][]testLayer{}
	for name, c := range cases {
		images[name] = []testLayer{c.layer}
	}
	ociLayout(t, src, images)
	root := filepath.Join(t.TempDir(), "root")
	for name, c := range cases {
		mustRun(t, "--root", root, "-q", "export", "oci:"+src+":"+name, "bad:"+name)
		r := run(t, "--root", root, "files", "bad:"+name)
		if r.code != 1 || !strings.Contains(r.stderr, "layer 0 (sha256:") || !strings.Contains(r.stderr, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 naming layer 0 and %q", name, r.code, r.stderr, c.msg)
		}
		if r.stdout != "" {
			t.Errorf("%s: printed %q", name, r.stdout)
		}
		tr, err := tree.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		d := digest.FromBytes(c.layer.data)
		if err := tr.Inspect(func(v *tree.View) error {
			if _, ok := v.ReadLayerIndex(d); ok {
				t.Errorf("%s: a layer index was written for the bad layer", name)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if r := run(t, "--root", root, "files", "--max-ratio", "2000", "bad:bomb"); r.code != 0 {
		t.Errorf("the bomb with --max-ratio 2000: exit %d %s", r.code, r.stderr)
	}
}

// TestFilesIndexesAndDocker: an index needs --platform unless it holds
// one image, and diff compares its two platforms; a Docker schema2 image
// (from a docker-archive) lists as an OCI one does.
func TestFilesIndexesAndDocker(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root, "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	mustRun(t, "--root", root, "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "docker:v1")
	r := run(t, "--root", root, "files", "hello:latest")
	if r.code != 1 || !strings.Contains(r.stderr, "an index: choose its image with --platform (linux/amd64, linux/arm64)") {
		t.Errorf("files of an index without --platform: exit %d %s", r.code, r.stderr)
	}
	amd := mustRun(t, "--root", root, "files", "--platform", "linux/amd64", "hello:latest").stdout
	if !strings.Contains(amd, "/hello") {
		t.Errorf("files --platform linux/amd64:\n%s", amd)
	}
	if r := run(t, "--root", root, "files", "--platform", "linux/s390x", "hello:latest"); r.code != 1 {
		t.Errorf("a platform the index lacks: exit %d %s", r.code, r.stderr)
	}
	// The two platforms differ in their one file.
	d := mustRun(t, "--root", root, "diff", "--semantic", "--platform", "linux/amd64", "--platform", "linux/arm64", "hello:latest").stdout
	if !strings.HasPrefix(d, "C /hello.txt (content") {
		t.Errorf("diff of two platforms:\n%s", d)
	}
	dk := mustRun(t, "--root", root, "files", "docker:v1").stdout
	if !strings.Contains(dk, "/hello") {
		t.Errorf("files of a Docker image:\n%s", dk)
	}
}

// TestGCDropsLayerIndex: gc removes a layer's index with the last copy of
// its blob, and keeps those of the layers still held.
func TestGCDropsLayerIndex(t *testing.T) {
	root := imageRoot(t)
	var out struct {
		Image struct {
			Layers []struct{ Digest digest.Digest }
		}
	}
	if err := json.Unmarshal([]byte(mustRun(t, "--root", root, "files", "--json", "app:v2").stdout), &out); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "--root", root, "files", "app:v1")
	mustRun(t, "--root", root, "-q", "delete", "app:v2")
	mustRun(t, "--root", root, "-q", "gc", "--grace", "0")
	tr, err := tree.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Inspect(func(v *tree.View) error {
		for i, l := range out.Image.Layers {
			_, ok := v.ReadLayerIndex(l.Digest)
			if want := i == 0; ok != want { // app:v1 holds the bottom layer
				t.Errorf("layer %d: an index %v, want %v", i, ok, want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestFilesSchema1: a Docker schema1 image's layers (its fsLayers, top
// first, applied bottom first) list as any other's; its one layer has no
// media type, and its gzip is told by its magic bytes.
func TestFilesSchema1(t *testing.T) {
	reg := testregistry.Start(t)
	raw, l := testregistry.Schema1(t, "ns/schema1", "v1")
	reg.PushRaw(t, "ns/schema1:v1", distribution.MediaTypeDockerSchema1, raw, l)
	root := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root, "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref("ns/schema1:v1"), "old:v1")
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var want []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, "/"+strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"))
	}
	var out struct {
		Image struct {
			Layers []struct {
				MediaType string `json:"media_type"`
			}
		}
		Files []struct{ Path string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, "--root", root, "files", "--json", "old:v1").stdout), &out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range out.Files {
		got = append(got, f.Path)
	}
	if len(out.Image.Layers) != 1 || out.Image.Layers[0].MediaType != "" || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("files of a schema1 image: layers %+v, paths %v, want %v", out.Image.Layers, got, want)
	}
}
