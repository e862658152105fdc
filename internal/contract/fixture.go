package contract

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Media types of the fixture's content.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayer       = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeOCIEmpty       = "application/vnd.oci.empty.v1+json"
)

// Artifact types of the fixture's referrers.
const (
	ArtifactTypeSignature = "application/vnd.example.signature.v1"
	ArtifactTypeSBOM      = "application/vnd.example.sbom.config.v1+json" // its config's media type
)

// Blob is content addressed by its digest.
type Blob struct {
	Digest digest.Digest
	Data   []byte
}

// Manifest is a manifest with the media type it is served as.
type Manifest struct {
	Blob
	MediaType string
}

// Referrer is a manifest with an OCI 1.1 subject, as its subject's
// referrers index describes it.
type Referrer struct {
	Manifest
	ArtifactType string
	Annotations  map[string]string
}

// Fixture is what Build wrote: one repository with every kind of object a
// server must serve or refuse, and a second one to page the catalog with.
type Fixture struct {
	Repo  string
	Repos []string // every repository of the tree, sorted: Repo and a Docker image's

	root *tree.Root // for the rows that retag

	ConfigAMD64, ConfigARM64 Blob
	Layer                    Blob // gzip, stored as blobs/<digest>
	LegacyLayer              Blob // gzip, stored only as blobs/<digest>.gz (TripleO)
	// Big is 16 KiB, large enough that a few small byte ranges of it fit
	// in a multipart answer smaller than itself.
	Big Blob

	AMD64, ARM64 Manifest // OCI image manifests
	Index        Manifest // OCI index of AMD64 and ARM64, with platforms
	Docker       Manifest // Docker schema 2 manifest

	// Referrers of AMD64, untagged as signatures pushed by digest are,
	// sorted by digest: a signature with an artifactType, and an SBOM
	// without one (its config's media type stands in) but with
	// annotations. ARM64 has none.
	Referrers []Referrer

	// Tags, sorted: "docker" (Docker), "multi" (Index at qs=1.0, AMD64 at
	// qs=0.001), "rollback" (AMD64; rows move it and put it back),
	// "single" (AMD64 only) and "v9.gz" (Docker), which must not make
	// "v9" a tag.
	Tags []string
}

// The fixture's tags.
const (
	TagSingle   = "single"
	TagDocker   = "docker"
	TagMulti    = "multi"
	TagV9GZ     = "v9.gz"
	TagRollback = "rollback"
	// TagEphemeral is not in the tree: a row creates and deletes it.
	TagEphemeral = "ephemeral"
)

