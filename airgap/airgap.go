// Package airgap reads a tree for air-gapped transfers: the inventory of
// what it holds (Inventory), and the bundle of the images another site
// lacks (Plan, then Write). It reads the tree only through a tree.View
// (the caller holds it through tree.Root.Inspect) and writes the formats
// of package bundle; loading a bundle into a tree is the exporter's
// (exporter.LoadBundle), as every write of a tree is.
package airgap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Inventory lists the blobs and the complete manifests of every
// repository of the tree.
func Inventory(v *tree.View) (*bundle.Inventory, error) {
	repos, err := v.StoredRepositories()
	if err != nil {
		return nil, err
	}
	var blobs, manifests []digest.Digest
	for _, repo := range repos {
		bs, err := v.Blobs(repo)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("repository %s: %w", repo, err)
		}
		for _, b := range bs {
			blobs = append(blobs, b.Digest)
		}
		ms, err := v.ManifestDigests(repo)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("repository %s: %w", repo, err)
		}
		for _, d := range ms {
			if v.ManifestComplete(repo, d) {
				manifests = append(manifests, d)
			}
		}
	}
	return bundle.NewInventory(blobs, manifests), nil
}

// Ref is an image of the tree: REPO:TAG.
type Ref struct{ Repo, Tag string }

func (r Ref) String() string { return r.Repo + ":" + r.Tag }

// ParseRef parses REPO:TAG.
func ParseRef(s string) (Ref, error) {
	repo, tag, ok := distribution.SplitTag(s)
	if !ok || tag == "" {
		return Ref{}, fmt.Errorf("%q: want REPO:TAG", s)
	}
	if err := tree.ValidateRepo(repo); err != nil {
		return Ref{}, fmt.Errorf("%q: %w", s, err)
	}
	if err := distribution.ValidateTag(tag); err != nil {
		return Ref{}, fmt.Errorf("%q: %w", s, err)
	}
	return Ref{repo, tag}, nil
}

// Request is what a bundle is to hold: the images, and what the far side
// holds already — its inventories, and base images of this tree it has.
type Request struct {
	Images      []Ref
	Bases       []Ref
	Inventories []*bundle.Inventory
}

// Plan is a bundle laid out: its descriptor, and where in the tree each
// member is read from.
type Plan struct {
	Descriptor *bundle.Descriptor
	from       map[digest.Digest]string // member → a repository holding it
}

// maxDepth bounds nested indexes, as the exporter does.
const maxDepth = 4

// image is one walked image: its manifests (children before indexes),
// and its blobs, configs marked, in the order the manifests name them.
type image struct {
	repo      string
	manifests []bundle.Member
	blobs     []blob
}

type blob struct {
	d      digest.Digest
	size   int64
	config bool
}

// walk reads ref's manifest graph from the tree.
func walk(v *tree.View, ref Ref) (*image, error) {
	e, err := v.Tag(ref.Repo, ref.Tag)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no such tag in the tree", ref)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if len(e.Variants) == 0 {
		return nil, fmt.Errorf("%s: its type map offers no manifest", ref)
	}
	im := &image{repo: ref.Repo}
	seen := map[digest.Digest]bool{}
	seenBlob := map[digest.Digest]bool{}
	var add func(d digest.Digest, depth int) error
	add = func(d digest.Digest, depth int) error {
		if seen[d] {
			return nil
		}
		seen[d] = true
		if depth > maxDepth {
			return fmt.Errorf("%s: manifest %s: indexes nested deeper than %d", ref, d, maxDepth)
		}
		raw, err := v.ReadManifest(ref.Repo, d)
		if err != nil {
			return fmt.Errorf("%s: manifest %s: %w", ref, d, err)
		}
		if got := d.Algorithm().FromBytes(raw); got != d {
			return fmt.Errorf("%s: manifest %s: content does not match its digest (got %s)", ref, d, got)
		}
		mt, err := v.ManifestMediaType(ref.Repo, d)
		if err != nil {
			return fmt.Errorf("%s: manifest %s: %w", ref, d, err)
		}
		refs, err := distribution.ParseReferences(raw)
		if err != nil {
			return fmt.Errorf("%s: manifest %s: %w", ref, d, err)
		}
		for _, c := range refs.Children {
			if err := add(c, depth+1); err != nil {
				return err
			}
		}
		m, err := distribution.ParseManifest(raw)
		if err != nil {
			return fmt.Errorf("%s: manifest %s: %w", ref, d, err)
		}
		var config digest.Digest
		if m.Config != nil {
			config = m.Config.Digest
		}
		for _, b := range refs.Blobs {
			if seenBlob[b] {
				continue
			}
			seenBlob[b] = true
			size, err := blobSize(v, ref.Repo, b)
			if err != nil {
				return fmt.Errorf("%s: blob %s: %w", ref, b, err)
			}
			im.blobs = append(im.blobs, blob{d: b, size: size, config: b == config})
		}
		im.manifests = append(im.manifests, bundle.Member{Kind: bundle.KindManifest, Digest: d, Size: int64(len(raw)), MediaType: mt})
		return nil
	}
	if err := add(e.Variants[0].Digest, 0); err != nil {
		return nil, err
	}
	return im, nil
}

