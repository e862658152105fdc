package tree

import (
	"maps"
	"slices"

	"github.com/opencontainers/go-digest"
)

// The View's read model of what a collector marks from: the tags of a
// repository, whatever records them, and its manifests with the files a
// report names.

// TagKind says what records a tag.
type TagKind int

const (
	// TagTypeMap is a tag with a type map: what every server serves.
	TagTypeMap TagKind = iota
	// TagPending is a tag whose move a crash interrupted: the tag move
	// finishing it will make it name Variants (none: it will not exist).
	TagPending
	// TagSymlink is a TripleO symlink tag: no server serves it, but an
	// export of the tag rewrites it as a type map, so what it names stays.
	TagSymlink
	// TagPin is no tag but a digest pin (pins.go): no server lists it,
	// and what it names stays as what a tag names does. Its Tag is "".
	TagPin
)

// TagRoot is one tag of a repository and the manifests it names.
type TagRoot struct {
	Tag  string
	Kind TagKind
	// Variants are the manifests the tag names (a TagSymlink names one,
	// with its Digest alone).
	Variants []TagVariant
	// TypeMap reports that a type map of the tag is in the repository
	// now: for a TagPending, one the finished move keeps or removes.
	TypeMap bool
	// Err is why the type map of a TagTypeMap cannot be read; Variants
	// is then empty.
	Err error
	// Path names, for a report, the file that records the tag: its type
	// map, its symlink, or for a TagPending the root of the tree (the
	// journal naming it is the tree's to finish).
	Path string
}

// What names the tag as a problem about it says it: "tag v1",
// "symlink tag v1", "interrupted move of tag v1", "pin sha256:…".
func (t TagRoot) What() string {
	switch t.Kind {
	case TagPending:
		return "interrupted move of tag " + t.Tag
	case TagSymlink:
		return "symlink tag " + t.Tag
	case TagPin:
		if len(t.Variants) == 1 {
			return "pin " + t.Variants[0].Digest.String()
		}
		return "pin"
	}
	return "tag " + t.Tag
}

// TagRoots lists what every tag of repo names, as the tags will be once
// the moves a crash interrupted are finished: first each such pending
// move (sorted by tag), then every other tag with a type map (sorted),
// then TripleO's symlink tags that name a manifest (sorted), then the
// digest pins (TagPin, sorted by digest): a collector keeps what a pin
// names as what a tag names. A tag that is pending is listed once, as
// pending, whatever else records it; a symlink tag is listed even when a
// type map of the same name is, as an export of it will replace both.
// Outside Maintain (Inspect, or a read-only Maintain) moves may be
// pending; inside a writing Maintain they were finished before it began,
// and none is.
func (v *View) TagRoots(repo string) ([]TagRoot, error) {
	r := v.r
	tags, err := r.tags(repo)
	if err != nil {
		return nil, err
	}
	pending, err := r.pendingTags(repo)
	if err != nil {
		return nil, err
	}
	var out []TagRoot
	for _, tag := range slices.Sorted(maps.Keys(pending)) {
		out = append(out, TagRoot{Tag: tag, Kind: TagPending, Variants: pending[tag], TypeMap: slices.Contains(tags, tag), Path: r.dir})
	}
	for _, tag := range tags {
		if _, ok := pending[tag]; ok {
			continue
		}
		vs, err := r.TagVariants(repo, tag)
		out = append(out, TagRoot{Tag: tag, Kind: TagTypeMap, Variants: vs, TypeMap: true, Err: err, Path: r.typeMapPath(repo, tag)})
	}
	legacy, err := r.legacyTags(repo)
	if err != nil {
		return nil, err
	}
	for _, tag := range legacy {
		if d, ok := r.legacyTagTarget(repo, tag); ok {
			out = append(out, TagRoot{Tag: tag, Kind: TagSymlink, Variants: []TagVariant{{Digest: d}}, Path: r.legacyTagPath(repo, tag)})
		}
	}
	pins, err := r.pins(repo)
	if err != nil {
		return nil, err
	}
	for _, d := range pins {
		out = append(out, TagRoot{Kind: TagPin, Variants: []TagVariant{{Digest: d}}, Path: r.pinPath(repo, d)})
	}
	return out, nil
}

// TagManifests reads the manifests tag of repo names: those its type map
// offers or, when it has none, the one its TripleO symlink names (Tag
// states the rule). It fails with an error matching fs.ErrNotExist (and
// not ErrOutsideRoot) when the repository has no such tag.
func (v *View) TagManifests(repo, tag string) ([]TagVariant, error) {
	e, err := v.Tag(repo, tag)
	return e.Variants, err
}

// StoredManifest is one manifest directory of a repository as
// ReadManifests found it.
type StoredManifest struct {
	Digest digest.Digest
	// Raw is its index.json, when Err is nil.
	Raw []byte
	// Err is why its index.json could not be read: an error matching
	// fs.ErrNotExist (and not ErrOutsideRoot) for a directory without
	// one, debris of an interrupted write or removal; ErrOutsideRoot for
	// a symlink leading out of the tree; a *NotRegularError for a FIFO.
	Err error
	// Path names its index.json, for a report.
	Path string
	// Headers names its .htaccess, for a report.
	Headers string
}

// ReadManifests hands do every manifest directory of repo (as
// ManifestDigests lists them, sorted) with the bytes of its index.json,
// each read in turn, refusing more than MaxManifestSize; it stops at the
// first error do returns, and returns it.
func (v *View) ReadManifests(repo string, do func(StoredManifest) error) error {
	ds, err := v.r.manifestDigests(repo)
	if err != nil {
		return err
	}
	for _, d := range ds {
		raw, err := v.r.readManifest(repo, d)
		if err := do(StoredManifest{Digest: d, Raw: raw, Err: err, Path: v.r.manifestPath(repo, d), Headers: v.r.headersPath(repo, d)}); err != nil {
			return err
		}
	}
	return nil
}
