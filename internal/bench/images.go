package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// MediaTypeIndex is the OCI image index media type.
const MediaTypeIndex = "application/vnd.oci.image.index.v1+json"

// LayerSpec names one generated layer: Size random bytes from a stream
// seeded by Seed and Index. Equal specs are equal layers, so images that
// name the same spec share that layer's blob.
type LayerSpec struct {
	Seed, Index uint64
	Size        int64
}

// PlatformImage is one image manifest: its platform's architecture (OS
// linux) and its layers, bottom first.
type PlatformImage struct {
	Arch   string
	Layers []LayerSpec
}

// ImageSpec is one image of a multi-image layout, under its ref name: an
// image manifest when it has one platform, an index of them when more.
type ImageSpec struct {
	Ref       string
	Platforms []PlatformImage
}

// Images is a generated OCI layout of several images sharing blobs.
type Images struct {
	Dir   string
	Top   map[string]Blob // by ref: the manifest or index the ref names
	Blobs map[string][]Blob
	// UniqueBytes is the size of every distinct blob in the layout.
	UniqueBytes int64
}

// Source is the image ref as an image-serve (and skopeo) source reference.
func (l *Images) Source(ref string) string { return "oci:" + l.Dir + ":" + ref }

// WriteImages writes one OCI image layout into dir holding every image of
// imgs, each layer as WriteLayout writes them (a stored gzip stream of
// incompressible bytes), each distinct layer once.
func WriteImages(dir string, imgs []ImageSpec) (*Images, error) {
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	type layer struct {
		blob   Blob
		diffID digest.Digest
	}
	layers := map[LayerSpec]layer{}
	seen := map[digest.Digest]bool{}
	out := &Images{Dir: dir, Top: map[string]Blob{}, Blobs: map[string][]Blob{}}
	add := func(ref string, b Blob) {
		out.Blobs[ref] = append(out.Blobs[ref], b)
		if !seen[b.Digest] {
			seen[b.Digest] = true
			out.UniqueBytes += b.Size
		}
	}
	var refs []map[string]any
	for _, img := range imgs {
		if len(img.Platforms) == 0 {
			return nil, fmt.Errorf("bench: image %s has no platform", img.Ref)
		}
		var manifests []map[string]any
		for _, p := range img.Platforms {
			var ls []Blob
			var diffIDs []digest.Digest
			for _, spec := range p.Layers {
				l, ok := layers[spec]
				if !ok {
					b, diffID, err := writeLayer(blobs, spec.Size, spec.Seed, spec.Index)
					if err != nil {
						return nil, err
					}
					l = layer{b, diffID}
					layers[spec] = l
				}
				ls = append(ls, l.blob)
				diffIDs = append(diffIDs, l.diffID)
				add(img.Ref, l.blob)
			}
			config, err := json.Marshal(map[string]any{
				"architecture": p.Arch,
				"os":           "linux",
				"config":       map[string]any{"Labels": map[string]string{"name": img.Ref}},
				"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
			})
			if err != nil {
				return nil, err
			}
			cb, err := writeBlob(blobs, MediaTypeConfig, config)
			if err != nil {
				return nil, err
			}
			add(img.Ref, cb)
			manifest, err := json.Marshal(map[string]any{
				"schemaVersion": 2,
				"mediaType":     MediaTypeManifest,
				"config":        descriptor(cb),
				"layers":        descriptors(ls),
			})
			if err != nil {
				return nil, err
			}
			mb, err := writeBlob(blobs, MediaTypeManifest, manifest)
			if err != nil {
				return nil, err
			}
			add(img.Ref, mb)
			d := descriptor(mb)
			d["platform"] = map[string]string{"os": "linux", "architecture": p.Arch}
			manifests = append(manifests, d)
		}
		top := manifests[0]
		if len(manifests) > 1 {
			index, err := json.Marshal(map[string]any{
				"schemaVersion": 2,
				"mediaType":     MediaTypeIndex,
				"manifests":     manifests,
			})
			if err != nil {
				return nil, err
			}
			ib, err := writeBlob(blobs, MediaTypeIndex, index)
			if err != nil {
				return nil, err
			}
			add(img.Ref, ib)
			top = descriptor(ib)
		} else {
			delete(top, "platform")
		}
		out.Top[img.Ref] = Blob{Digest: top["digest"].(digest.Digest), MediaType: top["mediaType"].(string), Size: top["size"].(int64)}
		top["annotations"] = map[string]string{"org.opencontainers.image.ref.name": img.Ref}
		refs = append(refs, top)
	}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": MediaTypeIndex, "manifests": refs})
	if err != nil {
		return nil, err
	}
	if err := writeLayoutIndex(dir, index); err != nil {
		return nil, err
	}
	return out, nil
}
