package legacytree

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/opencontainers/go-digest"
)

// TestTripleOVhostServesLegacyTree: the fixture is what TripleO's vhost
// served — single-arch and multi-arch tags of two-level and one-level
// repositories pull completely, .gz layers and all — and the vhost has the
// defects the notes describe: a multi-arch tag is served by size (here the
// child, smaller than the list), and AddEncoding breaks .gz layers.
func TestTripleOVhostServesLegacyTree(t *testing.T) {
	dir := testserver.SharedTempDir(t, "legacy-")
	b := New(t, dir)
	shared := Layer(t, 4<<10)
	single := b.Single("tripleomaster/nova-api", "current", "amd64", shared, Layer(t, 2<<10))
	multi := b.MultiArch("tripleomaster/nova-compute", "current", []string{"amd64", "arm64"}, shared)
	flat := b.Single("keystone", "v1", "amd64", Layer(t, 1<<10))
	b.RepoHtaccess("tripleomaster/nova-api")
	b.Finish()
	base := strings.TrimPrefix(testserver.Apache(t, nil, testserver.WithConfig(TripleOVhost(dir))), "http://")
	for ref, want := range map[string]digest.Digest{
		"tripleomaster/nova-api:current":     single.Digest,
		"tripleomaster/nova-compute:current": multi.Default, // by size: the list is larger
		"keystone:v1":                        flat.Digest,
	} {
		if got, err := pull(base + "/" + ref); err != nil || got != want {
			t.Errorf("pull %s: %v, %v; want %s", ref, got, err, want)
		}
	}
	hostile := strings.TrimPrefix(testserver.Apache(t, nil, testserver.WithConfig(TripleOVhost(dir)), testserver.WithHostileEncoding()), "http://")
	if _, err := pull(hostile + "/tripleomaster/nova-api:current"); err == nil {
		t.Error("under AddEncoding, TripleO's vhost served a .gz layer clients can check")
	}
}

func pull(ref string) (digest.Digest, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(r)
	if err != nil {
		return "", err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = validate.Index(idx)
		}
		return digest.Digest(desc.Digest.String()), err
	}
	img, err := desc.Image()
	if err == nil {
		err = validate.Image(img)
	}
	return digest.Digest(desc.Digest.String()), err
}
