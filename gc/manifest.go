package gc

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// refs is what a stored manifest references, whatever its schema: marking
// needs nothing else from it. The exporter has its own, stricter parser;
// this one only reads back what is already in the tree and must tolerate
// every shape that got there (TripleO's delete crashed on a list, which
// has no config).
type refs struct {
	MediaType string          // the body's mediaType field, "" if absent
	Children  []digest.Digest // index or list entries: manifests of the same repository
	Blobs     []digest.Digest // config, layers, schema1 fsLayers
	Subject   digest.Digest   // the manifest this one refers to, "" if none
}

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
}

// rawRefs has the fields of every manifest schema that name content:
// image manifests (config, layers), indexes and lists (manifests), the
// withdrawn OCI artifact manifest (blobs), Docker schema1 (fsLayers), and
// OCI 1.1 referrers (subject).
type rawRefs struct {
	MediaType string       `json:"mediaType"`
	Config    *descriptor  `json:"config"`
	Layers    []descriptor `json:"layers"`
	Blobs     []descriptor `json:"blobs"`
	Manifests []descriptor `json:"manifests"`
	FSLayers  []struct {
		BlobSum digest.Digest `json:"blobSum"`
	} `json:"fsLayers"`
	Subject *descriptor `json:"subject"`
}

// parseRefs reads what raw references. A descriptor without a digest is
// skipped (nothing to keep); one with an invalid digest is an error, since
// the blob it meant cannot be told apart from garbage.
func parseRefs(raw []byte) (*refs, error) {
	var m rawRefs
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	out := &refs{MediaType: m.MediaType}
	add := func(to *[]digest.Digest, field string, d descriptor) error {
		if d.Digest == "" {
			return nil
		}
		if err := distribution.ValidateDigest(d.Digest); err != nil {
			return fmt.Errorf("%s: %v", field, err)
		}
		if !foreign(d.MediaType) {
			*to = append(*to, d.Digest)
		}
		return nil
	}
	if m.Config != nil {
		if err := add(&out.Blobs, "config", *m.Config); err != nil {
			return nil, err
		}
	}
	for _, set := range []struct {
		field string
		ds    []descriptor
		to    *[]digest.Digest
	}{{"layers", m.Layers, &out.Blobs}, {"blobs", m.Blobs, &out.Blobs}, {"manifests", m.Manifests, &out.Children}} {
		for i, d := range set.ds {
			if err := add(set.to, fmt.Sprintf("%s[%d]", set.field, i), d); err != nil {
				return nil, err
			}
		}
	}
	for i, l := range m.FSLayers {
		if err := add(&out.Blobs, fmt.Sprintf("fsLayers[%d]", i), descriptor{Digest: l.BlobSum}); err != nil {
			return nil, err
		}
	}
	if m.Subject != nil && m.Subject.Digest != "" {
		if err := distribution.ValidateDigest(m.Subject.Digest); err != nil {
			return nil, fmt.Errorf("subject: %v", err)
		}
		out.Subject = m.Subject.Digest
	}
	return out, nil
}

// foreign reports a non-distributable layer: clients fetch it from its
// URLs, so the tree never holds it and nothing is missing without it.
func foreign(mediaType string) bool {
	return strings.Contains(mediaType, "foreign") || strings.Contains(mediaType, "nondistributable")
}
