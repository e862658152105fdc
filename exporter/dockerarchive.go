package exporter

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Media types of the manifest a dockerArchive synthesises. A docker save
// tarball holds no manifest of its own, so, like skopeo's docker-archive
// transport, we make a Docker schema2 one up from the files it names.
const (
	dockerArchiveManifestType  = distribution.MediaTypeDockerManifest
	dockerArchiveConfigType    = distribution.MediaTypeDockerConfig
	dockerArchiveLayerType     = distribution.MediaTypeDockerLayer
	dockerArchiveLayerGzipType = distribution.MediaTypeDockerLayerGzip
	dockerArchiveLayerZstdType = distribution.MediaTypeOCILayerZstd
)

// dockerArchiveMaxJSON caps manifest.json and the image config, the only
// files read into memory: both are a few KiB in practice, so anything
// larger is a mistake or an attack, not an image.
const dockerArchiveMaxJSON = 4 << 20

// dockerArchiveMaxLinks bounds symlink chains so a link cycle fails fast.
const dockerArchiveMaxLinks = 40

// Magic numbers that tell compressed layers (and archives) apart.
var (
	dockerArchiveGzipMagic = []byte{0x1f, 0x8b}
	dockerArchiveZstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// dockerArchive is a source for one image of a `docker save` tarball
// (skopeo's docker-archive:FILE[:REPO:TAG] transport), in either the
// legacy layout (<id>/layer.tar, <id>.json) or Docker 25+'s OCI layout
// (blobs/sha256/<hex>): both are described by manifest.json, which is all
// this source follows.
//
// A tar has no index, so opening the archive hashes every file in one
// streaming pass and remembers where each sits; Blob then scans the tar
// afresh up to the entry it wants. Nothing is kept open between calls,
// which makes concurrent Blob calls safe.
type dockerArchive struct {
	ctx      context.Context // ends reads of the archive: an interrupt
	path     string
	gzipped  bool
	tag      string // the chosen image's RepoTag, "" if it has none
	manifest []byte
	digest   digest.Digest
	blobs    map[digest.Digest]*dockerTarEntry
	// gzipped holds the layers docker save stored as plain tars,
	// compressed at open: go-containerregistry clients (crane) gunzip
	// every layer whatever its media type, and skopeo compresses them
	// too when it copies an archive to a registry.
	compressed map[digest.Digest]string
	tmpDir     string
}

var _ source = (*dockerArchive)(nil)

// dockerTarEntry is what the index pass remembers of one tar entry.
type dockerTarEntry struct {
	name     string // cleaned, relative to the archive root
	ord      int    // position in the archive, counting from 0
	typeflag byte
	linkname string
	size     int64
	digest   digest.Digest // of the bytes as stored; regular files only
	head     []byte        // first bytes, to sniff layer compression
}

// dockerTarIndex maps cleaned entry names to entries. When a name occurs
// twice the first entry wins, as it does in go-containerregistry's
// tarball.LoadManifest, so that manifest.json means the same to both.
type dockerTarIndex struct {
	path    string // the archive file; "" for a stream
	source  string // a stream's source reference, for messages
	entries map[string]*dockerTarEntry
}

// what names the archive at the head of a message: "docker-archive
// FILE", or the source a stream comes from.
func (idx *dockerTarIndex) what() string {
	if idx.path == "" {
		return idx.source
	}
	return "docker-archive " + idx.path
}

// openDockerArchive opens the image ref names in the docker save tarball
// at path. ref is "" (the archive must hold exactly one image),
// "REPO:TAG" (matched against the archive's RepoTags, tag "latest" if
// none is given) or "@N" (the Nth image of manifest.json, from 0).
//
// ctx ends every read of the archive, at open and later. Whatever fails,
// open leaves no temporary file behind.
func openDockerArchive(ctx context.Context, path, ref string) (*dockerArchive, error) {
	a := &dockerArchive{ctx: ctx, path: path}
	idx, err := a.index()
	if err != nil {
		return nil, err
	}
	mf, err := a.loadManifest(idx)
	if err != nil {
		return nil, err
	}
	img, err := a.selectImage(mf, ref)
	if err != nil {
		return nil, err
	}
	if a.tag == "" && len(img.RepoTags) > 0 {
		a.tag = img.RepoTags[0]
	}
	if err := a.synthesise(idx, img); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// open returns the archive's tar stream, decompressing it when the file
// is a gzipped tar (docker save | gzip), which skopeo accepts too.
//
// The stream stops when a.ctx is done, and a gzipped one when it has
// produced more than maxGzipRatio times the file's size.
func (a *dockerArchive) open() (io.ReadCloser, error) {
	f, err := openRegular(a.path)
	if err != nil {
		return nil, fmt.Errorf("docker-archive: %w", err)
	}
	if !a.gzipped {
		return withContext(a.context(), f), nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("docker-archive: %w", err)
	}
	zr, err := gzip.NewReader(bufio.NewReader(ctxReader{a.context(), f}))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("docker-archive %s: not a tar archive: %v", a.path, err)
	}
	limit := maxGzipRatio * max(fi.Size(), 1)
	return struct {
		io.Reader
		io.Closer
	}{&boundedReader{r: zr, left: limit, limit: limit}, f}, nil
}

func (a *dockerArchive) context() context.Context {
	if a.ctx == nil {
		return context.Background()
	}
	return a.ctx
}

// sniff sets a.gzipped from the file's first bytes and refuses zstd,
// which would need a decoder this module does not carry.
func (a *dockerArchive) sniff() error {
	f, err := openRegular(a.path)
	if err != nil {
		return fmt.Errorf("docker-archive: %w", err)
	}
	defer f.Close()
	head := make([]byte, len(dockerArchiveZstdMagic))
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, dockerArchiveZstdMagic):
		return fmt.Errorf("docker-archive %s: not a tar archive: it is zstd-compressed; decompress it first", a.path)
	case bytes.HasPrefix(head, dockerArchiveGzipMagic):
		a.gzipped = true
	}
	return nil
}

