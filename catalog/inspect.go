package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Image is one manifest of the tree in detail: an index with its
// children, or an image with its config and layers; and what refers to
// it.
type Image struct {
	Repository   string            `json:"repository"`
	Tag          string            `json:"tag,omitempty"`
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"media_type"`
	Size         int64             `json:"size"` // of the manifest itself
	ArtifactType string            `json:"artifact_type,omitempty"`
	Subject      digest.Digest     `json:"subject,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Children     []Descriptor      `json:"children,omitempty"`
	Config       *Config           `json:"config,omitempty"`
	Layers       []Descriptor      `json:"layers,omitempty"`
	Referrers    []Descriptor      `json:"referrers"`
}

// Descriptor is a child, a layer or a referrer, as views show them.
type Descriptor struct {
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"media_type,omitempty"`
	Size         int64         `json:"size"` // -1: not recorded (schema1)
	Platform     string        `json:"platform,omitempty"`
	ArtifactType string        `json:"artifact_type,omitempty"`
}

func describe(ds []distribution.Descriptor) []Descriptor {
	out := make([]Descriptor, 0, len(ds))
	for _, d := range ds {
		v := Descriptor{Digest: d.Digest, MediaType: d.MediaType, Size: d.Size, ArtifactType: d.ArtifactType}
		if d.Platform != nil {
			v.Platform = d.Platform.String()
		}
		out = append(out, v)
	}
	return out
}

// Config summarises an image configuration.
type Config struct {
	Digest        digest.Digest     `json:"digest"`
	Size          int64             `json:"size"`
	MediaType     string            `json:"media_type,omitempty"`
	Created       *time.Time        `json:"created,omitempty"`
	Architecture  string            `json:"architecture,omitempty"`
	OS            string            `json:"os,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Entrypoint    []string          `json:"entrypoint,omitempty"`
	Cmd           []string          `json:"cmd,omitempty"`
	HistoryLength int               `json:"history_length"`
}

// ErrUnknown is a tag or manifest that is not in the tree.
var ErrUnknown = errors.New("not in the tree")

// Inspect describes the manifest repo:tag names (its preferred variant),
// or manifest d of repo when tag is "".
func Inspect(root *tree.Root, repo, tag string, d digest.Digest) (*Image, error) {
	img := &Image{Repository: repo, Tag: tag, Referrers: []Descriptor{}}
	if tag != "" {
		t, err := describeTag(root, repo, tag)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s:%s: %w", repo, tag, ErrUnknown)
		}
		if err != nil {
			return nil, err
		}
		d = t.Digest
	}
	img.Digest = d
	raw, err := root.ReadManifest(repo, d)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s@%s: %w", repo, d, ErrUnknown)
	}
	if err != nil {
		return nil, err
	}
	img.Size = int64(len(raw))
	if img.MediaType, err = root.ManifestMediaType(repo, d); err != nil {
		return nil, err
	}
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("%s@%s: %w", repo, d, err)
	}
	img.ArtifactType, img.Annotations, img.Children = m.ArtifactType, m.Annotations, describe(m.Manifests)
	if m.Subject != nil {
		img.Subject = m.Subject.Digest
	}
	img.Layers = describe(append(m.Layers, m.Blobs...))
	for _, l := range m.FSLayers {
		img.Layers = append(img.Layers, Descriptor{Digest: l.BlobSum, Size: -1})
	}
	if m.Config != nil {
		img.Config = readConfig(root, repo, *m.Config)
	}
	img.Referrers, err = referrers(root, repo, d)
	return img, err
}

func readConfig(root *tree.Root, repo string, d distribution.Descriptor) *Config {
	c := &Config{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	raw, err := root.ReadBlob(repo, d.Digest, maxConfigSize)
	if err != nil {
		return c
	}
	ic, err := distribution.ParseImageConfig(raw)
	if err != nil {
		return c
	}
	c.Created, c.Architecture, c.OS = ic.Created, ic.Architecture, ic.OS
	c.Labels, c.Entrypoint, c.Cmd = ic.Config.Labels, ic.Config.Entrypoint, ic.Config.Cmd
	c.HistoryLength = len(ic.History)
	return c
}

// referrers lists the manifests whose subject is d, from the referrers
// index the tree keeps for it (none when it keeps none).
func referrers(root *tree.Root, repo string, d digest.Digest) ([]Descriptor, error) {
	raw, err := root.ReadReferrers(repo, d)
	if errors.Is(err, fs.ErrNotExist) {
		return []Descriptor{}, nil
	}
	if err != nil {
		return nil, err
	}
	var idx struct {
		Manifests []distribution.Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %v", repo, d, err)
	}
	return describe(idx.Manifests), nil
}
