package bench

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// Media types the generated layout uses.
const (
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Image describes the one image a generated layout holds.
type Image struct {
	Ref       string // its org.opencontainers.image.ref.name; "" means "bench"
	Layers    int    // how many layers
	LayerSize int64  // random bytes in each layer, before gzip framing
	Seed      uint64 // layers of equal seeds are equal
}

// Blob is one blob of a generated layout.
type Blob struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
}

// Layout is a generated OCI image layout.
type Layout struct {
	Dir       string
	Ref       string
	Manifest  Blob   // the image manifest
	Config    Blob   // its config
	Layers    []Blob // its layers
	BlobBytes int64  // the size of config and layers together
}

// Source is the layout's image as an image-serve (and skopeo) source
// reference, "oci:DIR:REF".
func (l *Layout) Source() string { return "oci:" + l.Dir + ":" + l.Ref }

// WriteLayout writes an OCI image layout holding img into dir, which is
// created if missing. Each layer is a valid gzip stream (stored, not
// compressed: deflate level 0) of random bytes, so that no tool on either
// side of a comparison can save work by compressing or deduplicating, and
// every tool that sniffs or decompresses a layer sees what it expects.
// The config is a minimal linux/amd64 image config whose diff_ids are
// right.
func WriteLayout(dir string, img Image) (*Layout, error) {
	if img.Ref == "" {
		img.Ref = "bench"
	}
	if img.Layers < 1 || img.LayerSize < 0 {
		return nil, fmt.Errorf("bench: image of %d layers of %d bytes", img.Layers, img.LayerSize)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	l := &Layout{Dir: dir, Ref: img.Ref}
	var diffIDs []digest.Digest
	for i := range img.Layers {
		b, diffID, err := writeLayer(blobs, img.LayerSize, img.Seed, uint64(i))
		if err != nil {
			return nil, err
		}
		l.Layers = append(l.Layers, b)
		l.BlobBytes += b.Size
		diffIDs = append(diffIDs, diffID)
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return nil, err
	}
	if l.Config, err = writeBlob(blobs, MediaTypeConfig, config); err != nil {
		return nil, err
	}
	l.BlobBytes += l.Config.Size
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeManifest,
		"config":        descriptor(l.Config),
		"layers":        descriptors(l.Layers),
	})
	if err != nil {
		return nil, err
	}
	if l.Manifest, err = writeBlob(blobs, MediaTypeManifest, manifest); err != nil {
		return nil, err
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{
			"mediaType":   l.Manifest.MediaType,
			"digest":      l.Manifest.Digest,
			"size":        l.Manifest.Size,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": img.Ref},
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := writeLayoutIndex(dir, index); err != nil {
		return nil, err
	}
	return l, nil
}

func descriptor(b Blob) map[string]any {
	return map[string]any{"mediaType": b.MediaType, "digest": b.Digest, "size": b.Size}
}

func descriptors(bs []Blob) []map[string]any {
	out := make([]map[string]any, len(bs))
	for i, b := range bs {
		out[i] = descriptor(b)
	}
	return out
}

// writeBlob stores data under its digest.
func writeBlob(blobs, mediaType string, data []byte) (Blob, error) {
	d := digest.FromBytes(data)
	if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), data, 0o644); err != nil {
		return Blob{}, err
	}
	return Blob{Digest: d, MediaType: mediaType, Size: int64(len(data))}, nil
}

// writeLayer stores a gzip stream of size random bytes, seeded by seed and
// index, and returns it with the digest of the uncompressed bytes.
func writeLayer(blobs string, size int64, seed, index uint64) (Blob, digest.Digest, error) {
	f, err := os.CreateTemp(blobs, ".layer-")
	if err != nil {
		return Blob{}, "", err
	}
	defer os.Remove(f.Name()) // after the rename: a no-op
	defer f.Close()
	compressed := newCounter()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(f, compressed), gzip.NoCompression)
	if err != nil {
		return Blob{}, "", err
	}
	uncompressed := sha256.New()
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], index)
	rng := rand.NewChaCha8(key)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		chunk := buf[:min(left, int64(len(buf)))]
		_, _ = rng.Read(chunk) // never fails
		uncompressed.Write(chunk)
		if _, err := zw.Write(chunk); err != nil {
			return Blob{}, "", err
		}
		left -= int64(len(chunk))
	}
	if err := zw.Close(); err != nil {
		return Blob{}, "", err
	}
	if err := f.Close(); err != nil {
		return Blob{}, "", err
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(compressed.h.Sum(nil)))
	if err := os.Rename(f.Name(), filepath.Join(blobs, d.Encoded())); err != nil {
		return Blob{}, "", err
	}
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(uncompressed.Sum(nil)))
	return Blob{Digest: d, MediaType: MediaTypeLayer, Size: compressed.n}, diffID, nil
}

// counter hashes and counts what is written to it.
type counter struct {
	h hash.Hash
	n int64
}

func newCounter() *counter { return &counter{h: sha256.New()} }

func (c *counter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

// writeLayoutIndex writes the layout's index.json and oci-layout files.
func writeLayoutIndex(dir string, index []byte) error {
	if err := os.WriteFile(filepath.Join(dir, "index.json"), index, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
}