// index makes the one streaming pass over the archive: it checks that the
// file is a tar whose entry names stay inside it, and hashes every regular
// file as it goes by, in constant memory.
func (a *dockerArchive) index() (*dockerTarIndex, error) {
	if err := a.sniff(); err != nil {
		return nil, err
	}
	r, err := a.open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	idx := &dockerTarIndex{path: a.path, entries: make(map[string]*dockerTarEntry)}
	tr := tar.NewReader(r)
	for ord := 0; ; ord++ {
		hdr, err := tr.Next()
		if err == io.EOF && ord > 0 {
			return idx, nil
		}
		if a.context().Err() != nil {
			return nil, context.Cause(a.context())
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, a.tarError(ord, err)
		}
		if err := checkTarEntry(hdr); err != nil {
			return nil, fmt.Errorf("docker-archive %s: %w", a.path, err)
		}
		if err := checkEntryCount(ord); err != nil {
			return nil, fmt.Errorf("docker-archive %s: %w", a.path, err)
		}
		if err := idx.add(hdr, tr, ord); err != nil {
			return nil, err
		}
	}
}

// tarError explains a failure to read the entry at ord: failing on the
// very first header means the file was never a tar at all.
func (a *dockerArchive) tarError(ord int, err error) error {
	if ord == 0 {
		if err == io.EOF {
			err = errors.New("no entries")
		}
		return fmt.Errorf("docker-archive %s: not a tar archive: %v", a.path, err)
	}
	return fmt.Errorf("docker-archive %s: reading tar entry %d: %v", a.path, ord, err)
}

// add records hdr, hashing its content if it is a regular file.
func (idx *dockerTarIndex) add(hdr *tar.Header, r io.Reader, ord int) error {
	name, ok := cleanDockerTarName(hdr.Name)
	if !ok {
		return fmt.Errorf("%s: entry %q: refusing a path outside the archive", idx.what(), hdr.Name)
	}
	if _, dup := idx.entries[name]; dup {
		return nil
	}
	e := &dockerTarEntry{name: name, ord: ord, typeflag: hdr.Typeflag, linkname: hdr.Linkname}
	if hdr.Typeflag == tar.TypeReg {
		if err := e.hash(r); err != nil {
			return fmt.Errorf("%s: reading %s: %v", idx.what(), name, err)
		}
	}
	idx.entries[name] = e
	return nil
}

// hash digests the entry's bytes as they stream by, keeping the first few
// to tell gzip and zstd layers from plain tars.
func (e *dockerTarEntry) hash(r io.Reader) error {
	head := make([]byte, len(dockerArchiveZstdMagic))
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return err
	}
	e.head = head[:n]
	h := sha256.New()
	h.Write(e.head)
	rest, err := io.Copy(h, r)
	if err != nil {
		return err
	}
	e.size = int64(n) + rest
	e.digest = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	return nil
}

