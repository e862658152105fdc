package exporter

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
)

// streamMaxSmall bounds the bytes of all the entries a stream keeps in
// memory together (manifest.json, configs, legacy json and VERSION
// files): a few KiB per image in practice.
const streamMaxSmall = 64 << 20

// tarHeadSize is how much of an entry is read before deciding what it is:
// one tar header block, whose magic sits at offset 257.
const tarHeadSize = 512

// streamedArchive is a source for the one image of a docker save stream
// that cannot be read twice: the output of `podman image save` on a pipe
// (containers-storage:) or the body of a Docker Engine's /images/get
// (docker-daemon:). A stream has no index and cannot seek, so it is read
// in one pass: small entries that are not layers are kept in memory (each
// within dockerArchiveMaxJSON), and every layer goes to a private
// temporary file as it streams — a plain tar gzip-compressed on the way
// (gzipLayer, as docker-archive: does), hashed before and after — a
// compressed one as it is. At the end manifest.json decides what the
// image is, and the manifest is synthesised as docker-archive:'s is
// (dockerTarIndex.synthesise). Both layouts docker save writes work:
// they are told apart by content (tar, gzip or zstd magic), not names.
type streamedArchive struct {
	source   string // the source reference, for messages
	tag      string // the image's first RepoTag, "" if it has none
	manifest []byte
	digest   digest.Digest
	small    map[digest.Digest][]byte // the config
	layers   map[digest.Digest]string // served layer blobs: their temporary files
	// rewritten counts the layers stored as plain tars, which are served
	// compressed: the manifest names blobs the store never held.
	rewritten int
	tmpDir    string
}

var _ source = (*streamedArchive)(nil)

// streamEntry is what the pass keeps of one regular file beyond its
// dockerTarEntry: where its bytes went.
type streamEntry struct {
	data   []byte        // a small entry's bytes
	file   string        // a layer's temporary file
	served Descriptor    // the layer blob as served (compressed)
	diffID digest.Digest // a plain tar layer's own digest; "" if compressed
}

// streamLimits bound one stream.
type streamLimits struct {
	// maxLayer refuses a layer whose bytes in the stream are more.
	maxLayer int64
}

