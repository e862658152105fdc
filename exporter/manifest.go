package exporter

import (
	"fmt"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Manifests are stored exactly as received, never converted: conversion
// changes digests and breaks signatures and lists.
var knownManifestTypes = map[string]bool{
	distribution.MediaTypeDockerManifest: true, distribution.MediaTypeDockerList: true,
	distribution.MediaTypeDockerSchema1: true, distribution.MediaTypeDockerSchema1JWS: true,
	distribution.MediaTypeOCIManifest: true, distribution.MediaTypeOCIIndex: true,
}

// Platform is an index entry's platform.
type Platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

func (p *Platform) String() string {
	if p == nil {
		return "unknown"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

type indexEntry struct {
	Descriptor
	Platform *Platform `json:"platform,omitempty"`
}

// manifest is what the exporter needs of a manifest: its identity and what
// it references. The bytes are kept exactly as received.
type manifest struct {
	Raw       []byte
	Digest    digest.Digest
	MediaType string
	Children  []indexEntry // index or list entries
	Blobs     []Descriptor // config and layers to fetch
	Foreign   []Descriptor // layers served from elsewhere: not fetched
	// Subject is the manifest this one refers to (OCI 1.1), "" if none:
	// its referrers index must list this manifest. The subject itself is
	// not fetched; it need not be in the tree at all.
	Subject digest.Digest
}

// parseManifest checks raw and finds what it references. labelled is the
// media type the source gave, if any; the body's own mediaType wins.
func parseManifest(raw []byte, d digest.Digest, labelled string) (*manifest, error) {
	if len(raw) > tree.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %d bytes, over the %d byte limit", d, len(raw), tree.MaxManifestSize)
	}
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %v", d, err)
	}
	mt, err := manifestType(m, labelled)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %v", d, err)
	}
	out := &manifest{Raw: raw, Digest: d, MediaType: mt}
	if err := out.collect(m); err != nil {
		return nil, fmt.Errorf("manifest %s (%s): %v", d, mt, err)
	}
	if m.Subject != nil {
		if err := checkDescriptor(descriptor(*m.Subject)); err != nil {
			return nil, fmt.Errorf("manifest %s (%s): subject: %v", d, mt, err)
		}
		out.Subject = m.Subject.Digest
	}
	return out, nil
}

// manifestType decides the media type from the bytes: the body's mediaType,
// else the schema's shape, else the source's label.
func manifestType(m *distribution.Manifest, labelled string) (string, error) {
	labelled, _, _ = strings.Cut(labelled, ";")
	labelled = strings.TrimSpace(labelled)
	switch {
	case m.SchemaVersion == 1:
		return m.Schema1Type(), nil
	case m.SchemaVersion != 2:
		return "", fmt.Errorf("unknown schema: schemaVersion %d", m.SchemaVersion)
	case m.MediaType != "":
		if !knownManifestTypes[m.MediaType] {
			return "", fmt.Errorf("unknown schema: mediaType %q", m.MediaType)
		}
		return m.MediaType, nil
	case knownManifestTypes[labelled]:
		return labelled, nil
	case m.Manifests != nil:
		return distribution.MediaTypeOCIIndex, nil
	case m.Config != nil:
		return distribution.MediaTypeOCIManifest, nil
	}
	return "", fmt.Errorf("unknown schema: no mediaType, config or manifests")
}

func (out *manifest) collect(m *distribution.Manifest) error {
	switch out.MediaType {
	case distribution.MediaTypeDockerList, distribution.MediaTypeOCIIndex:
		for i, c := range m.Manifests {
			e := indexEntry{Descriptor: descriptor(c)}
			if err := checkDescriptor(e.Descriptor); err != nil {
				return fmt.Errorf("manifests[%d]: %v", i, err)
			}
			if p := c.Platform; p != nil {
				e.Platform = &Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
			}
			out.Children = append(out.Children, e)
		}
	case distribution.MediaTypeDockerSchema1, distribution.MediaTypeDockerSchema1JWS:
		for i, l := range m.FSLayers {
			if err := distribution.ValidateDigest(l.BlobSum); err != nil {
				return fmt.Errorf("fsLayers[%d]: %v", i, err)
			}
			out.addBlob(Descriptor{Digest: l.BlobSum, Size: -1})
		}
	default:
		if m.Config == nil {
			return fmt.Errorf("no config")
		}
		if err := checkDescriptor(descriptor(*m.Config)); err != nil {
			return fmt.Errorf("config: %v", err)
		}
		out.addBlob(descriptor(*m.Config))
		for i, l := range m.Layers {
			if err := checkDescriptor(descriptor(l)); err != nil {
				return fmt.Errorf("layers[%d]: %v", i, err)
			}
			out.addBlob(descriptor(l))
		}
	}
	return nil
}

func (out *manifest) addBlob(d Descriptor) {
	if distribution.IsForeign(d.MediaType) {
		out.Foreign = append(out.Foreign, d)
		return
	}
	for _, b := range out.Blobs {
		if b.Digest == d.Digest {
			return
		}
	}
	out.Blobs = append(out.Blobs, d)
}

// descriptor is the part of a descriptor the exporter fetches by.
func descriptor(d distribution.Descriptor) Descriptor {
	return Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, URLs: d.URLs}
}

func checkDescriptor(d Descriptor) error {
	if err := distribution.ValidateDigest(d.Digest); err != nil {
		return err
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d", d.Digest, d.Size)
	}
	return nil
}
