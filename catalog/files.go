package catalog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/imagefs"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// What is inside an image: its layers' entries (files --layer), its final
// file system (files, cat) and what changed between two (diff). Layers are
// read as streams through the View, one at a time; each layer's entry
// list is kept in the tree's layer index (tree/layerindex.go), so the
// next view of the same layers opens none.

// ImageRef names an image of the tree: repo and a tag or a digest, and
// the platform to pick when that is an index ("" to take its one image).
type ImageRef struct {
	Repo     string
	Tag      string
	Digest   digest.Digest
	Platform string
}

func (r ImageRef) String() string {
	s := r.Repo + ":" + r.Tag
	if r.Tag == "" {
		s = r.Repo + "@" + r.Digest.String()
	}
	if r.Platform != "" {
		s += " (" + r.Platform + ")"
	}
	return s
}

// LayerRef is one layer of an image, bottom first.
type LayerRef struct {
	Index     int           `json:"index"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type,omitempty"`
	Size      int64         `json:"size"` // -1: not recorded (schema1)
}

// ImageLayers is an image's manifest and its layers, bottom first.
type ImageLayers struct {
	Repository string        `json:"repository"`
	Manifest   digest.Digest `json:"manifest"`
	Platform   string        `json:"platform,omitempty"`
	Layers     []LayerRef    `json:"layers"`
}

// ErrPlatform is an index whose image the command line must choose.
var ErrPlatform = errors.New("an index: choose its image with --platform")

// ResolveLayers finds the image ref names and its layers. A tag or digest
// not in the tree is an error wrapping ErrUnknown; an index is resolved to
// the child of ref.Platform, or to its one image when ref.Platform is ""
// (ErrPlatform when it has several, naming them).
func ResolveLayers(v *tree.View, ref ImageRef) (*ImageLayers, error) {
	d := ref.Digest
	if ref.Tag != "" {
		tg, ok := tagTarget(v, ref.Repo, ref.Tag)
		if !ok || tg.digest == "" {
			return nil, fmt.Errorf("%s: %w", ref, ErrUnknown)
		}
		d = tg.digest
	}
	for depth := 0; ; depth++ {
		raw, err := v.ReadManifest(ref.Repo, d)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot) {
			return nil, fmt.Errorf("%s: manifest %s: %w", ref, d, ErrUnknown)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		m, err := distribution.ParseManifest(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: manifest %s: %w", ref, d, err)
		}
		if len(m.Manifests) == 0 {
			if ref.Platform != "" && depth == 0 {
				return nil, fmt.Errorf("%s: --platform: %s is an image, not an index", ref, d)
			}
			return imageLayers(ref, d, m), nil
		}
		if depth > 0 {
			return nil, fmt.Errorf("%s: an index within an index", ref)
		}
		var platforms []string
		var pick *distribution.Descriptor
		for i, c := range m.Manifests {
			if c.Platform == nil || c.Platform.OS == "unknown" {
				continue // attestations, not images
			}
			p := c.Platform.String()
			platforms = append(platforms, p)
			if p == ref.Platform || ref.Platform == "" {
				pick = &m.Manifests[i]
			}
		}
		if ref.Platform == "" && len(platforms) != 1 || pick == nil {
			return nil, fmt.Errorf("%s: %w (%s)", ref, ErrPlatform, strings.Join(platforms, ", "))
		}
		d = pick.Digest
	}
}

func imageLayers(ref ImageRef, d digest.Digest, m *distribution.Manifest) *ImageLayers {
	img := &ImageLayers{Repository: ref.Repo, Manifest: d, Platform: ref.Platform, Layers: []LayerRef{}}
	for _, l := range m.Layers {
		img.Layers = append(img.Layers, LayerRef{Index: len(img.Layers), Digest: l.Digest, MediaType: l.MediaType, Size: l.Size})
	}
	// schema1 lists its layers top first.
	for i := len(m.FSLayers) - 1; i >= 0; i-- {
		img.Layers = append(img.Layers, LayerRef{Index: len(img.Layers), Digest: m.FSLayers[i].BlobSum, Size: -1})
	}
	return img
}