// readDockerSave reads the docker save stream r to its end, in one pass,
// as the source of its one image. source names the stream in messages.
// Whatever fails, it leaves no temporary file behind.
func readDockerSave(ctx context.Context, source string, r io.Reader, lim streamLimits) (_ *streamedArchive, err error) {
	a := &streamedArchive{source: source, layers: map[digest.Digest]string{}, small: map[digest.Digest][]byte{}}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	dir, err := os.MkdirTemp("", "image-serve-stream-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	a.tmpDir = dir
	idx := &dockerTarIndex{source: source, entries: map[string]*dockerTarEntry{}}
	kept := map[*dockerTarEntry]*streamEntry{}
	smallBytes := 0
	tr := tar.NewReader(ctxReader{ctx, r})
	for ord := 0; ; ord++ {
		hdr, err := tr.Next()
		if err == io.EOF && ord > 0 {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", source, context.Cause(ctx))
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return nil, a.tarError(ord, err)
		}
		if err := checkTarEntry(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if err := checkEntryCount(ord); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		name, ok := cleanDockerTarName(hdr.Name)
		if !ok {
			return nil, fmt.Errorf("%s: entry %q: refusing a path outside the archive", source, hdr.Name)
		}
		if _, dup := idx.entries[name]; dup {
			continue // the first wins, as in docker-archive:
		}
		e := &dockerTarEntry{name: name, ord: ord, typeflag: hdr.Typeflag, linkname: hdr.Linkname}
		idx.entries[name] = e
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		se, err := a.take(e, tr, lim)
		if err != nil {
			return nil, err
		}
		if se.data != nil {
			if smallBytes += len(se.data); smallBytes > streamMaxSmall {
				return nil, fmt.Errorf("%s: over %d MiB of entries that are not layers, refusing", source, streamMaxSmall>>20)
			}
		}
		kept[e] = se
	}
	if err := a.finish(idx, kept); err != nil {
		return nil, err
	}
	return a, nil
}

// tarError explains a failure to read the entry at ord: failing on the
// very first header means the stream was never a tar at all.
func (a *streamedArchive) tarError(ord int, err error) error {
	if ord == 0 {
		if err == io.EOF {
			err = errors.New("no entries")
		}
		return fmt.Errorf("%s: not a docker save stream: %v", a.source, err)
	}
	if err == io.ErrUnexpectedEOF {
		err = errors.New("the stream ends in the middle of an entry (truncated)")
	}
	return fmt.Errorf("%s: reading tar entry %d: %w", a.source, ord, err)
}

// take reads the regular file e from r, deciding by its first bytes what
// it is: a layer (a tar, or gzip or zstd) goes to a temporary file, a
// plain tar compressed on the way; anything else is kept in memory if it
// is small enough to be JSON the image needs.
func (a *streamedArchive) take(e *dockerTarEntry, r io.Reader, lim streamLimits) (*streamEntry, error) {
	head := make([]byte, tarHeadSize)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, a.readError(e, err)
	}
	head = head[:n]
	e.head = head[:min(n, len(dockerArchiveZstdMagic))]
	body := &boundedStream{r: io.MultiReader(bytes.NewReader(head), r), left: lim.maxLayer}
	switch {
	case bytes.HasPrefix(head, dockerArchiveGzipMagic), bytes.HasPrefix(head, dockerArchiveZstdMagic):
		return a.storeLayer(e, body)
	case isTarHead(head):
		return a.compressLayer(e, body)
	}
	data, err := io.ReadAll(io.LimitReader(io.MultiReader(bytes.NewReader(head), r), dockerArchiveMaxJSON+1))
	if err != nil {
		return nil, a.readError(e, err)
	}
	if len(data) > dockerArchiveMaxJSON {
		return nil, fmt.Errorf("%s: %s is neither a layer (tar, gzip, zstd) nor within the %d MiB limit for JSON files", a.source, e.name, dockerArchiveMaxJSON>>20)
	}
	e.size, e.digest = int64(len(data)), digest.FromBytes(data)
	return &streamEntry{data: data}, nil
}

func (a *streamedArchive) readError(e *dockerTarEntry, err error) error {
	if err == io.ErrUnexpectedEOF {
		err = errors.New("the stream ends in the middle of it (truncated)")
	}
	return fmt.Errorf("%s: reading %s: %w", a.source, e.name, err)
}

// isTarHead reports whether head is the start of a tar: a header block
// with the ustar magic (POSIX and GNU both), or the zero block that is an
// empty layer's whole content.
func isTarHead(head []byte) bool {
	if len(head) < tarHeadSize {
		return false
	}
	if bytes.Equal(head[257:262], []byte("ustar")) {
		return true
	}
	return !bytes.ContainsFunc(head, func(r rune) bool { return r != 0 })
}

// compressLayer gzips the plain tar layer e into a temporary file.
func (a *streamedArchive) compressLayer(e *dockerTarEntry, r *boundedStream) (*streamEntry, error) {
	f, err := os.CreateTemp(a.tmpDir, "layer-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.source, err)
	}
	defer f.Close()
	desc, diffID, err := gzipLayer(f, r)
	if err != nil {
		return nil, a.readError(e, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", a.source, err)
	}
	e.size, e.digest = r.n, diffID
	return &streamEntry{file: f.Name(), served: desc, diffID: diffID}, nil
}

// storeLayer copies the compressed layer e into a temporary file as it is.
func (a *streamedArchive) storeLayer(e *dockerTarEntry, r *boundedStream) (*streamEntry, error) {
	f, err := os.CreateTemp(a.tmpDir, "layer-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.source, err)
	}
	defer f.Close()
	digester := digest.Canonical.Digester()
	n, err := io.Copy(io.MultiWriter(f, digester.Hash()), r)
	if err != nil {
		return nil, a.readError(e, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", a.source, err)
	}
	e.size, e.digest = n, digester.Digest()
	return &streamEntry{file: f.Name(), served: Descriptor{MediaType: e.layerType(), Digest: e.digest, Size: n}}, nil
}

// finish reads manifest.json, synthesises the image's manifest and
// checks every plain tar layer against the config's diff_ids.
func (a *streamedArchive) finish(idx *dockerTarIndex, kept map[*dockerTarEntry]*streamEntry) error {
	if idx.entries["manifest.json"] == nil {
		return fmt.Errorf("%s: no manifest.json: not a docker save stream", a.source)
	}
	me, err := idx.resolveSmall("manifest.json")
	if err != nil {
		return err
	}
	var mf tarball.Manifest
	if kept[me].data == nil {
		return fmt.Errorf("%s: manifest.json is not JSON", a.source)
	}
	if err := json.Unmarshal(kept[me].data, &mf); err != nil {
		return fmt.Errorf("%s: manifest.json: %v", a.source, err)
	}
	if len(mf) != 1 {
		return fmt.Errorf("%s: manifest.json lists %d images, want the 1 asked for", a.source, len(mf))
	}
	img := mf[0]
	if len(img.RepoTags) > 0 {
		a.tag = img.RepoTags[0]
	}
	var diffIDs []digest.Digest
	cfg, manifest, err := idx.synthesise(img, func(e *dockerTarEntry) (Descriptor, error) {
		se := kept[e]
		if se == nil || se.file == "" {
			return Descriptor{}, fmt.Errorf("%s: %s, a layer in manifest.json, is not a tar, gzip or zstd stream", a.source, e.name)
		}
		if se.diffID != "" {
			a.rewritten++
		}
		diffIDs = append(diffIDs, se.diffID)
		a.layers[se.served.Digest] = se.file
		return se.served, nil
	})
	if err != nil {
		return err
	}
	if kept[cfg].data == nil {
		return fmt.Errorf("%s: the config %s is a layer, not JSON", a.source, cfg.name)
	}
	if err := checkDiffIDs(kept[cfg].data, diffIDs); err != nil {
		return fmt.Errorf("%s: %v", a.source, err)
	}
	a.small[cfg.digest] = kept[cfg].data
	a.manifest, a.digest = manifest, digest.FromBytes(manifest)
	return nil
}

// checkDiffIDs checks that the layers' own digests are the config's
// rootfs.diff_ids, in order: a layer cut short or swapped in the store
// fails here. A "" in have is a layer stored compressed, whose
// uncompressed digest was not taken; it is not checked.
func checkDiffIDs(config []byte, have []digest.Digest) error {
	var c struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return fmt.Errorf("the image config: %v", err)
	}
	want := c.RootFS.DiffIDs
	if len(want) != len(have) {
		return fmt.Errorf("the image config lists %d layers (rootfs.diff_ids), manifest.json %d", len(want), len(have))
	}
	for i, d := range have {
		if d != "" && d != want[i] {
			return fmt.Errorf("layer %d is %s, but the image config's diff_id says %s", i, d, want[i])
		}
	}
	return nil
}

// boundedStream fails once more than left bytes (0: no limit) have been
// read from one entry, and counts what it read. The caller names the
// entry.
type boundedStream struct {
	r    io.Reader
	left int64
	n    int64
}

func (b *boundedStream) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.left > 0 && b.n > b.left {
		return n, fmt.Errorf("over %d bytes (--max-blob-size), refusing", b.left)
	}
	return n, err
}

// repoTag is the image's first RepoTag, "" if it has none.
func (a *streamedArchive) repoTag() string { return a.tag }

// Root returns the synthesised schema2 manifest, a copy.
func (a *streamedArchive) Root(ctx context.Context) ([]byte, string, error) {
	return bytes.Clone(a.manifest), dockerArchiveManifestType, nil
}

// Manifest returns the synthesised manifest, the only one the image has.
func (a *streamedArchive) Manifest(ctx context.Context, d Descriptor) ([]byte, error) {
	if d.Digest != a.digest {
		return nil, fmt.Errorf("%s: no manifest %s", a.source, d.Digest)
	}
	return bytes.Clone(a.manifest), nil
}

// Blob opens the config from memory or a layer from its temporary file.
func (a *streamedArchive) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	if b, ok := a.small[d.Digest]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	if path, ok := a.layers[d.Digest]; ok {
		return os.Open(path)
	}
	return nil, fmt.Errorf("%s: no blob %s in the image", a.source, d.Digest)
}

// Close removes the temporary layer files.
func (a *streamedArchive) Close() error {
	if a.tmpDir == "" {
		return nil
	}
	return os.RemoveAll(a.tmpDir)
}
