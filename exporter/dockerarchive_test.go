package exporter

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// daFile is one entry of a tar the tests build.
type daFile struct {
	name     string
	body     []byte
	typeflag byte // tar.TypeReg when zero
	linkname string
}

// daWriteTar writes files as a tar at dir/name, gzipped if gz, and
// returns its path.
func daWriteTar(t *testing.T, name string, gz bool, files []daFile) string {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Typeflag: f.typeflag, Linkname: f.linkname, Mode: 0o644, Size: int64(len(f.body))}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// daLayer returns a one-file layer tar, gzipped if gz.
func daLayer(t *testing.T, content string, gz bool) []byte {
	t.Helper()
	p := daWriteTar(t, "layer.tar", gz, []daFile{{name: "file.txt", body: []byte(content)}})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// daImage is one manifest.json entry.
type daImage struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func daManifestJSON(t *testing.T, imgs ...daImage) []byte {
	t.Helper()
	b, err := json.Marshal(imgs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// daWant is the manifest a test expects: blobs by content.
type daWant struct {
	config []byte
	layers [][]byte
	types  []string
}

func TestDockerArchiveOpen(t *testing.T) {
	cfgA := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgB := []byte(`{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	plain1 := daLayer(t, "one", false)
	plain2 := daLayer(t, "two", false)
	gz := daLayer(t, "three", true)
	zst := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, "not really zstd"...)
	hexOf := func(b []byte) string { return digest.FromBytes(b).Encoded() }
	blob := func(b []byte) string { return "blobs/sha256/" + hexOf(b) }

	legacy := []daFile{
		{name: "aaa/", typeflag: tar.TypeDir},
		{name: "aaa/layer.tar", body: plain1},
		{name: "bbb/layer.tar", body: gz},
		{name: hexOf(cfgA) + ".json", body: cfgA},
		{name: "manifest.json", body: daManifestJSON(t, daImage{hexOf(cfgA) + ".json", []string{"hello:latest"}, []string{"aaa/layer.tar", "bbb/layer.tar"}})},
		{name: "repositories", body: []byte(`{}`)},
	}
	// Two images sharing layer aaa: docker save links the second copy.
	shared := []daFile{
		{name: "./aaa/layer.tar", body: plain1},
		{name: "ccc/layer.tar", typeflag: tar.TypeSymlink, linkname: "../aaa/layer.tar"},
		{name: "ddd/layer.tar", typeflag: tar.TypeLink, linkname: "ccc/layer.tar"},
		{name: "eee/layer.tar", body: plain2},
		{name: hexOf(cfgA) + ".json", body: cfgA},
		{name: hexOf(cfgB) + ".json", body: cfgB},
		{name: "manifest.json", body: daManifestJSON(t,
			daImage{hexOf(cfgA) + ".json", []string{"a:1"}, []string{"aaa/layer.tar"}},
			daImage{hexOf(cfgB) + ".json", []string{"localhost:5000/a/b:v1", "b:2"}, []string{"ccc/layer.tar", "eee/layer.tar", "ddd/layer.tar"}},
			daImage{hexOf(cfgB) + ".json", nil, []string{"eee/layer.tar"}},
		)},
	}
	// Docker 25+ writes an OCI layout and a manifest.json pointing into it.
	oci := []daFile{
		{name: "blobs/", typeflag: tar.TypeDir},
		{name: "blobs/sha256/", typeflag: tar.TypeDir},
		{name: blob(cfgA), body: cfgA},
		{name: blob(plain2), body: plain2},
		{name: blob(gz), body: gz},
		{name: blob(zst), body: zst},
		{name: "index.json", body: []byte(`{"schemaVersion":2,"manifests":[]}`)},
		{name: "manifest.json", body: daManifestJSON(t, daImage{blob(cfgA), []string{"docker.io/library/hello:v25"}, []string{blob(plain2), blob(gz), blob(zst)}})},
		{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	const (
		plainT = "application/vnd.docker.image.rootfs.diff.tar"
		gzipT  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
		zstdT  = "application/vnd.oci.image.layer.v1.tar+zstd"
	)
	tests := []struct {
		name  string
		files []daFile
		gz    bool
		ref   string
		tag   string // want repoTag()
		want  daWant
	}{
		{"legacy", legacy, false, "", "hello:latest", daWant{cfgA, [][]byte{plain1, gz}, []string{plainT, gzipT}}},
		{"legacy by tag", legacy, false, "hello:latest", "hello:latest", daWant{cfgA, [][]byte{plain1, gz}, []string{plainT, gzipT}}},
		{"legacy by normalised tag", legacy, false, "docker.io/library/hello", "hello:latest", daWant{cfgA, [][]byte{plain1, gz}, []string{plainT, gzipT}}},
		{"legacy gzipped archive", legacy, true, "@0", "hello:latest", daWant{cfgA, [][]byte{plain1, gz}, []string{plainT, gzipT}}},
		{"multi first", shared, false, "a:1", "a:1", daWant{cfgA, [][]byte{plain1}, []string{plainT}}},
		{"multi linked layers", shared, false, "b:2", "b:2", daWant{cfgB, [][]byte{plain1, plain2, plain1}, []string{plainT, plainT, plainT}}},
		{"multi registry port", shared, false, "localhost:5000/a/b:v1", "localhost:5000/a/b:v1", daWant{cfgB, [][]byte{plain1, plain2, plain1}, []string{plainT, plainT, plainT}}},
		{"multi index", shared, false, "@2", "", daWant{cfgB, [][]byte{plain2}, []string{plainT}}},
		{"docker 25", oci, false, "", "docker.io/library/hello:v25", daWant{cfgA, [][]byte{plain2, gz, zst}, []string{plainT, gzipT, zstdT}}},
		{"docker 25 by tag", oci, false, "hello:v25", "docker.io/library/hello:v25", daWant{cfgA, [][]byte{plain2, gz, zst}, []string{plainT, gzipT, zstdT}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := daWriteTar(t, "image.tar", tt.gz, tt.files)
			a := daOpen(t, p, tt.ref)
			if got := a.repoTag(); got != tt.tag {
				t.Errorf("repoTag() = %q, want %q", got, tt.tag)
			}
			m := daCheckManifest(t, a, tt.want)
			if again := daOpen(t, p, tt.ref); !bytes.Equal(again.manifest, a.manifest) {
				t.Errorf("second open gave manifest %s, first %s", again.manifest, a.manifest)
			}
			daCheckBlobs(t, a, append([]Descriptor{m.Config}, m.Layers...))
		})
	}
}

func daOpen(t *testing.T, p, ref string) *dockerArchive {
	t.Helper()
	a, err := openDockerArchive(context.Background(), p, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// daCheckManifest checks Root's and Manifest's answers against want.
func daCheckManifest(t *testing.T, a *dockerArchive, want daWant) dockerArchiveManifest {
	t.Helper()
	ctx := context.Background()
	raw, mt, err := a.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mt != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Errorf("Root media type %q", mt)
	}
	var m dockerArchiveManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wantCfg := Descriptor{MediaType: "application/vnd.docker.container.image.v1+json", Digest: digest.FromBytes(want.config), Size: int64(len(want.config))}
	if m.SchemaVersion != 2 || m.MediaType != mt || fmt.Sprint(m.Config) != fmt.Sprint(wantCfg) {
		t.Errorf("manifest %s: want schemaVersion 2, mediaType %s, config %v", raw, mt, wantCfg)
	}
	if len(m.Layers) != len(want.layers) {
		t.Fatalf("manifest %s: want %d layers", raw, len(want.layers))
	}
	for i, l := range want.layers {
		if want.types[i] == dockerArchiveLayerType {
			daCheckGzipped(t, a, m.Layers[i], l)
			continue
		}
		d := Descriptor{MediaType: want.types[i], Digest: digest.FromBytes(l), Size: int64(len(l))}
		if fmt.Sprint(m.Layers[i]) != fmt.Sprint(d) {
			t.Errorf("layer %d is %v, want %v", i, m.Layers[i], d)
		}
	}
	got, err := a.Manifest(ctx, Descriptor{Digest: digest.FromBytes(raw)})
	if err != nil || !bytes.Equal(got, raw) {
		t.Errorf("Manifest(root) = %s, %v", got, err)
	}
	return m
}

// daCheckGzipped checks a layer docker save stored as a plain tar: it is
// served gzipped, and gunzips to the stored bytes.
func daCheckGzipped(t *testing.T, a *dockerArchive, d Descriptor, plain []byte) {
	t.Helper()
	if d.MediaType != dockerArchiveLayerGzipType {
		t.Errorf("plain layer served as %s, want %s", d.MediaType, dockerArchiveLayerGzipType)
	}
	rc, err := a.Blob(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatalf("layer %s: %v", d.Digest, err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, plain) {
		t.Errorf("layer %s gunzips to %d bytes (%v), want the %d stored", d.Digest, len(got), err, len(plain))
	}
}

// daCheckBlobs reads every blob at once, as the exporter may, and checks
// each against its descriptor.
func daCheckBlobs(t *testing.T, a *dockerArchive, ds []Descriptor) {
	t.Helper()
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() {
			rc, err := a.Blob(context.Background(), d)
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			b, err := io.ReadAll(rc)
			if err != nil {
				t.Error(err)
			}
			if digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
				t.Errorf("Blob(%s) gave %d bytes with digest %s", d.Digest, len(b), digest.FromBytes(b))
			}
		})
	}
	wg.Wait()
}

func TestDockerArchiveErrors(t *testing.T) {
	cfg := []byte(`{}`)
	layer := []byte("layer bytes")
	one := func(layers ...string) daFile {
		return daFile{name: "manifest.json", body: daManifestJSON(t, daImage{"c.json", []string{"a:1"}, layers})}
	}
	three := daFile{name: "manifest.json", body: daManifestJSON(t,
		daImage{"c.json", []string{"a:1"}, nil},
		daImage{"c.json", []string{"b:2"}, nil},
		daImage{"c.json", nil, nil},
	)}
	big := bytes.Repeat([]byte(" "), 4<<20+1)
	whole, err := os.ReadFile(daWriteTar(t, "whole.tar", false, []daFile{{name: "big.tar", body: bytes.Repeat([]byte("x"), 4096)}}))
	if err != nil {
		t.Fatal(err)
	}
	truncated := whole[:512+1000]
	tests := []struct {
		name  string
		files []daFile
		raw   []byte // file contents instead of a tar
		ref   string
		want  string // FILE stands for the archive's path
	}{
		{"text file", nil, []byte(strings.Repeat("hello, world\n", 100)), "", "docker-archive FILE: not a tar archive: archive/tar: invalid tar header"},
		{"empty file", nil, []byte{}, "", "docker-archive FILE: not a tar archive: no entries"},
		{"zstd file", nil, []byte{0x28, 0xb5, 0x2f, 0xfd, 0}, "", "docker-archive FILE: not a tar archive: it is zstd-compressed; decompress it first"},
		{"truncated", nil, truncated, "", "docker-archive FILE: reading big.tar: unexpected EOF"},
		{"no manifest", []daFile{{name: "c.json", body: cfg}}, nil, "", "docker-archive FILE: no manifest.json: not a docker save archive"},
		{"dotdot entry", []daFile{{name: "a/../../evil", body: layer}}, nil, "", `docker-archive FILE: entry "a/../../evil": refusing a path outside the archive`},
		{"absolute entry", []daFile{{name: "/etc/evil", body: layer}}, nil, "", `docker-archive FILE: entry "/etc/evil": refusing a path outside the archive`},
		{"missing config", []daFile{one()}, nil, "", "docker-archive FILE: c.json, named in manifest.json, is not in the archive"},
		{"missing layer", []daFile{{name: "c.json", body: cfg}, one("x/layer.tar")}, nil, "", "docker-archive FILE: x/layer.tar, named in manifest.json, is not in the archive"},
		{"dotdot reference", []daFile{{name: "c.json", body: cfg}, one("../x/layer.tar")}, nil, "", `docker-archive FILE: manifest.json names "../x/layer.tar", a path outside the archive`},
		{"symlink out", []daFile{{name: "c.json", body: cfg}, {name: "x/layer.tar", typeflag: tar.TypeSymlink, linkname: "../../etc/passwd"}, one("x/layer.tar")}, nil, "",
			`docker-archive FILE: x/layer.tar links to "../../etc/passwd", outside the archive`},
		{"absolute symlink", []daFile{{name: "c.json", body: cfg}, {name: "x/layer.tar", typeflag: tar.TypeSymlink, linkname: "/etc/passwd"}, one("x/layer.tar")}, nil, "",
			`docker-archive FILE: x/layer.tar links to "/etc/passwd", outside the archive`},
		{"dangling symlink", []daFile{{name: "c.json", body: cfg}, {name: "x/layer.tar", typeflag: tar.TypeSymlink, linkname: "../y/layer.tar"}, one("x/layer.tar")}, nil, "",
			"docker-archive FILE: x/layer.tar links to y/layer.tar, which is not in the archive"},
		{"symlink loop", []daFile{{name: "c.json", body: cfg}, {name: "x/layer.tar", typeflag: tar.TypeSymlink, linkname: "layer.tar"}, one("x/layer.tar")}, nil, "",
			"docker-archive FILE: x/layer.tar: more than 40 links deep (a link loop?)"},
		{"directory layer", []daFile{{name: "c.json", body: cfg}, {name: "x", typeflag: tar.TypeDir}, one("x")}, nil, "", "docker-archive FILE: x is not a regular file"},
		{"big manifest", []daFile{{name: "manifest.json", body: big}}, nil, "", "docker-archive FILE: manifest.json is 4194305 bytes, over the 4 MiB limit for JSON files"},
		{"big config", []daFile{{name: "c.json", body: big}, one()}, nil, "", "docker-archive FILE: c.json is 4194305 bytes, over the 4 MiB limit for JSON files"},
		{"bad manifest", []daFile{{name: "manifest.json", body: []byte("{")}}, nil, "", "docker-archive FILE: manifest.json: unexpected EOF"},
		{"no images", []daFile{{name: "manifest.json", body: []byte("[]")}}, nil, "", "docker-archive FILE: manifest.json lists no images"},
		{"several images", []daFile{{name: "c.json", body: cfg}, three}, nil, "",
			"docker-archive FILE holds 3 images (a:1, b:2, @2): name one as docker-archive:FILE:REPO:TAG or docker-archive:FILE:@N"},
		{"unknown tag", []daFile{{name: "c.json", body: cfg}, three}, nil, "c:3", "docker-archive FILE: no image tagged c:3; it holds a:1, b:2, @2"},
		{"digest ref", []daFile{{name: "c.json", body: cfg}, three}, nil, "a@sha256:" + strings.Repeat("0", 64),
			`docker-archive FILE: "a@sha256:` + strings.Repeat("0", 64) + `": a docker-archive image is named by REPO:TAG or @N, not by digest`},
		{"empty tag", []daFile{{name: "c.json", body: cfg}, three}, nil, "a:", `docker-archive FILE: "a:": want REPO:TAG`},
		{"index out of range", []daFile{{name: "c.json", body: cfg}, three}, nil, "@3", "docker-archive FILE: no image @3: it holds 3 (a:1, b:2, @2)"},
		{"bad index", []daFile{{name: "c.json", body: cfg}, three}, nil, "@x", `docker-archive FILE: bad image index "@x": want @N with N a number from 0`},
		{"negative index", []daFile{{name: "c.json", body: cfg}, three}, nil, "@-1", `docker-archive FILE: bad image index "@-1": want @N with N a number from 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "image.tar")
			if tt.raw != nil {
				if err := os.WriteFile(p, tt.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				p = daWriteTar(t, "image.tar", false, tt.files)
			}
			_, err := openDockerArchive(context.Background(), p, tt.ref)
			want := strings.ReplaceAll(tt.want, "FILE", p)
			if err == nil || err.Error() != want {
				t.Errorf("openDockerArchive(%q) error:\n got %v\nwant %s", tt.ref, err, want)
			}
		})
	}
}

func TestDockerArchiveMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.tar")
	_, err := openDockerArchive(context.Background(), p, "")
	if want := "docker-archive: open " + p + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func TestDockerArchiveUnknownDigests(t *testing.T) {
	cfg := []byte(`{}`)
	p := daWriteTar(t, "image.tar", false, []daFile{
		{name: "c.json", body: cfg},
		{name: "manifest.json", body: daManifestJSON(t, daImage{"c.json", nil, nil})},
	})
	a := daOpen(t, p, "")
	other := digest.FromString("other")
	if _, err := a.Manifest(context.Background(), Descriptor{Digest: other}); err == nil || err.Error() != "manifest "+other.String()+" not in docker-archive "+p {
		t.Errorf("Manifest(other) error %v", err)
	}
	if _, err := a.Blob(context.Background(), Descriptor{Digest: other}); err == nil || err.Error() != "docker-archive "+p+": no blob "+other.String()+" in the image" {
		t.Errorf("Blob(other) error %v", err)
	}
	raw, _, _ := a.Root(context.Background())
	if want := `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"` +
		digest.FromBytes(cfg).String() + `","size":2},"layers":[]}`; string(raw) != want {
		t.Errorf("manifest %s, want %s", raw, want)
	}
}

// TestDockerArchiveChanged replaces the archive after opening it: Blob
// must notice rather than serve another file's bytes.
func TestDockerArchiveChanged(t *testing.T) {
	files := []daFile{
		{name: "c.json", body: []byte(`{}`)},
		{name: "manifest.json", body: daManifestJSON(t, daImage{"c.json", nil, nil})},
	}
	p := daWriteTar(t, "image.tar", false, files)
	a := daOpen(t, p, "")
	swapped := daWriteTar(t, "image.tar", false, []daFile{files[1], files[0]})
	if err := os.Rename(swapped, p); err != nil {
		t.Fatal(err)
	}
	var m dockerArchiveManifest
	if err := json.Unmarshal(a.manifest, &m); err != nil {
		t.Fatal(err)
	}
	_, err := a.Blob(context.Background(), m.Config)
	if want := "docker-archive " + p + ": changed since it was opened (entry 0 is no longer c.json)"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestDockerArchiveTestdata reads the bundled demo archive that
// testdata/gen writes.
func TestDockerArchiveTestdata(t *testing.T) {
	const p = "../testdata/hello.docker.tar"
	a := daOpen(t, p, "hello:latest")
	var m dockerArchiveManifest
	if err := json.Unmarshal(a.manifest, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != 1 {
		t.Fatalf("manifest %s: want one layer", a.manifest)
	}
	mf := daReadEntry(t, p, "manifest.json")
	var imgs []daImage
	if err := json.Unmarshal(mf, &imgs); err != nil || len(imgs) != 1 {
		t.Fatalf("manifest.json %s: %v", mf, err)
	}
	cfg := daReadEntry(t, p, imgs[0].Config)
	if d := digest.FromBytes(cfg); m.Config.Digest != d || m.Config.Size != int64(len(cfg)) {
		t.Errorf("config descriptor %v, but %s has digest %s, size %d", m.Config, imgs[0].Config, d, len(cfg))
	}
	daCheckBlobs(t, a, append([]Descriptor{m.Config}, m.Layers...))
}

// daReadEntry reads one file of a tar independently of dockerArchive.
func daReadEntry(t *testing.T, p, name string) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: %s: %v", p, name, err)
		}
		if hdr.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}
