package tree

import (
	"os"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestRestoreHeadersFromRecords: a manifest whose bytes state no media
// type gets its .htaccess back with the type the tree still records —
// its headers' own, else a type map's, else its nginx typed link's — the
// one rule migrate uses too; with no record left it is left as it is.
func TestRestoreHeadersFromRecords(t *testing.T) {
	// An OCI image manifest may leave mediaType out.
	raw := []byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	d := digest.FromBytes(raw)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, r *Root) // after the .htaccess is removed
		want   bool                        // headers written again
	}{
		{"the type map records it", func(*testing.T, *Root) {}, true},
		{"only the typed link records it", func(t *testing.T, r *Root) {
			if err := r.deleteTag("app", "v1"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"nothing records it", func(t *testing.T, r *Root) {
			if err := r.deleteTag("app", "v1"); err != nil {
				t.Fatal(err)
			}
			p, _ := r.typedManifestPath("app", d, mtOCIManifest)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTree(t)
			if err := r.putManifest("app", d, mtOCIManifest, raw); err != nil {
				t.Fatal(err)
			}
			if err := r.putTag("app", "v1", []TagVariant{{Digest: d, MediaType: mtOCIManifest}}); err != nil {
				t.Fatal(err)
			}
			exported, err := os.ReadFile(r.headersPath("app", d))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(r.headersPath("app", d)); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, r)
			fixed, err := r.restoreRepoHeaders("app")
			if err != nil {
				t.Fatal(err)
			}
			got, readErr := os.ReadFile(r.headersPath("app", d))
			switch {
			case tc.want && (!slices.Equal(fixed, []digest.Digest{d}) || string(got) != string(exported)):
				t.Errorf("RestoreHeaders = %v; .htaccess %q (%v), want %q as exported", fixed, got, readErr, exported)
			case !tc.want && (len(fixed) > 0 || readErr == nil):
				t.Errorf("RestoreHeaders = %v, .htaccess %q: want it left as it is, with no type recorded", fixed, got)
			}
		})
	}
}