// cleanDockerTarName returns name relative to the archive root, or false
// if it is absolute or has a ".." element: such names are how malicious
// tars write outside the directory they are unpacked into, and no docker
// save output has them.
func cleanDockerTarName(name string) (string, bool) {
	if name == "" || strings.HasPrefix(name, "/") {
		return "", false
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return "", false
		}
	}
	return path.Clean(name), true
}

// resolve finds the regular file that manifest.json's name refers to,
// following symlinks and hard links: legacy docker save writes a layer
// shared by two images once and links the second <id>/layer.tar to the
// first. Links are followed inside the archive only.
func (idx *dockerTarIndex) resolve(ref string) (*dockerTarEntry, error) {
	name, ok := cleanDockerTarName(ref)
	if !ok {
		return nil, fmt.Errorf("%s: manifest.json names %q, a path outside the archive", idx.what(), ref)
	}
	for hop := range dockerArchiveMaxLinks {
		e := idx.entries[name]
		if e == nil && hop == 0 {
			return nil, fmt.Errorf("%s: %s, named in manifest.json, is not in the archive", idx.what(), ref)
		}
		if e == nil {
			return nil, fmt.Errorf("%s: %s links to %s, which is not in the archive", idx.what(), ref, name)
		}
		switch e.typeflag {
		case tar.TypeReg:
			return e, nil
		case tar.TypeSymlink, tar.TypeLink:
			target, ok := e.target()
			if !ok {
				return nil, fmt.Errorf("%s: %s links to %q, outside the archive", idx.what(), e.name, e.linkname)
			}
			name = target
		default:
			return nil, fmt.Errorf("%s: %s is not a regular file", idx.what(), e.name)
		}
	}
	return nil, fmt.Errorf("%s: %s: more than %d links deep (a link loop?)", idx.what(), ref, dockerArchiveMaxLinks)
}

// target is where link e points, relative to the archive root: a symlink
// is relative to its own directory, a hard link to the root. It is false
// if that leaves the archive.
func (e *dockerTarEntry) target() (string, bool) {
	if path.IsAbs(e.linkname) {
		return "", false
	}
	t := path.Clean(e.linkname)
	if e.typeflag == tar.TypeSymlink {
		t = path.Join(path.Dir(e.name), e.linkname)
	}
	if t == ".." || strings.HasPrefix(t, "../") {
		return "", false
	}
	return t, true
}

// loadManifest parses manifest.json with go-containerregistry, after the
// index has checked that it is there and small enough to read.
func (a *dockerArchive) loadManifest(idx *dockerTarIndex) (tarball.Manifest, error) {
	if idx.entries["manifest.json"] == nil {
		return nil, fmt.Errorf("docker-archive %s: no manifest.json: not a docker save archive", a.path)
	}
	if _, err := idx.resolveSmall("manifest.json"); err != nil {
		return nil, err
	}
	mf, err := tarball.LoadManifest(a.open)
	if err != nil {
		return nil, fmt.Errorf("docker-archive %s: manifest.json: %v", a.path, err)
	}
	if len(mf) == 0 {
		return nil, fmt.Errorf("docker-archive %s: manifest.json lists no images", a.path)
	}
	return mf, nil
}

// resolveSmall is resolve for the files read whole into memory.
func (idx *dockerTarIndex) resolveSmall(ref string) (*dockerTarEntry, error) {
	e, err := idx.resolve(ref)
	if err != nil {
		return nil, err
	}
	if e.size > dockerArchiveMaxJSON {
		return nil, fmt.Errorf("%s: %s is %d bytes, over the %d MiB limit for JSON files", idx.what(), ref, e.size, dockerArchiveMaxJSON>>20)
	}
	return e, nil
}

