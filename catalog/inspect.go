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
// it. Of a broken one, what could be read.
type Image struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag,omitempty"`
	Digest     digest.Digest `json:"digest"` // "" when the tag's type map cannot be read
	MediaType  string        `json:"media_type"`
	Size       int64         `json:"size"` // of the manifest itself; 0 when it cannot be read
	// Status is empty when a pull of the image can fetch all of it, and
	// otherwise its first problem in pull order (its manifest, its
	// children, its config, its layers), one of the Status constants: the
	// Status list --long shows for the tag. The children, config and
	// layers that are broken say so in their own Status.
	Status       string            `json:"status,omitempty"`
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
	// Status is empty when what the descriptor names is whole: for a
	// child, the first problem of everything a pull of it fetches; for a
	// config or layer, StatusMissingBlob or StatusUnreadableBlob.
	Status string `json:"status,omitempty"`
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
	Status        string            `json:"status,omitempty"` // as a layer's
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
// or manifest d of repo when tag is "". A tag or manifest that is not in
// the tree is an error wrapping ErrUnknown; a broken one is described as
// far as it can be read, with its Status set.
func Inspect(view *tree.View, repo, tag string, d digest.Digest) (*Image, error) {
	img := &Image{Repository: repo, Tag: tag, Referrers: []Descriptor{}}
	note := func(status string) {
		if img.Status == "" {
			img.Status = status
		}
	}
	if tag != "" {
		tg, ok := tagTarget(view, repo, tag)
		if !ok {
			return nil, fmt.Errorf("%s:%s: %w", repo, tag, ErrUnknown)
		}
		img.Status = tg.status
		if tg.digest == "" {
			return img, nil // the type map cannot say which manifest
		}
		d, img.MediaType = tg.digest, tg.mediaType
	}
	img.Digest = d
	// Its headers say its media type; without them, the tag's type map.
	if mt, err := view.ManifestMediaType(repo, d); err == nil {
		img.MediaType = mt
	}
	raw, err := view.ReadManifest(repo, d)
	switch {
	case (errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot)) && tag == "":
		return nil, fmt.Errorf("%s@%s: %w", repo, d, ErrUnknown)
	case err != nil:
		// A tag naming a manifest that is gone, or unreadable: what the
		// tag and the manifest's headers say of it.
		note(manifestStatus(err))
		img.Referrers, err = referrers(view, repo, d)
		return img, err
	}
	img.Size = int64(len(raw))
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		note(StatusUnreadableManifest)
		img.Referrers, err = referrers(view, repo, d)
		return img, err
	}
	img.ArtifactType, img.Annotations, img.Children = m.ArtifactType, m.Annotations, describe(m.Manifests)
	if m.Subject != nil {
		img.Subject = m.Subject.Digest
	}
	for i := range img.Children {
		w := newWalker(view, repo)
		w.walk(img.Children[i].Digest, 1)
		img.Children[i].Status = w.problem
		note(w.problem)
	}
	if m.Config != nil {
		img.Config = readConfig(view, repo, *m.Config)
		note(img.Config.Status)
	}
	layers := append(m.Layers, m.Blobs...)
	img.Layers = describe(layers)
	for i, l := range layers {
		_, img.Layers[i].Status = blobPresence(view, repo, l)
		note(img.Layers[i].Status)
	}
	for _, l := range m.FSLayers {
		v := Descriptor{Digest: l.BlobSum, Size: -1}
		_, v.Status = blobPresence(view, repo, distribution.Descriptor{Digest: l.BlobSum, Size: -1})
		note(v.Status)
		img.Layers = append(img.Layers, v)
	}
	img.Referrers, err = referrers(view, repo, d)
	return img, err
}

func readConfig(view *tree.View, repo string, d distribution.Descriptor) *Config {
	c := &Config{Digest: d.Digest, Size: d.Size, MediaType: d.MediaType}
	if _, c.Status = blobPresence(view, repo, d); c.Status != "" {
		return c
	}
	raw, err := view.ReadBlob(repo, d.Digest, maxConfigSize)
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
func referrers(view *tree.View, repo string, d digest.Digest) ([]Descriptor, error) {
	raw, err := view.ReadReferrers(repo, d)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot) {
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
