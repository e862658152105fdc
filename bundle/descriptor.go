package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

const (
	// Format names a bundle's descriptor; PartFormat a part's header.
	Format     = "image-serve-bundle"
	PartFormat = "image-serve-bundle-part"
	// Version is the bundle format version this package writes and reads.
	Version = 1

	// DescriptorName and PartName are the first member of a whole bundle
	// and of a part.
	DescriptorName = "bundle.json"
	PartName       = "part.json"

	// MaxDescriptorSize bounds the descriptor and a part header a reader
	// accepts: 100,000 members take about 20 MB.
	MaxDescriptorSize = 64 << 20
	// MaxMembers bounds the members of one bundle.
	MaxMembers = 1_000_000
	// MaxManifestSize is the largest manifest member, as the tree stores
	// them; MaxConfigSize the largest config, which a loader holds in
	// memory until its image is published.
	MaxManifestSize = 4 << 20
	MaxConfigSize   = 16 << 20
	// MaxHeadSize bounds the manifests and configs of one bundle taken
	// together: a loader holds them all in memory while it publishes.
	MaxHeadSize = 256 << 20
)

// Member kinds, in the order a bundle holds them.
const (
	KindManifest = "manifest" // a manifest or an index
	KindConfig   = "config"   // an image config blob
	KindBlob     = "blob"     // a layer, or any other blob
)

// Descriptor is a bundle's bundle.json.
type Descriptor struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Tags are what the bundle publishes, each naming its top manifest,
	// which is a member.
	Tags []Tag `json:"tags"`
	// Members are the bundle's content after the descriptor, in stream
	// order: manifests (children before the indexes naming them), then
	// configs, then the other blobs.
	Members []Member `json:"members"`
	// Needed are the blobs the images name that the bundle leaves out:
	// the far side must hold them before the bundle loads.
	Needed []Needed `json:"needed"`
	Bytes  Bytes    `json:"bytes"`
}

// Tag is one tag a bundle publishes.
type Tag struct {
	Repo      string        `json:"repo"`
	Tag       string        `json:"tag"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
}

// Member is one member of a bundle: its kind, digest (the sha256 of its
// bytes, and its name in the tar), size and, for a manifest, its media
// type.
type Member struct {
	Kind      string        `json:"kind"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType,omitempty"`
}

// Name is the member's name in the tar.
func (m Member) Name() string {
	if m.Kind == KindManifest {
		return "manifests/sha256/" + m.Digest.Encoded()
	}
	return "blobs/sha256/" + m.Digest.Encoded()
}

// Needed is a blob the far side must already hold.
type Needed struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// Bytes are the bundle's byte counts.
type Bytes struct {
	// Members is the sum of the members' sizes: what the bundle carries.
	Members int64 `json:"members"`
	// Needed is the sum of the needed blobs' sizes: what it leaves out.
	Needed int64 `json:"needed"`
	// Images is the full size of the images — every manifest and blob
	// they name, each once: what a full archive would carry.
	Images int64 `json:"images"`
}

// Encode is the descriptor as stored: compact JSON.
func (d *Descriptor) Encode() ([]byte, error) {
	return json.Marshal(d)
}

// ID is the bundle's id: the sha256 of its encoded descriptor.
func (d *Descriptor) ID() (digest.Digest, error) {
	b, err := d.Encode()
	if err != nil {
		return "", err
	}
	return digest.FromBytes(b), nil
}

// ErrVersion is the error of a descriptor or part of an unknown format
// version.
var ErrVersion = errors.New("unknown bundle format version")