// selectImage picks the image ref names out of manifest.json, the way
// skopeo reads docker-archive:FILE, docker-archive:FILE:REPO:TAG and
// docker-archive:FILE:@N.
func (a *dockerArchive) selectImage(mf tarball.Manifest, ref string) (tarball.Descriptor, error) {
	switch {
	case ref == "":
		if len(mf) != 1 {
			return tarball.Descriptor{}, fmt.Errorf("docker-archive %s holds %d images (%s): name one as docker-archive:%s:REPO:TAG or docker-archive:%s:@N",
				a.path, len(mf), listDockerImages(mf), a.path, a.path)
		}
		return mf[0], nil
	case strings.HasPrefix(ref, "@"):
		n, err := strconv.Atoi(ref[1:])
		if err != nil || n < 0 || ref[1:] != strconv.Itoa(n) {
			return tarball.Descriptor{}, fmt.Errorf("docker-archive %s: bad image index %q: want @N with N a number from 0", a.path, ref)
		}
		if n >= len(mf) {
			return tarball.Descriptor{}, fmt.Errorf("docker-archive %s: no image %s: it holds %d (%s)", a.path, ref, len(mf), listDockerImages(mf))
		}
		return mf[n], nil
	}
	want, err := parseDockerArchiveTag(ref)
	if err != nil {
		return tarball.Descriptor{}, fmt.Errorf("docker-archive %s: %v", a.path, err)
	}
	for _, img := range mf {
		for _, tag := range img.RepoTags {
			if have, err := parseDockerArchiveTag(tag); err == nil && have == want {
				a.tag = tag
				return img, nil
			}
		}
	}
	return tarball.Descriptor{}, fmt.Errorf("docker-archive %s: no image tagged %s; it holds %s", a.path, ref, listDockerImages(mf))
}

// listDockerImages names each image for an error message: by its tags, or
// as @N when it has none, so that every entry is something to select.
func listDockerImages(mf tarball.Manifest) string {
	var names []string
	for i, img := range mf {
		if len(img.RepoTags) == 0 {
			names = append(names, "@"+strconv.Itoa(i))
		}
		names = append(names, img.RepoTags...)
	}
	const limit = 10
	if len(names) > limit {
		names = append(names[:limit], "…")
	}
	return strings.Join(names, ", ")
}

// parseDockerArchiveTag splits ref at the last colon after the last slash
// (a colon before it is a registry port) and normalises the repository
// the way Docker does, so that "hello", "hello:latest" and
// "docker.io/library/hello:latest" all name the same RepoTag.
func parseDockerArchiveTag(ref string) (string, error) {
	if strings.Contains(ref, "@") {
		return "", fmt.Errorf("%q: a docker-archive image is named by REPO:TAG or @N, not by digest", ref)
	}
	repo, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	if repo == "" || tag == "" {
		return "", fmt.Errorf("%q: want REPO:TAG", ref)
	}
	r, err := name.NewRepository(repo)
	if err != nil {
		return "", fmt.Errorf("%q: %v", ref, err)
	}
	return r.Name() + ":" + tag, nil
}

// dockerArchiveManifest is a Docker schema2 manifest. Its field order is
// fixed, so one archive always yields the same bytes and digest.
type dockerArchiveManifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
}

// synthesise builds the schema2 manifest for img from the digests the
// index pass computed, and remembers which entry serves each blob: a
// layer docker save stored as a plain tar is compressed first.
func (a *dockerArchive) synthesise(idx *dockerTarIndex, img tarball.Descriptor) error {
	a.blobs = map[digest.Digest]*dockerTarEntry{}
	cfg, manifest, err := idx.synthesise(img, func(e *dockerTarEntry) (Descriptor, error) {
		if e.layerType() == dockerArchiveLayerType {
			return a.compress(e)
		}
		a.blobs[e.digest] = e
		return Descriptor{MediaType: e.layerType(), Digest: e.digest, Size: e.size}, nil
	})
	if err != nil {
		return err
	}
	a.blobs[cfg.digest] = cfg
	a.manifest, a.digest = manifest, digest.FromBytes(manifest)
	return nil
}

// synthesise builds the schema2 manifest that docker save's image img
// stands for, the one manifest a docker-archive: source and a streamed
// one (containers-storage:, docker-daemon:) both serve: its config as
// stored, and each layer as layer describes the blob that will serve it.
// Its bytes depend on nothing else, so one image always yields one
// digest. It returns the config's entry with the manifest.
func (idx *dockerTarIndex) synthesise(img tarball.Descriptor, layer func(*dockerTarEntry) (Descriptor, error)) (*dockerTarEntry, []byte, error) {
	cfg, err := idx.resolveSmall(img.Config)
	if err != nil {
		return nil, nil, err
	}
	m := dockerArchiveManifest{
		SchemaVersion: 2,
		MediaType:     dockerArchiveManifestType,
		Config:        Descriptor{MediaType: dockerArchiveConfigType, Digest: cfg.digest, Size: cfg.size},
		Layers:        make([]Descriptor, 0, len(img.Layers)),
	}
	for _, l := range img.Layers {
		e, err := idx.resolve(l)
		if err != nil {
			return nil, nil, err
		}
		desc, err := layer(e)
		if err != nil {
			return nil, nil, err
		}
		m.Layers = append(m.Layers, desc)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", idx.what(), err)
	}
	return cfg, b, nil
}

