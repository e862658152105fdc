package distribution

import (
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

var (
	dA = digest.FromString("a")
	dB = digest.FromString("b")
	dC = digest.FromString("c")
)

// TestParseReferences reads what every schema names, tolerating what
// TripleO's trees hold (a list has no config), skipping foreign layers,
// refusing a digest that is not one.
func TestParseReferences(t *testing.T) {
	tests := []struct {
		name, raw       string
		children, blobs []digest.Digest
		subject         digest.Digest
		wantErr         string
	}{
		{name: "image", raw: `{"schemaVersion":2,"config":{"digest":"` + dA.String() + `"},"layers":[{"digest":"` + dB.String() + `"}]}`, blobs: []digest.Digest{dA, dB}},
		{name: "list without config", raw: `{"schemaVersion":2,"manifests":[{"digest":"` + dA.String() + `"},{"digest":"` + dB.String() + `"}]}`, children: []digest.Digest{dA, dB}},
		{name: "foreign layer", raw: `{"config":{"digest":"` + dA.String() + `"},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` + dB.String() + `"}]}`, blobs: []digest.Digest{dA}},
		{name: "schema1", raw: `{"schemaVersion":1,"fsLayers":[{"blobSum":"` + dC.String() + `"}]}`, blobs: []digest.Digest{dC}},
		{name: "artifact blobs and subject", raw: `{"blobs":[{"digest":"` + dA.String() + `"}],"subject":{"digest":"` + dB.String() + `"}}`, blobs: []digest.Digest{dA}, subject: dB},
		{name: "descriptor without digest", raw: `{"layers":[{"mediaType":"x"}]}`},
		{name: "bad digest", raw: `{"layers":[{"digest":"sha256:zz"}]}`, wantErr: "layers[0]"},
		{name: "bad subject", raw: `{"subject":{"digest":"md5:00"}}`, wantErr: "subject"},
		{name: "not JSON", raw: `{`, wantErr: "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReferences([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Children, tt.children) || !slices.Equal(got.Blobs, tt.blobs) || got.Subject != tt.subject {
				t.Errorf("got %+v", got)
			}
		})
	}
}

// FuzzParseReferences: whatever the bytes, no panic, and every digest
// returned is one a tree can store.
func FuzzParseReferences(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"config":{"digest":"` + dA.String() + `"},"manifests":[{"digest":"` + dB.String() + `"}],"subject":{"digest":"` + dC.String() + `"}}`))
	f.Add([]byte(`{"fsLayers":[{"blobSum":"sha256:00"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseReferences(raw)
		if err != nil {
			return
		}
		for _, d := range append(append(slices.Clone(r.Children), r.Blobs...), r.Subject) {
			if d != "" && ValidateDigest(d) != nil {
				t.Fatalf("returned invalid digest %q", d)
			}
		}
	})
}
