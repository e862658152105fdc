package archive

import (
	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Annotations index.json names each REF's manifest with: the OCI one,
// which skopeo's oci: and oci-archive:FILE:REF and image-serve export
// match, and containerd's, which `ctr images import` takes as the image's
// name (without it, ctr drops a ref.name holding a repository).
const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerName = "io.containerd.image.name"
)

// ociLayoutFile is the layout's marker and version.
var ociLayoutFile = []byte(`{"imageLayoutVersion":"1.0.0"}`)

// ociIndex is a layout's index.json.
type ociIndex struct {
	SchemaVersion int                       `json:"schemaVersion"`
	MediaType     string                    `json:"mediaType"`
	Manifests     []distribution.Descriptor `json:"manifests"`
}

// ociPlan is an OCI layout resolved: an index.json entry per REF, and
// every manifest and blob they reach, each once.
type ociPlan struct {
	index ociIndex
	c     closure
}

func planOCI(rd reader, refs []Ref) (*ociPlan, error) {
	p := &ociPlan{
		index: ociIndex{SchemaVersion: 2, MediaType: distribution.MediaTypeOCIIndex, Manifests: []distribution.Descriptor{}},
		c:     closure{seen: map[digest.Digest]bool{}},
	}
	named := map[string]bool{}
	for _, ref := range refs {
		m, err := rd.top(ref)
		if err != nil {
			return nil, err
		}
		if err := rd.walk(&p.c, m, 0); err != nil {
			return nil, err
		}
		name := ref.String()
		if named[name] {
			continue
		}
		named[name] = true
		d := m.desc
		d.Annotations = map[string]string{annotationRefName: name, annotationContainerName: name}
		p.index.Manifests = append(p.index.Manifests, d)
	}
	return p, nil
}

// write writes the layout: oci-layout and index.json first, so a reader
// of the stream knows what follows, then every manifest, then configs and
// layers, each once under blobs/<algorithm>/<hex>.
func (p *ociPlan) write(s sink) error {
	if err := s.file("oci-layout", ociLayoutFile); err != nil {
		return err
	}
	if err := s.file("index.json", marshal(p.index)); err != nil {
		return err
	}
	if err := s.dir("blobs"); err != nil {
		return err
	}
	algs := map[string]bool{}
	mkdir := func(d digest.Digest) error {
		alg := d.Algorithm().String()
		if algs[alg] {
			return nil
		}
		algs[alg] = true
		return s.dir("blobs/" + alg)
	}
	for _, m := range p.c.manifests {
		if err := mkdir(m.desc.Digest); err != nil {
			return err
		}
		if err := s.file(blobName(m.desc.Digest), m.raw); err != nil {
			return err
		}
	}
	for _, b := range p.c.blobs {
		if err := mkdir(b.desc.Digest); err != nil {
			return err
		}
		if err := s.blob(blobName(b.desc.Digest), b); err != nil {
			return err
		}
	}
	return nil
}
