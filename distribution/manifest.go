// Package distribution is the part of the OCI image and distribution
// specifications that image-serve reads back from its tree: manifests of
// every schema, descriptors, platforms and image configs. It parses
// tolerantly — a stored manifest is shown whatever shape it has — and
// checks nothing a writer must check (the exporter does). It imports
// nothing of image-serve's.
package distribution

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	imagespec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of the manifests image-serve stores: the OCI ones as the
// image specification's module spells them, Docker's as its registry does.
const (
	MediaTypeOCIManifest      = imagespec.MediaTypeImageManifest
	MediaTypeOCIIndex         = imagespec.MediaTypeImageIndex
	MediaTypeDockerManifest   = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList       = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerSchema1    = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1JWS = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// Media types of what manifests name: configs and layers.
const (
	MediaTypeDockerConfig    = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer     = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeOCIConfig       = imagespec.MediaTypeImageConfig
	MediaTypeOCILayerGzip    = imagespec.MediaTypeImageLayerGzip
	MediaTypeOCILayerZstd    = imagespec.MediaTypeImageLayerZstd
)

// ManifestType is one manifest media type image-serve stores, with what
// every part of it needs to know of the type: the one table the
// exporter's Accept header, the tree's nginx links and the nginx
// template's negotiation derive from.
type ManifestType struct {
	MediaType string
	// Index: its manifests list other manifests (an OCI index, a Docker
	// manifest list), never a tag's fallback variant.
	Index bool
	// NginxExt is the extension of the hard link that tells nginx the
	// type: manifest.<NginxExt>.
	NginxExt string
}

// manifestTypes, commonest first: nginx tries the typed links in this
// order, one stat each.
var manifestTypes = []ManifestType{
	{MediaTypeOCIManifest, false, "oci-manifest"},
	{MediaTypeOCIIndex, true, "oci-index"},
	{MediaTypeDockerManifest, false, "docker-v2"},
	{MediaTypeDockerList, true, "docker-list"},
	{MediaTypeDockerSchema1JWS, false, "docker-v1"},
	{MediaTypeDockerSchema1, false, "docker-v1-json"},
}

// ManifestTypes lists the manifest media types image-serve stores,
// commonest first.
func ManifestTypes() []ManifestType { return slices.Clone(manifestTypes) }

// IsIndex reports a media type whose manifests list other manifests.
func IsIndex(mediaType string) bool {
	return slices.ContainsFunc(manifestTypes, func(t ManifestType) bool { return t.Index && t.MediaType == mediaType })
}

// IndexTypesPattern is a regular expression (RE2 and PCRE alike) matching
// any index media type in a string such as an Accept header.
func IndexTypesPattern() string {
	var alts []string
	for _, t := range manifestTypes {
		if t.Index {
			alts = append(alts, regexp.QuoteMeta(t.MediaType))
		}
	}
	return strings.Join(alts, "|")
}

// Descriptor points at content by digest and size.
type Descriptor struct {
	MediaType    string            `json:"mediaType,omitempty"`
	Digest       digest.Digest     `json:"digest"`
	Size         int64             `json:"size"`
	Platform     *Platform         `json:"platform,omitempty"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	URLs         []string          `json:"urls,omitempty"`
}

// Platform is what an index says a child runs on.
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String is "os/arch[/variant]".
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Manifest holds the fields of every manifest schema: image manifests
// (config, layers), indexes and lists (manifests), the withdrawn OCI
// artifact manifest (blobs), Docker schema1 (fsLayers) and OCI 1.1
// referrers (subject, artifactType).
type Manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType,omitempty"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        *Descriptor       `json:"config,omitempty"`
	Layers        []Descriptor      `json:"layers,omitempty"`
	Blobs         []Descriptor      `json:"blobs,omitempty"`
	Manifests     []Descriptor      `json:"manifests,omitempty"`
	Subject       *Descriptor       `json:"subject,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	FSLayers      []struct {
		BlobSum digest.Digest `json:"blobSum"`
	} `json:"fsLayers,omitempty"`
	Architecture string          `json:"architecture,omitempty"` // schema1
	Signatures   json.RawMessage `json:"signatures,omitempty"`   // schema1, signed
}

// ParseManifest reads raw as a manifest of any schema. It fails on bytes
// that are not JSON, on JSON that is neither an object nor null, and on a
// field of a type the schemas do not give it (a string schemaVersion).
//
// It is the one decoding of a manifest's whole shape. ParseReferences and
// ReferrerOf decode projections of Manifest — its field names and types,
// fewer fields — rather than call it: each must tolerate a wrong type in
// a field it does not read, which a typed decoding of every field cannot,
// and gc and verify run them on every manifest of a tree, where decoding
// the fields they do not read costs measurably more (BenchmarkParse).
// TestProjections holds the projections to Manifest, FuzzReaders the
// three readers to agree.
func ParseManifest(raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return &m, nil
}

// Schema1Type is the media type a Docker schema 1 manifest is served as —
// signed (JWS) when it carries signatures, plain otherwise — and "" for a
// manifest of another schemaVersion. The body of a schema 1 manifest
// seldom states its type, so its readers (the exporter, the tree's
// migrate) take it from here.
func (m *Manifest) Schema1Type() string {
	switch {
	case m.SchemaVersion != 1:
		return ""
	case len(m.Signatures) > 0:
		return MediaTypeDockerSchema1JWS
	}
	return MediaTypeDockerSchema1
}

// ImageConfig is the part of an image configuration worth showing.
type ImageConfig struct {
	Created      *time.Time `json:"created,omitempty"`
	Architecture string     `json:"architecture,omitempty"`
	OS           string     `json:"os,omitempty"`
	Variant      string     `json:"variant,omitempty"`
	Config       struct {
		Labels     map[string]string `json:"Labels,omitempty"`
		Entrypoint []string          `json:"Entrypoint,omitempty"`
		Cmd        []string          `json:"Cmd,omitempty"`
	} `json:"config"`
	History []json.RawMessage `json:"history,omitempty"`
}

// ParseImageConfig reads an image configuration; a config that is not one
// (an artifact's) parses to what fields it has.
func ParseImageConfig(raw []byte) (*ImageConfig, error) {
	var c ImageConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("invalid config JSON: %v", err)
	}
	return &c, nil
}
