package archive

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// ErrNotInTree is a REF the tree does not hold.
var ErrNotInTree = errors.New("not in the tree")

// maxConfigSize bounds the image configs read into memory, as manifests
// are bounded: a config is a few KiB; more is a damaged tree, not an image.
const maxConfigSize = tree.MaxManifestSize

// maxIndexDepth bounds how deep an index may nest indexes: a cycle of
// indexes cannot be published (a digest names its content), but a tree
// edited by hand could hold one.
const maxIndexDepth = 4

// Ref names an image of the tree: REPO:TAG (Tag set) or REPO@DIGEST
// (Digest set).
type Ref struct {
	Repo   string
	Tag    string
	Digest digest.Digest
}

func (r Ref) String() string {
	if r.Tag != "" {
		return r.Repo + ":" + r.Tag
	}
	return r.Repo + "@" + r.Digest.String()
}

// ParsePlatform reads OS/ARCH[/VARIANT].
func ParsePlatform(s string) (distribution.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return distribution.Platform{}, fmt.Errorf("--platform %q: want OS/ARCH[/VARIANT]", s)
	}
	p := distribution.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// matches reports whether the child platform q is what p asks for: the
// same OS and architecture, and the same variant when p names one.
func matches(p distribution.Platform, q *distribution.Platform) bool {
	return q != nil && p.OS == q.OS && p.Architecture == q.Architecture && (p.Variant == "" || p.Variant == q.Variant)
}

// manifest is one manifest of the tree as a save reads it.
type manifest struct {
	repo string
	desc distribution.Descriptor // media type, digest and size of raw
	raw  []byte
	m    *distribution.Manifest
}

// image is an image manifest with its config: what docker-archive and dir
// hold of a REF.
type image struct {
	manifest
	config    distribution.Descriptor
	configRaw []byte
	diffIDs   []digest.Digest // the config's rootfs.diff_ids
}

// reader reads a save's manifests and configs through a View.
type reader struct{ v *tree.View }

// top reads the manifest ref names: a tag's preferred variant (an index
// for a multi-arch tag), or the manifest of that digest.
func (rd reader) top(ref Ref) (*manifest, error) {
	d := ref.Digest
	var mediaType string
	if ref.Tag != "" {
		e, err := rd.v.Tag(ref.Repo, ref.Tag)
		switch {
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot):
			return nil, fmt.Errorf("%s: %w", ref, ErrNotInTree)
		case err != nil:
			return nil, fmt.Errorf("%s: %w", ref, err)
		case len(e.Variants) == 0:
			return nil, fmt.Errorf("%s: its type map names no manifest (run image-serve verify)", ref)
		}
		best := tree.Preferred(e.Variants)
		d, mediaType = best.Digest, best.MediaType
	}
	m, err := rd.manifest(ref.Repo, distribution.Descriptor{Digest: d, MediaType: mediaType})
	if ref.Tag == "" && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot)) {
		return nil, fmt.Errorf("%s: %w", ref, ErrNotInTree)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	return m, nil
}

// manifest reads manifest want.Digest of repo and checks its bytes
// against the digest. Its media type is the one its headers record, else
// the one want says, else the one its body states.
func (rd reader) manifest(repo string, want distribution.Descriptor) (*manifest, error) {
	raw, err := rd.v.ReadManifest(repo, want.Digest)
	if err != nil {
		return nil, err
	}
	if err := want.Digest.Validate(); err != nil {
		return nil, err
	}
	if got := want.Digest.Algorithm().FromBytes(raw); got != want.Digest {
		return nil, fmt.Errorf("manifest %s of %s: its bytes hash to %s (run image-serve verify)", want.Digest, repo, got)
	}
	if want.Size != 0 && want.Size != int64(len(raw)) {
		return nil, fmt.Errorf("manifest %s of %s: %d bytes, its descriptor says %d", want.Digest, repo, len(raw), want.Size)
	}
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s of %s: %v", want.Digest, repo, err)
	}
	mt := want.MediaType
	if h, err := rd.v.ManifestMediaType(repo, want.Digest); err == nil && h != "" {
		mt = h
	}
	if mt == "" {
		mt = m.MediaType
	}
	if mt == "" {
		mt = m.Schema1Type()
	}
	return &manifest{repo: repo, desc: distribution.Descriptor{MediaType: mt, Digest: want.Digest, Size: int64(len(raw))}, raw: raw, m: m}, nil
}

