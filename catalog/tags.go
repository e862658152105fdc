// Package catalog shows what a registry tree holds — the tags with what
// they are (list --long), one image in detail (inspect), what the
// repositories cost on disk (du), and what is inside an image (files,
// diff, cat) — for people and, as JSON, for scripts (the catalog page at /,
// written with _catalog, is the tree's: tree/catalogpage.go). It only reads, through the
// tree.View its caller holds (inside tree.Root.Inspect, the tree lock
// shared, so no collection removes what a view is reading); it changes
// nothing of the tree but the layer index, the cache of layers' entry
// lists that files and diff keep (tree.View.WriteLayerIndex).
package catalog

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// maxConfigSize bounds the image configs a view reads.
const maxConfigSize = tree.MaxManifestSize

// Tag is one tag of the tree and what it names.
type Tag struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"media_type"`
	// Platforms are an index's children's os/arch[/variant], or the image's
	// own; empty when the tree does not say. Of a broken tag, those that
	// could be read.
	Platforms []string `json:"platforms"`
	// Size is the bytes a pull of every platform fetches, as stored:
	// manifests, configs and compressed layers, each blob once. Of a
	// broken tag, what could be counted.
	Size int64 `json:"size"`
	// Changed is when the tag was last set.
	Changed time.Time `json:"changed"`
	// Legacy marks a tag TripleO's exporter wrote as a symlink, which no
	// server serves until migrate rewrites it.
	Legacy bool `json:"legacy,omitempty"`
	// Pinned marks no tag but a digest pin: the manifest Digest kept by
	// its digest alone (Tag is ""; Changed is when it was pinned).
	Pinned bool `json:"pinned,omitempty"`
	// Status is empty for a tag a pull can fetch whole, and otherwise the
	// first problem found walking what it names, in pull order (manifest,
	// children, config, layers): one of the Status constants.
	Status string `json:"status,omitempty"`
}

// What is wrong with a broken tag or image, as Tag.Status, Image.Status
// and Descriptor.Status say it.
const (
	// StatusUnreadableTypeMap: the tag's type map cannot be read or parsed,
	// so which manifest it names is unknown.
	StatusUnreadableTypeMap = "unreadable type map"
	// StatusMissingManifest: a manifest it names — its own, or a child of
	// an index — is not in the repository.
	StatusMissingManifest = "missing manifest"
	// StatusUnreadableManifest: a manifest it names is there but cannot be
	// read or parsed.
	StatusUnreadableManifest = "unreadable manifest"
	// StatusMissingBlob: a config or layer a manifest names is not in the
	// repository (non-distributable layers are never expected there).
	StatusMissingBlob = "missing blob"
	// StatusUnreadableBlob: a config or layer is there but cannot be
	// read.
	StatusUnreadableBlob = "unreadable blob"
)

// manifestStatus is the Status of a manifest that could not be read
// because of err.
func manifestStatus(err error) string {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot) {
		return StatusMissingManifest
	}
	return StatusUnreadableManifest
}

// Tags describes every tag of repos, in order (repositories sorted, then
// tags, then the repository's digest pins, sorted, each as a Tag with
// Pinned set). A broken tag is described with what could be read and its
// Status; a tag removed while it is read is left out. The error joins
// those of the repositories whose tags cannot be listed at all, and one
// per type map that is no regular file (a FIFO): no server serves such a
// tag and tree.View.TagNames does not name it, but it is no deleted tag
// either. The
// tags of every other repository are returned with it.
func Tags(view *tree.View, repos []string) ([]Tag, error) {
	out := []Tag{}
	var errs []error
	for _, repo := range repos {
		tags, err := view.TagNames(repo)
		if err != nil {
			errs = append(errs, fmt.Errorf("repository %s: %w", repo, err))
			continue
		}
		damaged, err := view.NotRegularTags(repo)
		if err != nil {
			errs = append(errs, fmt.Errorf("repository %s: %w", repo, err))
		}
		for _, f := range damaged {
			errs = append(errs, f.Err())
		}
		for _, tag := range tags {
			t, ok := describeTag(view, repo, tag)
			if ok {
				out = append(out, t)
			}
		}
		pins, err := view.Pins(repo)
		if err != nil {
			errs = append(errs, fmt.Errorf("repository %s: pins: %w", repo, err))
		}
		for _, d := range pins {
			out = append(out, describePin(view, repo, d))
		}
	}
	return out, errors.Join(errs...)
}

// describePin describes the pin of manifest d of repo as a Tag: what a
// pull of that digest fetches, as describeTag counts it.
func describePin(view *tree.View, repo string, d digest.Digest) Tag {
	t := Tag{Repository: repo, Digest: d, Pinned: true, Platforms: []string{}}
	if changed, err := view.PinChanged(repo, d); err == nil {
		t.Changed = changed
	}
	if mt, err := view.ManifestMediaType(repo, d); err == nil {
		t.MediaType = mt
	}
	w := newWalker(view, repo)
	w.walk(d, 0)
	t.Size, t.Platforms, t.Status = w.size, w.platforms, w.problem
	return t
}

// target is the manifest a tag names: the variant of highest quality of
// its type map, or what a TripleO symlink tag names.
type target struct {
	digest    digest.Digest
	mediaType string
	legacy    bool
	// status is StatusUnreadableTypeMap (and digest "") for a type map
	// that cannot be read or names nothing, StatusUnreadableManifest for
	// a symlink tag whose manifest has no readable headers.
	status string
}

// tagTarget reads what repo:tag names. It reports false when the tag is
// not in the tree (nor was ever, or was removed meanwhile).
func tagTarget(view *tree.View, repo, tag string) (target, bool) {
	e, err := view.Tag(repo, tag)
	switch {
	case e.Legacy:
		d := e.Variants[0].Digest
		t := target{digest: d, legacy: true}
		mt, err := view.ManifestMediaType(repo, d)
		if err != nil {
			t.status = StatusUnreadableManifest // its headers
		}
		t.mediaType = mt
		return t, true
	case errors.Is(err, fs.ErrNotExist):
		return target{}, false
	case err != nil, len(e.Variants) == 0:
		return target{status: StatusUnreadableTypeMap}, true
	}
	top := tree.Preferred(e.Variants)
	return target{digest: top.Digest, mediaType: top.MediaType}, true
}

// describeTag describes repo:tag, and reports false when it is not in the
// tree.
func describeTag(view *tree.View, repo, tag string) (Tag, bool) {
	t := Tag{Repository: repo, Tag: tag, Platforms: []string{}}
	tg, ok := tagTarget(view, repo, tag)
	if !ok {
		return t, false
	}
	t.Digest, t.MediaType, t.Legacy, t.Status = tg.digest, tg.mediaType, tg.legacy, tg.status
	if changed, err := view.TagChanged(repo, tag); err == nil {
		t.Changed = changed
	}
	if tg.digest == "" {
		return t, true
	}
	w := newWalker(view, repo)
	w.walk(tg.digest, 0)
	t.Size, t.Platforms = w.size, w.platforms
	if t.Status == "" {
		t.Status = w.problem
	}
	return t, true
}

// walker adds up what a pull of one manifest fetches, and notes the
// first thing it finds missing or unreadable.
type walker struct {
	view      *tree.View
	repo      string
	seen      map[digest.Digest]bool
	size      int64
	platforms []string
	problem   string // the first problem found, a Status; "" for none
}

func newWalker(view *tree.View, repo string) *walker {
	return &walker{view: view, repo: repo, seen: map[digest.Digest]bool{}, platforms: []string{}}
}

// note keeps the first problem found.
func (w *walker) note(status string) {
	if w.problem == "" {
		w.problem = status
	}
}

// walk adds manifest d and everything it names, and goes on past what is
// missing: the rest is still counted.
func (w *walker) walk(d digest.Digest, depth int) {
	if w.seen[d] || depth > 4 {
		return
	}
	w.seen[d] = true
	raw, err := w.view.ReadManifest(w.repo, d)
	if err != nil {
		w.note(manifestStatus(err))
		return
	}
	w.size += int64(len(raw))
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		w.note(StatusUnreadableManifest)
		return
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && depth == 0 && c.Platform.OS != "unknown" {
			w.platforms = append(w.platforms, c.Platform.String())
		}
		w.walk(c.Digest, depth+1)
	}
	if m.Config != nil {
		w.blob(*m.Config)
		if depth == 0 && len(m.Manifests) == 0 {
			if p := w.configPlatform(m.Config.Digest); p != "" {
				w.platforms = append(w.platforms, p)
			}
		}
	}
	for _, l := range append(m.Layers, m.Blobs...) {
		w.blob(l)
	}
	for _, l := range m.FSLayers {
		w.blob(distribution.Descriptor{Digest: l.BlobSum, Size: -1})
	}
	if depth == 0 && m.SchemaVersion == 1 && m.Architecture != "" {
		w.platforms = append(w.platforms, "linux/"+m.Architecture)
	}
}

// blob adds a blob once, at its declared size or, without one (schema1),
// the size of its file, and notes it when it is not in the repository.
func (w *walker) blob(d distribution.Descriptor) {
	if w.seen[d.Digest] || d.Digest == "" {
		return
	}
	w.seen[d.Digest] = true
	ins, status := blobPresence(w.view, w.repo, d)
	if status != "" {
		w.note(status)
	}
	switch {
	case d.Size >= 0:
		w.size += d.Size
	case len(ins) > 0:
		w.size += ins[0].Size
	}
}

// blobPresence returns the files of blob d in repo, and a Status when it
// should be there and is not, or cannot be looked at. A non-distributable
// layer is never in the tree and never missing.
func blobPresence(view *tree.View, repo string, d distribution.Descriptor) ([]tree.Inode, string) {
	ins, err := view.BlobInodes(repo, d.Digest)
	switch {
	case distribution.IsForeign(d.MediaType):
		return ins, ""
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot):
		return nil, StatusMissingBlob
	case err != nil:
		return nil, StatusUnreadableBlob
	case len(ins) == 0:
		return nil, StatusMissingBlob
	}
	return ins, ""
}

func (w *walker) configPlatform(d digest.Digest) string {
	raw, err := w.view.ReadBlob(w.repo, d, maxConfigSize)
	if err != nil {
		return ""
	}
	c, err := distribution.ParseImageConfig(raw)
	if err != nil || c.OS == "" || c.Architecture == "" {
		return ""
	}
	return distribution.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant}.String()
}