// LayerOptions bound the read of a layer.
type LayerOptions = imagefs.Options

// LayerError is a layer that cannot be read or applied: which one, and why
// (an *imagefs.EntryError names the entry).
type LayerError struct {
	Layer LayerRef
	Err   error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("layer %d (%s): %v", e.Layer.Index, e.Layer.Digest, e.Err)
}
func (e *LayerError) Unwrap() error { return e.Err }

// openLayer opens the blob of layer l in repo, decompressed.
func openLayer(v *tree.View, repo string, l LayerRef, o LayerOptions) (io.ReadCloser, error) {
	var f *os.File
	var err error
	for _, legacy := range []bool{false, true} {
		if f, _, err = v.OpenBlobFile(repo, tree.StoredBlob{Digest: l.Digest, Legacy: legacy}); !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	rc, _, err := imagefs.Decompress(f, l.MediaType, st.Size(), o)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &layerReader{rc, f}, nil
}

type layerReader struct {
	io.ReadCloser
	f *os.File
}

func (r *layerReader) Close() error {
	r.ReadCloser.Close()
	return r.f.Close()
}

// LayerEntries returns layer l's own entries: from the layer index when
// the tree holds a sound one, else read from the blob and stored in the
// index (unless the layer is bad: then nothing is stored). cached says
// which.
func LayerEntries(v *tree.View, repo string, l LayerRef, o LayerOptions) (es []imagefs.Entry, cached bool, err error) {
	if b, ok := v.ReadLayerIndex(l.Digest); ok {
		if es, err := imagefs.DecodeList(b); err == nil {
			return es, true, nil
		}
	}
	rc, err := openLayer(v, repo, l, o)
	if err != nil {
		return nil, false, &LayerError{l, err}
	}
	defer rc.Close()
	if es, err = imagefs.List(rc); err != nil {
		return nil, false, &LayerError{l, err}
	}
	if b, err := imagefs.EncodeList(es); err == nil {
		// A cache: a tree this user may not write is read again next time.
		_ = v.WriteLayerIndex(l.Digest, b)
	}
	return es, false, nil
}

// Flatten builds the final file system of img's layers up to (not
// including) layer upto; upto < 0 is all of them.
func Flatten(v *tree.View, img *ImageLayers, upto int, o LayerOptions) (*imagefs.FS, error) {
	f := imagefs.New()
	for _, l := range img.Layers {
		if upto >= 0 && l.Index >= upto {
			break
		}
		es, _, err := LayerEntries(v, img.Repository, l, o)
		if err != nil {
			return nil, err
		}
		if err := f.Apply(es); err != nil {
			return nil, &LayerError{l, err}
		}
	}
	return f, nil
}

// Errors of cat, each its own message and exit status.
var (
	ErrIsDir      = errors.New("is a directory")
	ErrNotRegular = errors.New("not a regular file")
)

// Cat writes to w the bytes of the file at path in img's final file
// system, symbolic links followed inside the image. A path that is not
// there is an error wrapping imagefs.ErrNotFound, or an
// *imagefs.DeletedError when a whiteout removed it; a directory is
// ErrIsDir, a device or FIFO ErrNotRegular.
func Cat(v *tree.View, img *ImageLayers, path string, w io.Writer, o LayerOptions) error {
	f, err := Flatten(v, img, -1, o)
	if err != nil {
		return err
	}
	n, err := f.Lookup(path)
	if err != nil {
		return err
	}
	switch {
	case n.Type == imagefs.Dir:
		return fmt.Errorf("%s: %w", path, ErrIsDir)
	case n.DataLayer < 0:
		return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, n.Type)
	}
	l := img.Layers[n.DataLayer]
	rc, err := openLayer(v, img.Repository, l, o)
	if err != nil {
		return &LayerError{l, err}
	}
	defer rc.Close()
	if err := imagefs.Extract(rc, n.DataSeq, w); err != nil {
		return &LayerError{l, err}
	}
	return nil
}

