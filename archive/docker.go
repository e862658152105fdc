package archive

import (
	"slices"

	"github.com/opencontainers/go-digest"
)

// dockerEntry is one image of manifest.json, as `docker load` reads it.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// dockerPlan is a docker-archive resolved: one entry per image however
// many REFs name it, each with the tags of all of them.
type dockerPlan struct {
	images  []*image
	entries []dockerEntry
	// repositories is the legacy file: repository → tag → image ID (the
	// config's digest, hex), as docker names an image.
	repositories map[string]map[string]string
	blobs        []blobRef // configs, then layers, each once
}

func planDocker(rd reader, refs []Ref, o Options) (*dockerPlan, error) {
	p := &dockerPlan{repositories: map[string]map[string]string{}}
	at := map[digest.Digest]int{} // image manifest → its entry
	seen := map[digest.Digest]bool{}
	var layers []blobRef
	for _, ref := range refs {
		img, err := rd.image(ref, o.Platform, DockerArchive, o.Chose)
		if err != nil {
			return nil, err
		}
		i, ok := at[img.desc.Digest]
		if !ok {
			i = len(p.entries)
			at[img.desc.Digest] = i
			p.images = append(p.images, img)
			e := dockerEntry{Config: blobName(img.config.Digest), Layers: []string{}}
			for _, l := range img.m.Layers {
				e.Layers = append(e.Layers, blobName(l.Digest))
				if !seen[l.Digest] {
					seen[l.Digest] = true
					layers = append(layers, blobRef{img.repo, l})
				}
			}
			if !seen[img.config.Digest] {
				seen[img.config.Digest] = true
				p.blobs = append(p.blobs, blobRef{img.repo, img.config})
			}
			p.entries = append(p.entries, e)
		}
		if ref.Tag == "" {
			continue
		}
		name := ref.Repo + ":" + ref.Tag
		e := &p.entries[i]
		if !slices.Contains(e.RepoTags, name) {
			e.RepoTags = append(e.RepoTags, name)
		}
		if p.repositories[ref.Repo] == nil {
			p.repositories[ref.Repo] = map[string]string{}
		}
		p.repositories[ref.Repo][ref.Tag] = img.config.Digest.Encoded()
	}
	p.blobs = append(p.blobs, layers...)
	return p, nil
}

// write streams the archive: manifest.json and repositories first, so a
// reader of the stream knows what follows, then each config and layer
// once, as the tree stores it (a layer compressed in the tree stays so:
// docker load, podman and containerd decompress what they load).
func (p *dockerPlan) write(s sink) error {
	if err := s.file("manifest.json", marshal(p.entries)); err != nil {
		return err
	}
	if err := s.file("repositories", marshal(p.repositories)); err != nil {
		return err
	}
	if err := s.dir("blobs"); err != nil {
		return err
	}
	algs := map[string]bool{}
	for _, b := range p.blobs {
		alg := b.desc.Digest.Algorithm().String()
		if !algs[alg] {
			algs[alg] = true
			if err := s.dir("blobs/" + alg); err != nil {
				return err
			}
		}
		if err := s.blob(blobName(b.desc.Digest), b); err != nil {
			return err
		}
	}
	return nil
}