// ParseDescriptor parses and validates a descriptor (Validate).
func ParseDescriptor(raw []byte) (*Descriptor, error) {
	if len(raw) > MaxDescriptorSize {
		return nil, fmt.Errorf("descriptor: %d bytes, over the limit of %d", len(raw), MaxDescriptorSize)
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("descriptor: %v", err)
	}
	if head.Format != Format {
		return nil, fmt.Errorf("descriptor: format %q, not %q", head.Format, Format)
	}
	if head.Version != Version {
		return nil, fmt.Errorf("%w %d (this image-serve reads version %d)", ErrVersion, head.Version, Version)
	}
	var d Descriptor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("descriptor: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("descriptor: data after its JSON object")
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Validate checks what a loader relies on: every name and digest valid,
// members each once with sizes within bounds (manifests and configs, which
// a loader holds in memory, within MaxHeadSize together) and in kind
// order, every tag once and naming a manifest member, no needed blob that
// is also a member (nor listed twice), and byte counts that add up.
func (d *Descriptor) Validate() error {
	if d.Format != Format || d.Version != Version {
		return fmt.Errorf("%w: %q version %d", ErrVersion, d.Format, d.Version)
	}
	if len(d.Members) > MaxMembers || len(d.Needed) > MaxMembers {
		return fmt.Errorf("descriptor: over %d members or needed blobs, the limit of a bundle", MaxMembers)
	}
	rank := map[string]int{KindManifest: 0, KindConfig: 1, KindBlob: 2}
	members := map[digest.Digest]Member{}
	var sum, head int64
	last, lastKind := 0, KindManifest
	for _, m := range d.Members {
		r, ok := rank[m.Kind]
		if !ok {
			return fmt.Errorf("descriptor: member %s of unknown kind %q", m.Digest, m.Kind)
		}
		if r < last {
			return fmt.Errorf("descriptor: %s member %s after a %s: members go manifests, configs, blobs", m.Kind, m.Digest, lastKind)
		}
		last, lastKind = r, m.Kind
		if err := checkDigest(m.Digest); err != nil {
			return fmt.Errorf("descriptor: member %w", err)
		}
		if _, dup := members[m.Digest]; dup {
			return fmt.Errorf("descriptor: member %s listed twice", m.Digest)
		}
		limit := int64(1) << 62
		switch m.Kind {
		case KindManifest:
			limit = MaxManifestSize
			if m.MediaType == "" {
				return fmt.Errorf("descriptor: manifest %s has no media type", m.Digest)
			}
		case KindConfig:
			limit = MaxConfigSize
		}
		if m.Size < 0 || m.Size > limit {
			return fmt.Errorf("descriptor: %s %s of %d bytes (the limit is %d)", m.Kind, m.Digest, m.Size, limit)
		}
		members[m.Digest] = m
		if m.Kind != KindBlob {
			if head += m.Size; head > MaxHeadSize {
				return fmt.Errorf("descriptor: manifests and configs of over %d bytes, the limit of a bundle", MaxHeadSize)
			}
		}
		if sum += m.Size; sum < 0 {
			return errors.New("descriptor: member sizes overflow")
		}
	}
	if sum != d.Bytes.Members {
		return fmt.Errorf("descriptor: members add up to %d bytes, it says %d", sum, d.Bytes.Members)
	}
	var needed int64
	seen := map[digest.Digest]bool{}
	for _, n := range d.Needed {
		if err := checkDigest(n.Digest); err != nil {
			return fmt.Errorf("descriptor: needed %w", err)
		}
		if _, ok := members[n.Digest]; ok || seen[n.Digest] {
			return fmt.Errorf("descriptor: needed blob %s is also a member, or listed twice", n.Digest)
		}
		seen[n.Digest] = true
		if n.Size < 0 || n.Size > 1<<62 {
			return fmt.Errorf("descriptor: needed blob %s of %d bytes", n.Digest, n.Size)
		}
		needed += n.Size
	}
	if needed != d.Bytes.Needed {
		return fmt.Errorf("descriptor: needed blobs add up to %d bytes, it says %d", needed, d.Bytes.Needed)
	}
	if len(d.Tags) == 0 {
		return errors.New("descriptor: no tag to publish")
	}
	tags := map[string]bool{}
	for _, t := range d.Tags {
		if tags[t.Repo+":"+t.Tag] {
			return fmt.Errorf("descriptor: tag %s:%s listed twice", t.Repo, t.Tag)
		}
		tags[t.Repo+":"+t.Tag] = true
		if err := distribution.ValidateRepo(t.Repo); err != nil {
			return fmt.Errorf("descriptor: tag %s:%s: %w", t.Repo, t.Tag, err)
		}
		if err := distribution.ValidateTag(t.Tag); err != nil {
			return fmt.Errorf("descriptor: tag %s:%s: %w", t.Repo, t.Tag, err)
		}
		if m, ok := members[t.Digest]; !ok || m.Kind != KindManifest {
			return fmt.Errorf("descriptor: tag %s:%s names %s, which is no manifest of the bundle", t.Repo, t.Tag, t.Digest)
		}
	}
	return nil
}

// checkDigest refuses anything but a valid sha256 digest: members are
// named and checked by their sha256.
func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%q: not a sha256 digest", d)
	}
	return nil
}

// PartHeader is a part's part.json.
type PartHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Bundle is the id of the bundle the part belongs to.
	Bundle digest.Digest `json:"bundle"`
	// Part is the part's number, from 1; Count how many the bundle has.
	Part  int `json:"part"`
	Count int `json:"count"`
	// Members are the part's members after its header (part 1 begins
	// with the descriptor, which is not listed: its sha256 is Bundle).
	Members []PartMember `json:"members"`
}

// PartMember is a member of a part: the checksum of what the part holds.
type PartMember struct {
	Name   string        `json:"name"`
	Size   int64         `json:"size"`
	SHA256 digest.Digest `json:"sha256"`
}

func parsePartHeader(raw []byte) (*PartHeader, error) {
	var h PartHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("part header: %v", err)
	}
	if h.Format != PartFormat {
		return nil, fmt.Errorf("part header: format %q, not %q", h.Format, PartFormat)
	}
	if h.Version != Version {
		return nil, fmt.Errorf("%w %d (this image-serve reads version %d)", ErrVersion, h.Version, Version)
	}
	if err := checkDigest(h.Bundle); err != nil {
		return nil, fmt.Errorf("part header: bundle %w", err)
	}
	if h.Count < 1 || h.Count > MaxMembers || h.Part < 1 || h.Part > h.Count {
		return nil, fmt.Errorf("part header: part %d of %d", h.Part, h.Count)
	}
	if len(h.Members) > MaxMembers {
		return nil, fmt.Errorf("part header: over %d members", MaxMembers)
	}
	return &h, nil
}