// blobSize is the size of blob d as repo stores it.
func blobSize(v *tree.View, repo string, d digest.Digest) (int64, error) {
	f, in, err := openBlob(v, repo, d)
	if err != nil {
		return 0, err
	}
	f.Close()
	return in.Size, nil
}

func openBlob(v *tree.View, repo string, d digest.Digest) (*os.File, tree.Inode, error) {
	f, in, err := v.OpenBlobFile(repo, tree.StoredBlob{Digest: d})
	if errors.Is(err, fs.ErrNotExist) {
		f, in, err = v.OpenBlobFile(repo, tree.StoredBlob{Digest: d, Legacy: true})
	}
	if errors.Is(err, fs.ErrNotExist) {
		err = errors.New("not in the tree")
	}
	return f, in, err
}

// MakePlan lays out the bundle req asks for: every manifest, index and
// config of req.Images, and of their other blobs those that neither an
// inventory nor a base image holds; those are the needed blobs. Members go
// manifests (each image's children before its indexes), configs, then
// the other blobs image by image, in the order their manifests name them:
// the order a loader publishes in, so that it can read them as a stream.
func MakePlan(v *tree.View, req Request) (*Plan, error) {
	if len(req.Images) == 0 {
		return nil, errors.New("no image to bundle")
	}
	held := map[digest.Digest]bool{}
	for _, ref := range req.Bases {
		im, err := walk(v, ref)
		if err != nil {
			return nil, fmt.Errorf("--base %w", err)
		}
		for _, b := range im.blobs {
			held[b.d] = true
		}
	}
	has := func(d digest.Digest) bool {
		if held[d] {
			return true
		}
		return slices.ContainsFunc(req.Inventories, func(inv *bundle.Inventory) bool { return inv.HasBlob(d) })
	}
	d := &bundle.Descriptor{Format: bundle.Format, Version: bundle.Version}
	p := &Plan{Descriptor: d, from: map[digest.Digest]string{}}
	var manifests, configs, blobs []bundle.Member
	counted := map[digest.Digest]bool{}
	for _, ref := range req.Images {
		im, err := walk(v, ref)
		if err != nil {
			return nil, err
		}
		top := im.manifests[len(im.manifests)-1]
		d.Tags = append(d.Tags, bundle.Tag{Repo: ref.Repo, Tag: ref.Tag, Digest: top.Digest, MediaType: top.MediaType})
		for _, m := range im.manifests {
			if !counted[m.Digest] {
				counted[m.Digest] = true
				d.Bytes.Images += m.Size
				manifests = append(manifests, m)
				p.from[m.Digest] = im.repo
			}
		}
		for _, b := range im.blobs {
			if counted[b.d] {
				continue
			}
			counted[b.d] = true
			d.Bytes.Images += b.size
			switch {
			case b.config:
				configs = append(configs, bundle.Member{Kind: bundle.KindConfig, Digest: b.d, Size: b.size})
			case has(b.d):
				d.Needed = append(d.Needed, bundle.Needed{Digest: b.d, Size: b.size})
				d.Bytes.Needed += b.size
				continue
			default:
				blobs = append(blobs, bundle.Member{Kind: bundle.KindBlob, Digest: b.d, Size: b.size})
			}
			p.from[b.d] = im.repo
		}
	}
	d.Members = slices.Concat(manifests, configs, blobs)
	for _, m := range d.Members {
		d.Bytes.Members += m.Size
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Open opens the bytes of member m in the tree, for bundle.Write.
func (p *Plan) Open(v *tree.View) bundle.OpenFunc {
	return func(m bundle.Member) (io.ReadCloser, error) {
		repo, ok := p.from[m.Digest]
		if !ok {
			return nil, errors.New("not planned")
		}
		if m.Kind == bundle.KindManifest {
			raw, err := v.ReadManifest(repo, m.Digest)
			if err != nil {
				return nil, err
			}
			return io.NopCloser(bytes.NewReader(raw)), nil
		}
		f, _, err := openBlob(v, repo, m.Digest)
		return f, err
	}
}