// compress gzips the plain tar layer e into the archive's temporary
// directory (gzipLayer: the same digest on every run) and describes the
// result.
func (a *dockerArchive) compress(e *dockerTarEntry) (Descriptor, error) {
	if a.tmpDir == "" {
		dir, err := os.MkdirTemp("", "image-serve-docker-archive-")
		if err != nil {
			return Descriptor{}, err
		}
		a.tmpDir, a.compressed = dir, map[digest.Digest]string{}
	}
	r, err := a.open()
	if err != nil {
		return Descriptor{}, err
	}
	defer r.Close()
	tr, err := a.seek(context.Background(), r, e)
	if err != nil {
		return Descriptor{}, err
	}
	f, err := os.CreateTemp(a.tmpDir, "layer-")
	if err != nil {
		return Descriptor{}, err
	}
	defer f.Close()
	desc, _, err := gzipLayer(f, tr)
	if err != nil {
		return Descriptor{}, fmt.Errorf("docker-archive %s: compressing %s: %w", a.path, e.name, err)
	}
	a.compressed[desc.Digest] = f.Name()
	return desc, nil
}

// layerType labels a layer by its magic bytes: docker save writes plain
// tars, but archives built by other tools carry compressed layers as is.
func (e *dockerTarEntry) layerType() string {
	switch {
	case bytes.HasPrefix(e.head, dockerArchiveGzipMagic):
		return dockerArchiveLayerGzipType
	case bytes.HasPrefix(e.head, dockerArchiveZstdMagic):
		return dockerArchiveLayerZstdType
	}
	return dockerArchiveLayerType
}

// repoTag is what the archive calls the chosen image ("repo:tag" as
// written in manifest.json, "" if untagged), to name the export after:
// the RepoTag the caller asked for, else the image's first.
func (a *dockerArchive) repoTag() string {
	return a.tag
}

// Root returns the synthesised schema2 manifest. Root and Manifest hand
// out copies, so a caller cannot change the bytes the digest was taken of.
func (a *dockerArchive) Root(ctx context.Context) ([]byte, string, error) {
	return bytes.Clone(a.manifest), dockerArchiveManifestType, nil
}

// Manifest returns the synthesised manifest, the only one an archive has.
func (a *dockerArchive) Manifest(ctx context.Context, d Descriptor) ([]byte, error) {
	if d.Digest != a.digest {
		return nil, fmt.Errorf("manifest %s not in docker-archive %s", d.Digest, a.path)
	}
	return bytes.Clone(a.manifest), nil
}

// Blob streams the config or a layer of the image. It opens the archive
// anew and scans to the entry the index pass found, so calls do not share
// state; the returned reader closes the file.
func (a *dockerArchive) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	if path, ok := a.compressed[d.Digest]; ok {
		return os.Open(path)
	}
	e := a.blobs[d.Digest]
	if e == nil {
		return nil, fmt.Errorf("docker-archive %s: no blob %s in the image", a.path, d.Digest)
	}
	r, err := a.open()
	if err != nil {
		return nil, err
	}
	tr, err := a.seek(ctx, r, e)
	if err != nil {
		r.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{tr, r}, nil
}

// seek advances a fresh tar stream to entry e and checks that it is still
// the file indexed at open, in case the archive was replaced meanwhile.
func (a *dockerArchive) seek(ctx context.Context, r io.Reader, e *dockerTarEntry) (io.Reader, error) {
	tr := tar.NewReader(r)
	for ord := 0; ord <= e.ord; ord++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, a.tarError(ord, err)
		}
		if ord == e.ord {
			if name, _ := cleanDockerTarName(hdr.Name); name != e.name || hdr.Typeflag != tar.TypeReg {
				return nil, fmt.Errorf("docker-archive %s: changed since it was opened (entry %d is no longer %s)", a.path, ord, e.name)
			}
		}
	}
	return tr, nil
}

// Close removes the compressed layers; no file stays open between calls.
func (a *dockerArchive) Close() error {
	if a.tmpDir == "" {
		return nil
	}
	return os.RemoveAll(a.tmpDir)
}
