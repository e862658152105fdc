package archive_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/archive"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// fixture is a tree of three images sharing a base layer: app:multi, an
// index of an amd64 and an arm64 image; app:one, the amd64 image alone;
// other/db:1, an image in another repository with the base layer and one
// of its own.
type fixture struct {
	root                         *tree.Root
	index, amd, arm, db          digest.Digest
	base, amdLayer, armLayer, dl digest.Digest
	diffIDs                      map[digest.Digest]digest.Digest // layer → diff id
	raw                          map[digest.Digest][]byte        // every blob and manifest
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// layerTar is a tar holding one file of content.
func layerTar(t *testing.T, name, content string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	return buf.Bytes()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	f := &fixture{root: root, diffIDs: map[digest.Digest]digest.Digest{}, raw: map[digest.Digest][]byte{}}
	fx := tree.Fixture(root)
	blob := func(repo string, b []byte) digest.Digest {
		d := digest.FromBytes(b)
		f.raw[d] = b
		if _, _, err := fx.PutBlob(repo, d, int64(len(b)), false, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	layer := func(repo, name string) (digest.Digest, int) {
		plain := layerTar(t, name, "content of "+name)
		z := gz(t, plain)
		d := blob(repo, z)
		f.diffIDs[d] = digest.FromBytes(plain)
		return d, len(z)
	}
	manifest := func(repo, mt string, raw []byte) digest.Digest {
		d := digest.FromBytes(raw)
		f.raw[d] = raw
		if err := fx.PutManifest(repo, d, mt, raw); err != nil {
			t.Fatal(err)
		}
		return d
	}
	image := func(repo, arch string, layers ...digest.Digest) digest.Digest {
		var ls, diffs []string
		for _, l := range layers {
			ls = append(ls, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, distribution.MediaTypeOCILayerGzip, l, len(f.raw[l])))
			diffs = append(diffs, fmt.Sprintf("%q", f.diffIDs[l]))
		}
		cfg := fmt.Appendf(nil, `{"architecture":%q,"os":"linux","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}`, arch, strings.Join(diffs, ","))
		cd := blob(repo, cfg)
		raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[%s]}`,
			distribution.MediaTypeOCIManifest, distribution.MediaTypeOCIConfig, cd, len(cfg), strings.Join(ls, ","))
		return manifest(repo, distribution.MediaTypeOCIManifest, raw)
	}
	f.base, _ = layer("app", "base")
	f.amdLayer, _ = layer("app", "amd")
	f.armLayer, _ = layer("app", "arm")
	f.amd = image("app", "amd64", f.base, f.amdLayer)
	f.arm = image("app", "arm64", f.base, f.armLayer)
	idx := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}},{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64"}}]}`,
		distribution.MediaTypeOCIIndex, distribution.MediaTypeOCIManifest, f.amd, len(f.raw[f.amd]), distribution.MediaTypeOCIManifest, f.arm, len(f.raw[f.arm]))
	f.index = manifest("app", distribution.MediaTypeOCIIndex, idx)
	if err := fx.PutTag("app", "multi", tree.Variants(tree.TagVariant{Digest: f.index, MediaType: distribution.MediaTypeOCIIndex}, []tree.IndexChild{{Digest: f.amd, MediaType: distribution.MediaTypeOCIManifest, OS: "linux", Architecture: "amd64"}, {Digest: f.arm, MediaType: distribution.MediaTypeOCIManifest, OS: "linux", Architecture: "arm64"}})); err != nil {
		t.Fatal(err)
	}
	if err := fx.PutTag("app", "one", []tree.TagVariant{{Digest: f.amd, MediaType: distribution.MediaTypeOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	blob("other/db", f.raw[f.base])
	f.dl, _ = layer("other/db", "db")
	f.db = image("other/db", "amd64", f.base, f.dl)
	if err := fx.PutTag("other/db", "1", []tree.TagVariant{{Digest: f.db, MediaType: distribution.MediaTypeOCIManifest}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func ref(t *testing.T, s string) archive.Ref {
	if repo, d, ok := strings.Cut(s, "@"); ok {
		return archive.Ref{Repo: repo, Digest: digest.Digest(d)}
	}
	i := strings.LastIndex(s, ":")
	return archive.Ref{Repo: s[:i], Tag: s[i+1:]}
}

// save runs archive.Save under Inspect, as the CLI does.
func (f *fixture) save(t *testing.T, o archive.Options, refs ...string) (*archive.Report, error) {
	t.Helper()
	var rs []archive.Ref
	for _, s := range refs {
		rs = append(rs, ref(t, s))
	}
	var rep *archive.Report
	err := f.root.Inspect(func(v *tree.View) (err error) {
		rep, err = archive.Save(v, rs, o)
		return err
	})
	return rep, err
}

// members reads a tar: every member's name, in order, and the bytes of
// each regular one.
func members(t *testing.T, file string) ([]string, map[string][]byte) {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	tr := tar.NewReader(fh)
	var names []string
	data := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Typeflag == tar.TypeReg {
			if data[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	return names, data
}

func blobMember(d digest.Digest) string { return "blobs/sha256/" + d.Encoded() }

// TestDockerArchive: manifest.json has one entry per image with the tags
// of every REF naming it, Config and Layers name members holding the
// tree's bytes, repositories maps each tag to the image ID, and each
// shared blob is one member however many images name it.
func TestDockerArchive(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "images.tar")
	var chose []string
	o := archive.Options{Format: archive.DockerArchive, Output: out, Chose: func(r archive.Ref, c distribution.Descriptor) {
		chose = append(chose, r.String()+" "+c.Platform.String()+" "+c.Digest.String())
	}}
	rep, err := f.save(t, o, "app:multi", "app:one", "other/db:1", "app:one")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"app:multi linux/amd64 " + f.amd.String()}; !slices.Equal(chose, want) {
		t.Errorf("chose %q, want %q", chose, want)
	}
	names, data := members(t, out)
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(data["manifest.json"], &entries); err != nil {
		t.Fatal(err)
	}
	amdConfig := configOf(t, f.raw[f.amd])
	dbConfig := configOf(t, f.raw[f.db])
	wantEntries := fmt.Sprint([]any{
		[]any{blobMember(amdConfig), []string{"app:multi", "app:one"}, []string{blobMember(f.base), blobMember(f.amdLayer)}},
		[]any{blobMember(dbConfig), []string{"other/db:1"}, []string{blobMember(f.base), blobMember(f.dl)}},
	})
	var got []any
	for _, e := range entries {
		got = append(got, []any{e.Config, e.RepoTags, e.Layers})
	}
	if fmt.Sprint(got) != wantEntries {
		t.Errorf("manifest.json:\n%s\nwant\n%s", fmt.Sprint(got), wantEntries)
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(data["repositories"], &repos); err != nil {
		t.Fatal(err)
	}
	if repos["app"]["multi"] != amdConfig.Encoded() || repos["app"]["one"] != amdConfig.Encoded() || repos["other/db"]["1"] != dbConfig.Encoded() {
		t.Errorf("repositories: %s", data["repositories"])
	}
	wantNames := []string{"manifest.json", "repositories", "blobs/", "blobs/sha256/",
		blobMember(amdConfig), blobMember(dbConfig), blobMember(f.base), blobMember(f.amdLayer), blobMember(f.dl)}
	if !slices.Equal(names, wantNames) {
		t.Errorf("members:\n%q\nwant\n%q", names, wantNames)
	}
	for _, d := range []digest.Digest{amdConfig, dbConfig, f.base, f.amdLayer, f.dl} {
		if !bytes.Equal(data[blobMember(d)], f.raw[d]) {
			t.Errorf("member %s is not the tree's blob", d)
		}
	}
	if rep.Images != 2 || rep.Blobs != 5 {
		t.Errorf("report %+v, want 2 images, 5 blobs", rep)
	}
}

func configOf(t *testing.T, raw []byte) digest.Digest {
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return m.Config.Digest
}

// TestDockerArchivePlatform: --platform picks an index's child; a
// platform the index lacks is refused, naming those it has.
func TestDockerArchivePlatform(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "arm.tar")
	if _, err := f.save(t, archive.Options{Format: archive.DockerArchive, Output: out, Platform: distribution.Platform{OS: "linux", Architecture: "arm64"}}, "app:multi"); err != nil {
		t.Fatal(err)
	}
	_, data := members(t, out)
	if !strings.Contains(string(data["manifest.json"]), f.armLayer.Encoded()) {
		t.Errorf("manifest.json %s: not the arm64 image", data["manifest.json"])
	}
	out2 := filepath.Join(t.TempDir(), "s390x.tar")
	_, err := f.save(t, archive.Options{Format: archive.DockerArchive, Output: out2, Platform: distribution.Platform{OS: "linux", Architecture: "s390x"}}, "app:multi")
	if err == nil || !strings.Contains(err.Error(), "no linux/s390x image (it has linux/amd64, linux/arm64)") {
		t.Errorf("err %v", err)
	}
	assertNothing(t, out2)
}

func assertNothing(t *testing.T, out string) {
	t.Helper()
	if _, err := os.Lstat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists after a failed save (%v)", out, err)
	}
	entries, err := os.ReadDir(filepath.Dir(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("%s left behind", e.Name())
		}
	}
}

// TestOCIArchive: index.json names each REF, an index kept whole (both
// children and all their blobs), every manifest and blob stored once.
func TestOCIArchive(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "images.oci.tar")
	if _, err := f.save(t, archive.Options{Format: archive.OCIArchive, Output: out}, "app:multi", "app:one", "other/db@"+f.db.String()); err != nil {
		t.Fatal(err)
	}
	names, data := members(t, out)
	var idx struct {
		Manifests []distribution.Descriptor
	}
	if err := json.Unmarshal(data["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range idx.Manifests {
		got = append(got, m.Annotations["org.opencontainers.image.ref.name"]+" "+m.Digest.String()+" "+m.MediaType)
	}
	want := []string{
		"app:multi " + f.index.String() + " " + distribution.MediaTypeOCIIndex,
		"app:one " + f.amd.String() + " " + distribution.MediaTypeOCIManifest,
		"other/db@" + f.db.String() + " " + f.db.String() + " " + distribution.MediaTypeOCIManifest,
	}
	if !slices.Equal(got, want) {
		t.Errorf("index.json names\n%q\nwant\n%q", got, want)
	}
	all := []digest.Digest{f.index, f.amd, f.arm, f.db, configOf(t, f.raw[f.amd]), configOf(t, f.raw[f.arm]), configOf(t, f.raw[f.db]), f.base, f.amdLayer, f.armLayer, f.dl}
	count := map[string]int{}
	for _, n := range names {
		count[n]++
	}
	for _, d := range all {
		if count[blobMember(d)] != 1 || !bytes.Equal(data[blobMember(d)], f.raw[d]) {
			t.Errorf("blob %s: %d members, or not the tree's bytes", d, count[blobMember(d)])
		}
	}
	if want := 4 + len(all); len(names) != want { // oci-layout, index.json, blobs/, blobs/sha256/
		t.Errorf("%d members, want %d: %q", len(names), want, names)
	}
	if string(data["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout %s", data["oci-layout"])
	}
}

// TestOCIDir: the same layout as a directory, blobs hard-linked from the
// tree (one file system here).
func TestOCIDir(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "layout")
	rep, err := f.save(t, archive.Options{Format: archive.OCI, Output: out}, "app:multi")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{f.index, f.amd, f.arm, f.base, f.amdLayer, f.armLayer} {
		b, err := os.ReadFile(filepath.Join(out, "blobs", "sha256", d.Encoded()))
		if err != nil || !bytes.Equal(b, f.raw[d]) {
			t.Errorf("blob %s: %v, or not the tree's bytes", d, err)
		}
	}
	if rep.Linked != 5 || rep.Blobs != 5 { // 2 configs, 3 layers (base once); manifests are written
		t.Errorf("report %+v, want 5 blobs, all linked", rep)
	}
	st, err := os.Stat(filepath.Join(out, "blobs", "sha256", f.base.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	if st.Sys().(*syscall.Stat_t).Nlink < 2 {
		t.Errorf("base layer not hard-linked from the tree (%d links)", st.Sys().(*syscall.Stat_t).Nlink)
	}
}

// TestDir checks the dir layout file by file, as docs/save.md draws it.
func TestDir(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "dir")
	if _, err := f.save(t, archive.Options{Format: archive.Dir, Output: out}, "app:one", "other/db:1", "app:multi"); err != nil {
		t.Fatal(err)
	}
	amdConfig, dbConfig := configOf(t, f.raw[f.amd]), configOf(t, f.raw[f.db])
	want := map[string][]byte{
		"refs":              []byte("000 app:one\n001 other/db:1\n000 app:multi\n"),
		"000/config.json":   f.raw[amdConfig],
		"000/digest":        []byte(f.amd.String()),
		"000/manifest.json": f.raw[f.amd],
		"000/000.tar.gz":    f.raw[f.base],
		"000/000.sha256":    []byte(f.base.Encoded()),
		"000/001.tar.gz":    f.raw[f.amdLayer],
		"000/001.sha256":    []byte(f.amdLayer.Encoded()),
		"001/config.json":   f.raw[dbConfig],
		"001/digest":        []byte(f.db.String()),
		"001/manifest.json": f.raw[f.db],
		"001/000.tar.gz":    f.raw[f.base],
		"001/000.sha256":    []byte(f.base.Encoded()),
		"001/001.tar.gz":    f.raw[f.dl],
		"001/001.sha256":    []byte(f.dl.Encoded()),
	}
	checkFiles(t, out, want)
	// Layers are the tree's files, hard-linked (one file system here).
	for _, name := range []string{"000/000.tar.gz", "001/000.tar.gz", "001/001.tar.gz"} {
		st, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if n := st.Sys().(*syscall.Stat_t).Nlink; n < 2 {
			t.Errorf("%s: %d links: not hard-linked from the tree", name, n)
		}
	}
}

// TestStdoutSameBytes: -o - streams the very bytes a save to a file
// writes, and a save is reproducible (fixed member times).
func TestStdoutSameBytes(t *testing.T) {
	f := newFixture(t)
	for _, format := range []archive.Format{archive.DockerArchive, archive.OCIArchive} {
		out := filepath.Join(t.TempDir(), "out.tar")
		if _, err := f.save(t, archive.Options{Format: format, Output: out}, "app:multi", "other/db:1"); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := f.save(t, archive.Options{Format: format, Output: "-", Stdout: &buf}, "app:multi", "other/db:1"); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, buf.Bytes()) {
			t.Errorf("%s: -o - wrote %d bytes, -o FILE %d, not the same", format, buf.Len(), len(b))
		}
	}
}

// TestLegacyBlobName: a layer TripleO stored as <digest>.gz is read under
// that name.
func TestLegacyBlobName(t *testing.T) {
	f := newFixture(t)
	fx := tree.Fixture(f.root)
	if err := os.Rename(fx.BlobPath("other/db", f.dl), fx.LegacyBlobPath("other/db", f.dl)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out.tar")
	if _, err := f.save(t, archive.Options{Format: archive.DockerArchive, Output: out}, "other/db:1"); err != nil {
		t.Fatal(err)
	}
	if _, data := members(t, out); !bytes.Equal(data[blobMember(f.dl)], f.raw[f.dl]) {
		t.Errorf("the legacy-named layer is not in the archive")
	}
}

// TestDirUncompressed: --uncompressed writes each layer as its tar, named
// by its diff id.
func TestDirUncompressed(t *testing.T) {
	f := newFixture(t)
	out := filepath.Join(t.TempDir(), "dir")
	if _, err := f.save(t, archive.Options{Format: archive.Dir, Output: out, Uncompressed: true}, "other/db:1"); err != nil {
		t.Fatal(err)
	}
	dbConfig := configOf(t, f.raw[f.db])
	want := map[string][]byte{
		"refs":              []byte("000 other/db:1\n"),
		"000/config.json":   f.raw[dbConfig],
		"000/digest":        []byte(f.db.String()),
		"000/manifest.json": f.raw[f.db],
		"000/000.tar":       layerTar(t, "base", "content of base"),
		"000/000.sha256":    []byte(f.diffIDs[f.base].Encoded()),
		"000/001.tar":       layerTar(t, "db", "content of db"),
		"000/001.sha256":    []byte(f.diffIDs[f.dl].Encoded()),
	}
	checkFiles(t, out, want)
}

// checkFiles asserts that dir holds exactly want, file by file.
func checkFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	got := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got[rel], err = os.ReadFile(p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("%s: missing", name)
		} else if !bytes.Equal(g, b) {
			t.Errorf("%s: %q, want %q", name, trim(g), trim(b))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: not in the layout", name)
		}
	}
}

func trim(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// TestNotInTree: a REF the tree does not hold fails naming it, with
// nothing written at the output, whatever the format.
func TestNotInTree(t *testing.T) {
	f := newFixture(t)
	for _, format := range archive.Formats {
		for _, r := range []string{"app:nope", "nope:1", "app@sha256:" + strings.Repeat("0", 64)} {
			out := filepath.Join(t.TempDir(), "out")
			_, err := f.save(t, archive.Options{Format: format, Output: out}, "app:one", r)
			if !errors.Is(err, archive.ErrNotInTree) || !strings.HasPrefix(err.Error(), r+": ") {
				t.Errorf("%s %s: %v", format, r, err)
			}
			assertNothing(t, out)
		}
	}
}

// TestCorruptBlob: a blob whose bytes no longer match its digest fails
// the save naming it, and the output is removed.
func TestCorruptBlob(t *testing.T) {
	f := newFixture(t)
	p := tree.Fixture(f.root).BlobPath("other/db", f.dl)
	b := slices.Clone(f.raw[f.dl])
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, format := range archive.Formats {
		out := filepath.Join(t.TempDir(), "out")
		_, err := f.save(t, archive.Options{Format: format, Output: out}, "other/db:1")
		if err == nil || !strings.Contains(err.Error(), "blob "+f.dl.String()+" of other/db: its bytes hash to") {
			if format == archive.Dir || format == archive.OCI {
				// Hard-linked, not read: the output holds the
				// tree's file itself, which verify checks.
				continue
			}
			t.Errorf("%s: %v", format, err)
		}
		assertNothing(t, out)
	}
}

// TestOutputRefused: an output a save cannot replace whole is refused; an
// empty directory is replaced; -o - streams the tar.
func TestOutputRefused(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	os.Mkdir(full, 0o755)
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	if _, err := f.save(t, archive.Options{Format: archive.Dir, Output: full}, "app:one"); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty directory: %v", err)
	}
	if _, err := f.save(t, archive.Options{Format: archive.DockerArchive, Output: full}, "app:one"); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("archive onto a directory: %v", err)
	}
	if _, err := f.save(t, archive.Options{Format: archive.DockerArchive, Output: filepath.Join(dir, "no", "such")}, "app:one"); err == nil {
		t.Errorf("missing parent: no error")
	}
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if _, err := f.save(t, archive.Options{Format: archive.OCI, Output: empty}, "app:one"); err != nil {
		t.Errorf("empty directory: %v", err)
	}
	var buf bytes.Buffer
	if _, err := f.save(t, archive.Options{Format: archive.DockerArchive, Output: "-", Stdout: &buf}, "app:one"); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "stdout.tar")
	os.WriteFile(tmp, buf.Bytes(), 0o644)
	if names, _ := members(t, tmp); len(names) != 7 {
		t.Errorf("stdout: %q", names)
	}
}

// TestDirCopiesAcrossFileSystems: where the output is on another file
// system than the tree, layers are copied, checked, not linked.
func TestDirCopiesAcrossFileSystems(t *testing.T) {
	f := newFixture(t)
	var treeSt, shmSt syscall.Stat_t
	if err := syscall.Stat(f.root.Dir(), &treeSt); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat("/dev/shm", &shmSt); err != nil || shmSt.Dev == treeSt.Dev {
		t.Skipf("no /dev/shm on another file system than %s (%v)", f.root.Dir(), err)
	}
	dir, err := os.MkdirTemp("/dev/shm", "archive-test-")
	if err != nil {
		t.Skipf("/dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	out := filepath.Join(dir, "dir")
	rep, err := f.save(t, archive.Options{Format: archive.Dir, Output: out}, "other/db:1")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Linked != 0 || rep.Blobs != 2 {
		t.Errorf("report %+v, want 2 blobs copied", rep)
	}
	for name, d := range map[string]digest.Digest{"000/000.tar.gz": f.base, "000/001.tar.gz": f.dl} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(b, f.raw[d]) {
			t.Errorf("%s: %v, or not the tree's bytes", name, err)
		}
	}
}
