package gc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Media types the test trees use.
const (
	ociManifest = "application/vnd.oci.image.manifest.v1+json"
	ociIndex    = "application/vnd.oci.image.index.v1+json"
	ociConfig   = "application/vnd.oci.image.config.v1+json"
	ociLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	dockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerV2    = "application/vnd.docker.distribution.manifest.v2+json"
	schema1     = "application/vnd.docker.distribution.manifest.v1+json"
)

// fixture builds registry trees with tree's own writers, as exports do.
type fixture struct {
	t    testing.TB
	root *tree.Root
	fx   *tree.Fixtures // root's writers and paths, for building and damaging it
}

func newTree(t testing.TB) *fixture {
	t.Helper()
	return openTree(t, t.TempDir())
}

func openTree(t testing.TB, dir string) *fixture {
	t.Helper()
	root, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, root: root, fx: tree.Fixture(root)}
}

// desc is a descriptor as manifests write it.
type desc struct {
	MediaType string         `json:"mediaType"`
	Digest    digest.Digest  `json:"digest"`
	Size      int64          `json:"size"`
	Platform  map[string]any `json:"platform,omitempty"`
}

// blob puts content into repo (hard-linked if another repository has it).
func (tr *fixture) blob(repo string, content []byte) desc {
	tr.t.Helper()
	d := digest.FromBytes(content)
	_, _, err := tr.fx.PutBlob(repo, d, int64(len(content)), false, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(content)), nil
	})
	if err != nil {
		tr.t.Fatal(err)
	}
	return desc{MediaType: ociLayer, Digest: d, Size: int64(len(content))}
}

// manifest stores v, marshalled, as a manifest of type mt in repo.
func (tr *fixture) manifest(repo, mt string, v any) desc {
	tr.t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		tr.t.Fatal(err)
	}
	return tr.raw(repo, mt, raw)
}

func (tr *fixture) raw(repo, mt string, raw []byte) desc {
	tr.t.Helper()
	d := digest.FromBytes(raw)
	if err := tr.fx.PutManifest(repo, d, mt, raw); err != nil {
		tr.t.Fatal(err)
	}
	return desc{MediaType: mt, Digest: d, Size: int64(len(raw))}
}

// image stores an OCI image of a fresh config and layers in repo.
func (tr *fixture) image(repo, name string, layers ...[]byte) desc {
	tr.t.Helper()
	cfg := tr.blob(repo, fmt.Appendf(nil, `{"config":{},"name":%q}`, name))
	cfg.MediaType = ociConfig
	m := map[string]any{"schemaVersion": 2, "mediaType": ociManifest, "config": cfg, "layers": []desc{}}
	var ls []desc
	for _, l := range layers {
		ls = append(ls, tr.blob(repo, l))
	}
	if ls != nil {
		m["layers"] = ls
	}
	return tr.manifest(repo, ociManifest, m)
}

// index stores an index of mt over children (linux/<arch> each) in repo.
func (tr *fixture) index(repo, mt string, children map[string]desc) desc {
	tr.t.Helper()
	var ms []desc
	for _, arch := range []string{"amd64", "arm64", "ppc64le"} {
		if c, ok := children[arch]; ok {
			c.Platform = map[string]any{"os": "linux", "architecture": arch}
			ms = append(ms, c)
		}
	}
	return tr.manifest(repo, mt, map[string]any{"schemaVersion": 2, "mediaType": mt, "manifests": ms})
}

// tag points repo:tag at ds, the first at qs 1 when there are several.
func (tr *fixture) tag(repo, tag string, ds ...desc) {
	tr.t.Helper()
	var vs []tree.TagVariant
	for i, d := range ds {
		v := tree.TagVariant{Digest: d.Digest, MediaType: d.MediaType}
		if len(ds) > 1 {
			v.QS = 1
			if i > 0 {
				v.QS = 0.001
			}
		}
		vs = append(vs, v)
	}
	if err := tr.fx.PutTag(repo, tag, vs); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *fixture) untag(repo, tag string) {
	tr.t.Helper()
	if err := tr.fx.DeleteTag(repo, tag); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *fixture) hasManifest(repo string, d desc) bool {
	_, err := os.Stat(tr.fx.ManifestDir(repo, d.Digest))
	return err == nil
}

func (tr *fixture) hasBlob(repo string, d desc) bool {
	_, err := os.Stat(tr.fx.BlobPath(repo, d.Digest))
	if err != nil {
		_, err = os.Stat(tr.fx.LegacyBlobPath(repo, d.Digest))
	}
	return err == nil
}

// verify fails the test unless Verify finds the tree clean.
func (tr *fixture) verify() {
	tr.t.Helper()
	rep, err := Verify(tr.root, nil)
	if err != nil {
		tr.t.Fatal(err)
	}
	for _, p := range rep.Problems {
		tr.t.Errorf("verify: %s", p)
	}
}

// layer is deterministic content of n bytes.
func layer(seed string, n int) []byte {
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}
