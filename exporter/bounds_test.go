package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// manyLayers is an OCI image manifest naming n layers that exist nowhere,
// their digests made from seed: a plan must refuse it before fetching one.
func manyLayers(seed, n int) []byte {
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, distribution.MediaTypeOCIManifest, desc{distribution.MediaTypeOCIConfig, digest.FromString(fmt.Sprint("config", seed)), 2}, nil}
	for i := range n {
		m.Layers = append(m.Layers, desc{distribution.MediaTypeOCILayerGzip, digest.FromString(fmt.Sprint(seed, "/", i)), 1})
	}
	raw, _ := json.Marshal(m)
	return raw
}

// TestExportBoundsBlobs: an image naming more blobs than any real image
// does is refused while planning, before a single blob request, and
// leaves no tag. Guards: a 25,000-layer manifest took 5 minutes and left
// 25,000 lock files.
func TestExportBoundsBlobs(t *testing.T) {
	reg := testregistry.Start(t)
	var blobGets atomic.Int64
	reg.Intercept = func(_ http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/blobs/") {
			blobGets.Add(1)
		}
		return false
	}
	tooMany := reg.PushRaw(t, "big/layers:v1", distribution.MediaTypeOCIManifest, manyLayers(0, maxManifestBlobs))
	// Each child within the bound, together over the export's.
	type child struct {
		MediaType string    `json:"mediaType"`
		Digest    string    `json:"digest"`
		Size      int       `json:"size"`
		Platform  *Platform `json:"platform,omitempty"`
	}
	var children []child
	for i := range maxPlanBlobs/(maxManifestBlobs-1) + 1 {
		raw := manyLayers(i+1, maxManifestBlobs-1)
		p := reg.PushRaw(t, fmt.Sprintf("big/index:child-%d", i), distribution.MediaTypeOCIManifest, raw)
		children = append(children, child{distribution.MediaTypeOCIManifest, p.Digest, len(raw), &Platform{OS: "linux", Architecture: fmt.Sprint("arch", i)}})
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": distribution.MediaTypeOCIIndex, "manifests": children})
	wide := reg.PushRaw(t, "big/index:v1", distribution.MediaTypeOCIIndex, idx)
	within := reg.PushRaw(t, "big/layers:ok", distribution.MediaTypeOCIManifest, manyLayers(100, maxManifestBlobs-1))

	for _, tc := range []struct {
		name, ref, want string
	}{
		{"layers of one image", tooMany.Ref, fmt.Sprintf("%d blobs (layers and config), over the limit of %d", maxManifestBlobs+1, maxManifestBlobs)},
		{"blobs of one export", wide.Ref, fmt.Sprintf("over %d distinct blobs, the limit of one export", maxPlanBlobs)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := newRoot(t)
			blobGets.Store(0)
			_, err := Export(context.Background(), root, "docker://"+tc.ref, "big/x:v1", plainHTTP())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("export: %v; want an error saying %q", err, tc.want)
			}
			if n := blobGets.Load(); n != 0 {
				t.Errorf("%d blob requests before the refusal", n)
			}
			if tags, _ := tree.Fixture(root).Tags("big/x"); len(tags) != 0 {
				t.Errorf("tagged %v", tags)
			}
		})
	}
	// At the bound itself it plans, and goes on to fetch (the blobs exist
	// nowhere, so it fails there: past the plan).
	blobGets.Store(0)
	if _, err := Export(context.Background(), newRoot(t), "docker://"+within.Ref, "big/x:v1", plainHTTP()); err == nil || blobGets.Load() == 0 {
		t.Errorf("export at the bound: %v after %d blob requests; want it past planning, fetching", err, blobGets.Load())
	}
}
