package exporter

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// A tag of a store on this machine cannot be compared by its manifest's
// digest as a registry's is: an export compresses the store's plain
// layers and writes a manifest of its own, so the tree's digest is never
// the store's. What an export keeps as it is is the image's config, and
// a store names an image by the config's digest — its ID. So a tag has
// not moved when the config the tree's manifest names is the image the
// store's tag names now; a rebuilt image has another config (its layers'
// diff IDs and creation time are in it), so another ID. The check asks
// the store once per run for every name it holds (localCatalog) and
// reads one manifest of the tree per tag: no image is read from the
// store for a tag that has not moved.

// checkLocal decides whether t, a tag of a store on this machine, moved;
// t.current is what the tree's tag names ("" for none).
func (t *syncTag) checkLocal(ctx context.Context, root SyncTree, o Options) {
	id, found, err := t.e.catalog.id(ctx, t.e.Source, t.tag, o)
	switch {
	case err != nil:
		t.fail(fmt.Errorf("%s: %w", t.e.Entry, err))
		return
	case !found:
		t.fail(fmt.Errorf("%s: %s has no image %s:%s", t.e.Entry, t.e.Local.name(), t.e.Source, t.tag))
		return
	}
	if t.current != "" && treeConfig(root, t.dest.Repo, t.current) == id {
		t.res.Status, t.res.Digest = SyncUnchanged, t.current
		return
	}
	t.localID = id
}

// treeConfig is the digest of the config manifest d of repo names in
// root; "" when it names none (an index), or the tree cannot say — the
// tag is then exported again, and publishes nothing if it gives the
// same manifest.
func treeConfig(root SyncTree, repo string, d digest.Digest) digest.Digest {
	var config digest.Digest
	_ = root.Inspect(func(v *tree.View) error {
		raw, err := v.ReadManifest(repo, d)
		if err != nil {
			return nil
		}
		var m struct {
			Config struct {
				Digest digest.Digest `json:"digest"`
			} `json:"config"`
		}
		if json.Unmarshal(raw, &m) == nil && m.Config.Digest.Validate() == nil {
			config = m.Config.Digest
		}
		return nil
	})
	return config
}

// localJob is the export of t, a tag of a store on this machine that
// moved: by the image ID its check found, so that what is exported is
// what was compared (a tag rebuilt meanwhile is caught by the next run),
// and the tags of one image are read from the store once.
func (t *syncTag) localJob() Job {
	return Job{Source: t.e.Local.idRef(t.localID), Dest: t.dest.String(), current: t.current}
}
