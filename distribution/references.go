package distribution

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// References is what a stored manifest names, whatever its schema: what
// gc marks from and verify checks. ParseReferences reads back what is
// already in a tree and tolerates every shape that got there (TripleO's
// delete crashed on a list, which has no config); the exporter checks
// more before anything is stored.
type References struct {
	MediaType string          // the body's mediaType field, "" if absent
	Children  []digest.Digest // index or list entries: manifests of the same repository
	Blobs     []digest.Digest // config, layers, schema1 fsLayers
	Subject   digest.Digest   // the manifest this one refers to, "" if none
}

type refDescriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
}

// rawRefs is the projection of Manifest that ParseReferences decodes: the
// fields of every schema that name content — image manifests (config,
// layers), indexes and lists (manifests), the withdrawn OCI artifact
// manifest (blobs), Docker schema1 (fsLayers), OCI 1.1 referrers
// (subject) — with Manifest's names and types and nothing else, so that
// a field gc does not read (a size, an annotation) cannot fail the read,
// and the decoding costs no more than what gc reads (it reads every
// manifest of a tree). TestProjections holds it to Manifest: a
// content-naming field added there and missed here would let gc delete
// what it names.
type rawRefs struct {
	MediaType string          `json:"mediaType"`
	Config    *refDescriptor  `json:"config"`
	Layers    []refDescriptor `json:"layers"`
	Blobs     []refDescriptor `json:"blobs"`
	Manifests []refDescriptor `json:"manifests"`
	FSLayers  []struct {
		BlobSum digest.Digest `json:"blobSum"`
	} `json:"fsLayers"`
	Subject *refDescriptor `json:"subject"`
}

// ParseReferences reads what raw references. A descriptor without a digest is
// skipped (nothing to keep); one with an invalid digest is an error, since
// the blob it meant cannot be told apart from garbage.
func ParseReferences(raw []byte) (*References, error) {
	var m rawRefs
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	out := &References{MediaType: m.MediaType}
	// A field's name is spelt out only for an error.
	add := func(to *[]digest.Digest, field string, i int, d refDescriptor) error {
		if d.Digest == "" {
			return nil
		}
		if err := ValidateDigest(d.Digest); err != nil {
			if i >= 0 {
				field = fmt.Sprintf("%s[%d]", field, i)
			}
			return fmt.Errorf("%s: %v", field, err)
		}
		if !IsForeign(d.MediaType) {
			*to = append(*to, d.Digest)
		}
		return nil
	}
	if m.Config != nil {
		if err := add(&out.Blobs, "config", -1, *m.Config); err != nil {
			return nil, err
		}
	}
	for _, set := range []struct {
		field string
		ds    []refDescriptor
		to    *[]digest.Digest
	}{{"layers", m.Layers, &out.Blobs}, {"blobs", m.Blobs, &out.Blobs}, {"manifests", m.Manifests, &out.Children}} {
		for i, d := range set.ds {
			if err := add(set.to, set.field, i, d); err != nil {
				return nil, err
			}
		}
	}
	for i, l := range m.FSLayers {
		if err := add(&out.Blobs, "fsLayers", i, refDescriptor{Digest: l.BlobSum}); err != nil {
			return nil, err
		}
	}
	if m.Subject != nil && m.Subject.Digest != "" {
		if err := ValidateDigest(m.Subject.Digest); err != nil {
			return nil, fmt.Errorf("subject: %v", err)
		}
		out.Subject = m.Subject.Digest
	}
	return out, nil
}

// IsForeign reports a non-distributable layer's media type: clients fetch
// such a layer from its URLs, so a registry does not hold it and nothing
// is missing without it.
func IsForeign(mediaType string) bool {
	return strings.Contains(mediaType, "foreign") || strings.Contains(mediaType, "nondistributable")
}