// File is one path of an image, as files shows it.
type File struct {
	Path  string `json:"path"` // absolute: "/etc/passwd"
	Type  string `json:"type"`
	Size  int64  `json:"size"`
	Mode  string `json:"mode"` // octal, "0755"
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	MTime string `json:"mtime"` // RFC 3339, UTC
	Link  string `json:"link,omitempty"`
	// Digest is a regular file's (or hard link's) content's sha256.
	Digest digest.Digest `json:"digest,omitempty"`
	// Layer and LayerDigest are the layer that last wrote the path; in a
	// layer's own list, the layer listed.
	Layer       int           `json:"layer"`
	LayerDigest digest.Digest `json:"layer_digest"`
}

// FileOf is what files shows of node n of img.
func FileOf(img *ImageLayers, n *imagefs.Node) File {
	return fileOf(img.Layers[n.Layer], n.Entry)
}

// EntryFile is what files --layer shows of entry e of layer l: a
// whiteout as type "deleted", an opaque marker as "opaque" (what the
// layers below hold in that directory hidden).
func EntryFile(l LayerRef, e imagefs.Entry) File {
	f := fileOf(l, e)
	if e.Type == imagefs.Whiteout {
		f.Type = "deleted"
	}
	return f
}

func fileOf(l LayerRef, e imagefs.Entry) File {
	f := File{Path: "/" + e.Path, Type: string(e.Type), Size: e.Size, Mode: fmt.Sprintf("%04o", e.Mode), UID: e.UID, GID: e.GID, Link: e.Link, Digest: e.Digest, Layer: l.Index, LayerDigest: l.Digest}
	if !e.MTime.IsZero() {
		f.MTime = e.MTime.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	if e.Type == imagefs.Hardlink {
		f.Link = "/" + e.Link
	}
	return f
}

// Files lists img's final file system, sorted by path.
func Files(v *tree.View, img *ImageLayers, o LayerOptions) ([]File, error) {
	f, err := Flatten(v, img, -1, o)
	if err != nil {
		return nil, err
	}
	out := []File{}
	for _, n := range f.Files() {
		out = append(out, FileOf(img, n))
	}
	return out, nil
}

// LayerFiles lists layer index i of img's own entries, in its tar's order.
func LayerFiles(v *tree.View, img *ImageLayers, i int, o LayerOptions) ([]File, error) {
	l := img.Layers[i]
	es, _, err := LayerEntries(v, img.Repository, l, o)
	if err != nil {
		return nil, err
	}
	out := []File{}
	for _, e := range es {
		out = append(out, EntryFile(l, e))
	}
	return out, nil
}

// FindLayer is the index of the layer of img that sel names: its index
// (from 0, the bottom layer) or its digest (a unique prefix of its hex
// will do).
func FindLayer(img *ImageLayers, sel string) (int, error) {
	var n int
	if _, err := fmt.Sscanf(sel, "%d", &n); err == nil && fmt.Sprint(n) == sel {
		if n < 0 || n >= len(img.Layers) {
			return 0, fmt.Errorf("--layer %d: the image has layers 0 to %d", n, len(img.Layers)-1)
		}
		return n, nil
	}
	var found []int
	for _, l := range img.Layers {
		if l.Digest.String() == sel || strings.HasPrefix(l.Digest.Encoded(), strings.TrimPrefix(sel, "sha256:")) {
			found = append(found, l.Index)
		}
	}
	found = slices.Compact(found)
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return 0, fmt.Errorf("--layer %s: no layer of the image", sel)
	}
	return 0, fmt.Errorf("--layer %s: names %d layers", sel, len(found))
}

// DiffFS is what changed from file system a to b.
func DiffFS(a, b *imagefs.FS, semantic bool) []imagefs.Change {
	return imagefs.Diff(a.Files(), b.Files(), semantic)
}