// Build writes the fixture into root, which must be initialised, through
// tree's writers wherever one exists; the rest are files only legacy
// trees or crashed writers leave, written by hand.
func Build(t testing.TB, root *tree.Root) *Fixture {
	t.Helper()
	f := &Fixture{Repo: "ns/app", Repos: []string{"ns/app", "ns/other"}, root: root}
	f.ConfigAMD64 = blob(mustJSON(t, imageConfig("amd64")))
	f.ConfigARM64 = blob(mustJSON(t, imageConfig("arm64")))
	f.Layer = blob(gzipTar(t, "hello.txt", "hello from image-serve\n"))
	f.LegacyLayer = blob(gzipTar(t, "legacy.txt", "stored as <digest>.gz by TripleO\n"))

	f.AMD64 = manifest(t, MediaTypeOCIManifest, imageManifest(MediaTypeOCIManifest,
		descriptor(MediaTypeOCIConfig, f.ConfigAMD64), descriptor(MediaTypeOCILayer, f.Layer)))
	f.ARM64 = manifest(t, MediaTypeOCIManifest, imageManifest(MediaTypeOCIManifest,
		descriptor(MediaTypeOCIConfig, f.ConfigARM64), descriptor(MediaTypeOCILayer, f.LegacyLayer)))
	f.Index = manifest(t, MediaTypeOCIIndex, map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeOCIIndex,
		"manifests": []any{
			platformDescriptor(f.AMD64, "amd64"),
			platformDescriptor(f.ARM64, "arm64"),
		},
	})
	f.Docker = manifest(t, MediaTypeDockerManifest, imageManifest(MediaTypeDockerManifest,
		descriptor(MediaTypeDockerConfig, f.ConfigAMD64), descriptor(MediaTypeDockerLayer, f.Layer)))

	f.Big = blob(pseudoRandom(16 << 10))
	for _, b := range []Blob{f.ConfigAMD64, f.ConfigARM64, f.Layer, f.Big} {
		putBlob(t, root, f.Repo, b)
	}
	fx := tree.Fixture(root)
	writeFile(t, fx.LegacyBlobPath(f.Repo, f.LegacyLayer.Digest), f.LegacyLayer.Data)
	for _, m := range []Manifest{f.AMD64, f.ARM64, f.Index, f.Docker} {
		if err := fx.PutManifest(f.Repo, m.Digest, m.MediaType, m.Data); err != nil {
			t.Fatal(err)
		}
	}
	putTag(t, root, f.Repo, TagSingle, tree.TagVariant{Digest: f.AMD64.Digest, MediaType: f.AMD64.MediaType, QS: 1})
	putTag(t, root, f.Repo, TagDocker, tree.TagVariant{Digest: f.Docker.Digest, MediaType: f.Docker.MediaType, QS: 1})
	putTag(t, root, f.Repo, TagMulti,
		tree.TagVariant{Digest: f.Index.Digest, MediaType: f.Index.MediaType, QS: 1},
		// for clients that cannot read indexes, as distribution serves them
		tree.TagVariant{Digest: f.AMD64.Digest, MediaType: f.AMD64.MediaType, QS: 0.001})
	putTag(t, root, f.Repo, TagV9GZ, tree.TagVariant{Digest: f.Docker.Digest, MediaType: f.Docker.MediaType, QS: 1})
	putTag(t, root, f.Repo, TagRollback, tree.TagVariant{Digest: f.AMD64.Digest, MediaType: f.AMD64.MediaType})
	f.Tags = []string{TagDocker, TagMulti, TagRollback, TagSingle, TagV9GZ}

	other := f.Repos[1]
	for _, b := range []Blob{f.ConfigAMD64, f.Layer} {
		putBlob(t, root, other, b)
	}
	if err := fx.PutManifest(other, f.Docker.Digest, f.Docker.MediaType, f.Docker.Data); err != nil {
		t.Fatal(err)
	}
	putTag(t, root, other, "latest", tree.TagVariant{Digest: f.Docker.Digest, MediaType: f.Docker.MediaType})
	f.Referrers = putReferrers(t, root, f.Repo, f.AMD64)

	// What no server may serve: a writer's temporary file before its
	// rename, and TripleO's per-repository .htaccess (2019-04..2021-12),
	// which stays in old trees.
	writeFile(t, filepath.Join(filepath.Dir(fx.BlobPath(f.Repo, f.Layer.Digest)), "."+f.Layer.Digest.String()+"123456"), f.Layer.Data)
	writeFile(t, filepath.Join(filepath.Dir(fx.ManifestDir(f.Repo, f.AMD64.Digest)), ".htaccess"),
		[]byte("AddHandler type-map .type-map\nMultiviewsMatch Handlers\n"))
	writeFile(t, f.referrersTempFile(), distribution.EmptyReferrers())
	backdate(t, root.Dir())
	return f
}

