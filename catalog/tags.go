// Package catalog shows what a registry tree holds — the tags with what
// they are (list --long), one image in detail (inspect), and what the
// repositories cost on disk (du) — for people and, as JSON, for scripts;
// the catalog page a server shows will come from here too. It only
// reads, through package tree; it changes nothing.
package catalog

import (
	"errors"
	"io/fs"
	"slices"
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
	// own; empty when the tree does not say.
	Platforms []string `json:"platforms"`
	// Size is the bytes a pull of every platform fetches, as stored:
	// manifests, configs and compressed layers, each blob once.
	Size int64 `json:"size"`
	// Changed is when the tag was last set.
	Changed time.Time `json:"changed"`
	// Legacy marks a tag TripleO's exporter wrote as a symlink, which no
	// server serves until migrate rewrites it.
	Legacy bool `json:"legacy,omitempty"`
}

// TagNames are the tags of repo, sorted: those with a type map and
// TripleO's symlink tags.
func TagNames(root *tree.Root, repo string) ([]string, error) {
	tags, err := root.Tags(repo)
	if err != nil {
		return nil, err
	}
	legacy, err := root.LegacyTags(repo)
	if err != nil {
		return nil, err
	}
	for _, l := range legacy {
		if !slices.Contains(tags, l) {
			tags = append(tags, l)
		}
	}
	slices.Sort(tags)
	return tags, nil
}

// Tags describes every tag of repos, in order (repositories sorted, then
// tags). A tag that cannot be read is returned with what could be, and
// its error joined into the one returned. A type map that is no regular
// file (a FIFO) is such a tag: no server serves it, and TagNames does not
// name it, but it is no deleted tag either.
func Tags(root *tree.Root, repos []string) ([]Tag, error) {
	var out []Tag
	for _, repo := range repos {
		tags, err := TagNames(root, repo)
		if err != nil {
			return out, err
		}
		damaged, err := root.NotRegularTags(repo)
		if err != nil {
			return out, err
		}
		if len(damaged) > 0 {
			return out, damaged[0].Err()
		}
		for _, tag := range tags {
			t, err := describeTag(root, repo, tag)
			if err != nil {
				return out, err
			}
			out = append(out, t)
		}
	}
	return out, nil
}

func describeTag(root *tree.Root, repo, tag string) (Tag, error) {
	t := Tag{Repository: repo, Tag: tag, Platforms: []string{}}
	vs, err := root.TagVariants(repo, tag)
	if d, ok := root.LegacyTagTarget(repo, tag); ok && errors.Is(err, fs.ErrNotExist) && !errors.Is(err, tree.ErrOutsideRoot) {
		mt, merr := root.ManifestMediaType(repo, d)
		if merr != nil {
			return t, merr
		}
		vs, err, t.Legacy = []tree.TagVariant{{Digest: d, MediaType: mt}}, nil, true
	}
	if err != nil {
		return t, err
	}
	if len(vs) == 0 {
		return t, nil
	}
	top := slices.MaxFunc(vs, func(a, b tree.TagVariant) int { return compareQS(a.QS, b.QS) })
	t.Digest, t.MediaType = top.Digest, top.MediaType
	if t.Changed, err = root.TagChanged(repo, tag); err != nil {
		return t, err
	}
	w := walker{root: root, repo: repo, seen: map[digest.Digest]bool{}}
	if err := w.walk(top.Digest, 0); err != nil {
		return t, err
	}
	t.Size, t.Platforms = w.size, w.platforms
	return t, nil
}

// compareQS orders type-map qualities, 0 standing for Apache's default 1
// (the first of equals wins, as Apache and MaxFunc both keep it).
func compareQS(a, b float64) int {
	if a == 0 {
		a = 1
	}
	if b == 0 {
		b = 1
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// walker adds up what a pull of one manifest fetches.
type walker struct {
	root      *tree.Root
	repo      string
	seen      map[digest.Digest]bool
	size      int64
	platforms []string
}

func (w *walker) walk(d digest.Digest, depth int) error {
	if w.seen[d] || depth > 4 {
		return nil
	}
	w.seen[d] = true
	raw, err := w.root.ReadManifest(w.repo, d)
	if err != nil {
		return err
	}
	w.size += int64(len(raw))
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		return err
	}
	for _, c := range m.Manifests {
		if c.Platform != nil && depth == 0 && c.Platform.OS != "unknown" {
			w.platforms = append(w.platforms, c.Platform.String())
		}
		if err := w.walk(c.Digest, depth+1); err != nil {
			return err
		}
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
	return nil
}

// blob adds a blob once, at its declared size or, without one (schema1),
// the size of its file.
func (w *walker) blob(d distribution.Descriptor) {
	if w.seen[d.Digest] || d.Digest == "" {
		return
	}
	w.seen[d.Digest] = true
	if d.Size >= 0 {
		w.size += d.Size
		return
	}
	if ins, err := w.root.BlobInodes(w.repo, d.Digest); err == nil && len(ins) > 0 {
		w.size += ins[0].Size
	}
}

func (w *walker) configPlatform(d digest.Digest) string {
	raw, err := w.root.ReadBlob(w.repo, d, maxConfigSize)
	if err != nil {
		return ""
	}
	c, err := distribution.ParseImageConfig(raw)
	if err != nil || c.OS == "" || c.Architecture == "" {
		return ""
	}
	return distribution.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant}.String()
}
