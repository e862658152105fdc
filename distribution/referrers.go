package distribution

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The OCI 1.1 referrers API answers GET /v2/<repo>/referrers/<digest>
// with an OCI index of the manifests whose subject is <digest>.

// ReferrersIndex is the body of a referrers response.
type ReferrersIndex struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	Manifests     []ReferrerDescriptor `json:"manifests"`
}

// ReferrerDescriptor describes one manifest whose subject is the digest
// asked about, with what the spec says a client filters and shows by.
type ReferrerDescriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	// ArtifactType is the manifest's artifactType, else its config's media
	// type; an index without one has none.
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// Marshal is the index as the tree stores it: compact JSON, entries
// sorted by digest, so that regenerating an unchanged index writes the
// same bytes.
func (x ReferrersIndex) Marshal() []byte {
	x.Manifests = append([]ReferrerDescriptor{}, x.Manifests...)
	slices.SortFunc(x.Manifests, func(a, b ReferrerDescriptor) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	b, _ := json.Marshal(x) // strings, numbers and string maps only
	return b
}

// ParseReferrers reads a referrers index, as Marshal writes it.
func ParseReferrers(b []byte) (ReferrersIndex, error) {
	var x ReferrersIndex
	if err := json.Unmarshal(b, &x); err != nil {
		return x, fmt.Errorf("referrers index: %v", err)
	}
	return x, nil
}

// EmptyReferrers is the referrers index of a digest nothing refers to.
func EmptyReferrers() []byte { return NewReferrersIndex(nil).Marshal() }

// NewReferrersIndex is the referrers index listing ds.
func NewReferrersIndex(ds []ReferrerDescriptor) ReferrersIndex {
	return ReferrersIndex{SchemaVersion: 2, MediaType: MediaTypeOCIIndex, Manifests: ds}
}

// referrerFields are what a manifest's referrers entry is made of: the
// projection of Manifest that ReferrerOf decodes. Only the subject must
// decode, as Manifest's does: a field of an unexpected type is left out
// of the entry rather than dropping a manifest that gc counts as a
// referrer, so the others stay raw, each read — or dropped — on its own.
// The projection skips what the entry does not need (layers, manifests):
// the referrers scan reads every manifest of a repository, and verify
// every manifest of a tree.
type referrerFields struct {
	Subject *struct {
		Digest digest.Digest `json:"digest"`
	} `json:"subject"`
	MediaType    json.RawMessage `json:"mediaType"`
	ArtifactType json.RawMessage `json:"artifactType"`
	Config       json.RawMessage `json:"config"`
	Annotations  json.RawMessage `json:"annotations"`
}

// ReferrerOf returns the subject of manifest raw (digest d) and its entry
// in the subject's referrers index, or "" for a manifest without a valid
// subject. mediaType is the type the manifest is served as; "" takes the
// body's.
func ReferrerOf(raw []byte, d digest.Digest, mediaType string) (digest.Digest, ReferrerDescriptor) {
	var m referrerFields
	if json.Unmarshal(raw, &m) != nil || m.Subject == nil || ValidateDigest(m.Subject.Digest) != nil {
		return "", ReferrerDescriptor{}
	}
	if mediaType == "" {
		_ = json.Unmarshal(m.MediaType, &mediaType)
	}
	rd := ReferrerDescriptor{MediaType: mediaType, Digest: d, Size: int64(len(raw))}
	_ = json.Unmarshal(m.ArtifactType, &rd.ArtifactType)
	if rd.ArtifactType == "" {
		var config struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(m.Config, &config) == nil {
			rd.ArtifactType = config.MediaType
		}
	}
	var annotations map[string]string
	if json.Unmarshal(m.Annotations, &annotations) == nil {
		rd.Annotations = annotations
	}
	return m.Subject.Digest, rd
}