// putReferrers stores a signature and an SBOM of subject in repo, as an
// export of each does (manifest, then the subject's referrers index), and
// returns them sorted by digest.
func putReferrers(t testing.TB, root *tree.Root, repo string, subject Manifest) []Referrer {
	t.Helper()
	empty := blob([]byte("{}"))
	putBlob(t, root, repo, empty)
	sig := referrer(t, root, repo, subject, map[string]any{
		"artifactType": ArtifactTypeSignature,
		"config":       descriptor(MediaTypeOCIEmpty, empty),
		"layers":       []any{descriptor("application/vnd.example.signature.v1+json", putBlob(t, root, repo, blob([]byte(`{"signed":true}`))))},
	})
	sig.ArtifactType = ArtifactTypeSignature
	annotations := map[string]string{"org.opencontainers.image.created": "2026-01-01T00:00:00Z"}
	sbom := referrer(t, root, repo, subject, map[string]any{
		"config":      descriptor(ArtifactTypeSBOM, putBlob(t, root, repo, blob([]byte(`{"kind":"sbom"}`)))),
		"layers":      []any{descriptor("text/spdx", putBlob(t, root, repo, blob([]byte("SPDXVersion: SPDX-2.3\n"))))},
		"annotations": annotations,
	})
	sbom.ArtifactType, sbom.Annotations = ArtifactTypeSBOM, annotations
	if err := tree.Fixture(root).UpdateReferrers(repo, subject.Digest); err != nil {
		t.Fatal(err)
	}
	rs := []Referrer{sig, sbom}
	slices.SortFunc(rs, func(a, b Referrer) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return rs
}

// referrer stores an OCI image manifest of fields whose subject is
// subject.
func referrer(t testing.TB, root *tree.Root, repo string, subject Manifest, fields map[string]any) Referrer {
	t.Helper()
	m := map[string]any{"schemaVersion": 2, "mediaType": MediaTypeOCIManifest, "subject": descriptor(subject.MediaType, subject.Blob)}
	maps.Copy(m, fields)
	r := Referrer{Manifest: manifest(t, MediaTypeOCIManifest, m)}
	if err := tree.Fixture(root).PutManifest(repo, r.Digest, r.MediaType, r.Data); err != nil {
		t.Fatal(err)
	}
	return r
}

// referrersTempFile is what a referrers writer leaves before its rename.
func (f *Fixture) referrersTempFile() string {
	return filepath.Join(filepath.Dir(tree.Fixture(f.root).ReferrersPath(f.Repo, f.AMD64.Digest)), "."+f.AMD64.Digest.String()+"123456")
}

// backdate makes every file under dir an hour old. A served tree is
// normally older than a second, and Apache gives a file modified within
// the current second a weak ETag, which If-Range may not use (RFC 9110
// 13.1.5): a fresh fixture would turn a resumed download into a full one.
func backdate(t testing.TB, dir string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	// the tree's own path may be a link, which WalkDir would not enter
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return err
		}
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func putBlob(t testing.TB, root *tree.Root, repo string, b Blob) Blob {
	t.Helper()
	fetch := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b.Data)), nil }
	if _, _, err := tree.Fixture(root).PutBlob(repo, b.Digest, int64(len(b.Data)), false, fetch); err != nil {
		t.Fatal(err)
	}
	return b
}

func putTag(t testing.TB, root *tree.Root, repo, tag string, variants ...tree.TagVariant) {
	t.Helper()
	if err := tree.Fixture(root).PutTag(repo, tag, variants); err != nil {
		t.Fatal(err)
	}
}

// moveTag points tag of the fixture's repository at m alone, as an export
// to that tag does.
func (f *Fixture) moveTag(t testing.TB, tag string, m Manifest) {
	t.Helper()
	putTag(t, f.root, f.Repo, tag, tree.TagVariant{Digest: m.Digest, MediaType: m.MediaType})
}

func (f *Fixture) deleteTag(t testing.TB, tag string) {
	t.Helper()
	if err := tree.Fixture(f.root).DeleteTag(f.Repo, tag); err != nil {
		t.Fatal(err)
	}
}

// writeFile writes a file the web server's user can read, whatever the
// umask.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

func blob(data []byte) Blob { return Blob{digest.FromBytes(data), data} }

func manifest(t testing.TB, mediaType string, v any) Manifest {
	t.Helper()
	return Manifest{blob(mustJSON(t, v)), mediaType}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func descriptor(mediaType string, b Blob) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": b.Digest, "size": len(b.Data)}
}

func platformDescriptor(m Manifest, arch string) map[string]any {
	d := descriptor(m.MediaType, m.Blob)
	d["platform"] = map[string]string{"architecture": arch, "os": "linux"}
	return d
}

func imageManifest(mediaType string, config map[string]any, layers ...map[string]any) map[string]any {
	return map[string]any{"schemaVersion": 2, "mediaType": mediaType, "config": config, "layers": layers}
}

func imageConfig(arch string) map[string]any {
	return map[string]any{
		"architecture": arch,
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"cat", "/hello.txt"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{}},
	}
}

// pseudoRandom is n bytes that repeat no short pattern, the same on every
// run: a byte range read from the wrong offset shows.
func pseudoRandom(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// gzipTar is a one-file tar, gzipped: a real layer, starting with the gzip
// magic 1f 8b, that a server adding Content-Encoding would break.
func gzipTar(t testing.TB, name, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(tw, content); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
