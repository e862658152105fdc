package tree

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Layer indexes. The views that read what is inside an image (files,
// diff) keep each layer's entry list, once read from the layer, in one
// file per layer blob: .image-serve/layers/<digest>. It is a cache: no
// server reads or serves it, a missing or damaged one is rebuilt from the
// blob, and it is only ever written whole —
//
//   - written as every file is (a dot-named temporary file renamed into
//     place, the directory synced): a crash leaves the entry wholly there
//     or not at all, and at most a temporary file, which gc sweeps;
//   - its first line names the layer and the sha256 of the rest, so a
//     file damaged in place (or the list of another layer) is refused,
//     never trusted, and read at most MaxLayerIndexSize;
//   - keyed by the layer's digest alone, tree-wide: one list per layer
//     whichever repositories hold it, and gc drops it with the last
//     repository's blob (Maint.SweepLayerIndexes).
//
// What the list holds is its writer's (imagefs encodes it): the tree
// knows files, not tar.

// MaxLayerIndexSize is the largest layer index read back: a list of about
// a million entries. A layer with more is read from its blob every time.
const MaxLayerIndexSize = 256 << 20

// layerIndexMagic starts every layer index, before the layer's digest and
// the sha256 of the list.
const layerIndexMagic = "image-serve layer index 1 "

func (r *Root) layerIndexRoot() string { return filepath.Join(r.dir, stateDir, layerIndexDir) }

func (r *Root) layerIndexPath(d digest.Digest) string {
	return filepath.Join(r.layerIndexRoot(), d.String())
}

// layerIndexHeader is the first line of the index of layer d holding list.
func layerIndexHeader(d digest.Digest, list []byte) string {
	sum := sha256.Sum256(list)
	return layerIndexMagic + d.String() + " " + hex.EncodeToString(sum[:]) + "\n"
}

// ReadLayerIndex returns the entry list stored for layer d, and false when
// there is none the tree can vouch for: none written, one over
// MaxLayerIndexSize, one whose first line does not name d or whose list
// does not match its sum. The caller rebuilds such a list from the blob.
func (v *View) ReadLayerIndex(d digest.Digest) ([]byte, bool) {
	if distribution.ValidateDigest(d) != nil {
		return nil, false
	}
	b, err := v.r.readSmall(v.r.layerIndexPath(d), MaxLayerIndexSize)
	if err != nil {
		return nil, false
	}
	header, list, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(header)+"\n" != layerIndexHeader(d, list) {
		return nil, false
	}
	return list, true
}

// WriteLayerIndex stores list as the entry list of layer d, replacing any
// other atomically. A list over MaxLayerIndexSize is not stored. It is
// the one write a View makes: a cache under .image-serve, never served,
// made inside Inspect, under the tree lock shared, so that gc, which
// drops entries, does not run meanwhile. A user who may not write the
// tree gets the error, and reads the layer again next time.
func (v *View) WriteLayerIndex(d digest.Digest, list []byte) error {
	if err := distribution.ValidateDigest(d); err != nil {
		return err
	}
	header := layerIndexHeader(d, list)
	if len(header)+len(list) > MaxLayerIndexSize {
		return fmt.Errorf("layer index of %s: %d bytes, over %d", d, len(header)+len(list), MaxLayerIndexSize)
	}
	return v.r.publish(v.r.layerIndexPath(d), append([]byte(header), list...))
}

// SweepLayerIndexes removes the layer indexes whose layer keep does not
// hold any more, and the temporary files crashed writers of indexes left,
// and returns how many files it removed. gc calls it once every
// repository is collected, with the blobs some repository keeps. Only
// call it holding the tree lock exclusively (as a Maint does): a view
// writing an index holds it shared.
func (m *Maint) SweepLayerIndexes(keep func(digest.Digest) bool) (int, error) {
	if err := m.check(); err != nil {
		return 0, err
	}
	dir := m.r.layerIndexRoot()
	entries, err := m.r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		d := digest.Digest(e.Name())
		if e.Type().IsRegular() && distribution.ValidateDigest(d) == nil && keep(d) {
			continue
		}
		if !e.Type().IsRegular() && !isTempEntry(e) && e.Type()&fs.ModeSymlink == 0 {
			continue // a directory someone made there: not ours to remove
		}
		if err := m.r.unlink(filepath.Join(dir, e.Name())); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