// image reads the image ref names for a format that holds one image per
// REF: an index's child for platform (chose is told which), the image
// itself otherwise. It must be an image — a config of an image type and
// layers — not a schema 1 manifest or an artifact.
func (rd reader) image(ref Ref, platform distribution.Platform, format Format, chose func(Ref, distribution.Descriptor)) (*image, error) {
	m, err := rd.top(ref)
	if err != nil {
		return nil, err
	}
	if distribution.IsIndex(m.desc.MediaType) || (m.m.Manifests != nil && m.m.Config == nil) {
		var child *distribution.Descriptor
		var have []string
		for i, c := range m.m.Manifests {
			if c.Platform != nil {
				have = append(have, c.Platform.String())
			}
			if child == nil && matches(platform, c.Platform) {
				child = &m.m.Manifests[i]
			}
		}
		if child == nil {
			return nil, fmt.Errorf("%s: index %s has no %s image (it has %s): choose one with --platform", ref, m.desc.Digest, platform, strings.Join(have, ", "))
		}
		if chose != nil {
			chose(ref, *child)
		}
		if m, err = rd.manifest(ref.Repo, *child); err != nil {
			return nil, fmt.Errorf("%s: %s child %s: %w", ref, platform, child.Digest, err)
		}
	}
	switch {
	case m.m.SchemaVersion == 1:
		return nil, fmt.Errorf("%s: a Docker schema 1 manifest: %s holds only schema 2 and OCI images", ref, format)
	case m.m.Config == nil || len(m.m.Manifests) > 0:
		return nil, fmt.Errorf("%s: manifest %s is no image (no config): %s holds images", ref, m.desc.Digest, format)
	case m.m.Config.MediaType != distribution.MediaTypeDockerConfig && m.m.Config.MediaType != distribution.MediaTypeOCIConfig:
		return nil, fmt.Errorf("%s: manifest %s is an artifact (config %s), not an image: %s holds images", ref, m.desc.Digest, m.m.Config.MediaType, format)
	}
	img := &image{manifest: *m, config: *m.m.Config}
	if img.configRaw, err = rd.blobBytes(m.repo, img.config); err != nil {
		return nil, fmt.Errorf("%s: config: %w", ref, err)
	}
	var cf struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(img.configRaw, &cf); err != nil {
		return nil, fmt.Errorf("%s: config %s: %v", ref, img.config.Digest, err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.m.Layers) {
		return nil, fmt.Errorf("%s: config %s lists %d diff ids for %d layers", ref, img.config.Digest, len(cf.RootFS.DiffIDs), len(m.m.Layers))
	}
	img.diffIDs = cf.RootFS.DiffIDs
	return img, nil
}

// blobBytes reads a small blob (a config) whole, checked against d.
func (rd reader) blobBytes(repo string, d distribution.Descriptor) ([]byte, error) {
	if d.Size > maxConfigSize {
		return nil, fmt.Errorf("blob %s: %d bytes, more than the %d a config may have", d.Digest, d.Size, maxConfigSize)
	}
	if err := d.Digest.Validate(); err != nil {
		return nil, err
	}
	b, err := rd.v.ReadBlob(repo, d.Digest, maxConfigSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: missing from %s (run image-serve verify)", d.Digest, repo)
	}
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != d.Size || d.Digest.Algorithm().FromBytes(b) != d.Digest {
		return nil, fmt.Errorf("blob %s of %s: its bytes do not match its descriptor (run image-serve verify)", d.Digest, repo)
	}
	return b, nil
}

// closure is every manifest and blob a REF reaches, each once, in the
// order a layout lists them: manifests, then configs and layers.
type closure struct {
	manifests []*manifest
	blobs     []blobRef
	seen      map[digest.Digest]bool
}

// blobRef is a blob to copy, and the repository to read it from.
type blobRef struct {
	repo string
	desc distribution.Descriptor
}

// walk adds m and everything it names to c: an index's children (each
// read and checked), an image's config and layers, an artifact's blobs.
// Foreign layers (URLs, a non-distributable type) the tree does not hold
// are left out, as a registry leaves them out.
func (rd reader) walk(c *closure, m *manifest, depth int) error {
	if c.seen[m.desc.Digest] {
		return nil
	}
	c.seen[m.desc.Digest] = true
	c.manifests = append(c.manifests, m)
	if m.m.SchemaVersion == 1 {
		return fmt.Errorf("manifest %s of %s: a Docker schema 1 manifest has no place in an OCI layout", m.desc.Digest, m.repo)
	}
	if depth > maxIndexDepth {
		return fmt.Errorf("manifest %s of %s: indexes nested more than %d deep", m.desc.Digest, m.repo, maxIndexDepth)
	}
	for _, child := range m.m.Manifests {
		cm, err := rd.manifest(m.repo, child)
		if err != nil {
			return fmt.Errorf("manifest %s of %s, child of %s: %w", child.Digest, m.repo, m.desc.Digest, err)
		}
		if err := rd.walk(c, cm, depth+1); err != nil {
			return err
		}
	}
	var blobs []distribution.Descriptor
	if m.m.Config != nil {
		blobs = append(blobs, *m.m.Config)
	}
	blobs = append(blobs, m.m.Layers...)
	blobs = append(blobs, m.m.Blobs...)
	for _, b := range blobs {
		if c.seen[b.Digest] {
			continue
		}
		if err := b.Digest.Validate(); err != nil {
			return fmt.Errorf("manifest %s of %s: blob %q: %v", m.desc.Digest, m.repo, b.Digest, err)
		}
		if len(b.URLs) > 0 && distribution.IsForeign(b.MediaType) && !rd.holds(m.repo, b.Digest) {
			continue
		}
		c.seen[b.Digest] = true
		c.blobs = append(c.blobs, blobRef{m.repo, b})
	}
	return nil
}

// holds reports whether repo stores blob d.
func (rd reader) holds(repo string, d digest.Digest) bool {
	missing, err := rd.v.MissingBlobs(repo, []digest.Digest{d})
	return err == nil && len(missing) == 0
}
