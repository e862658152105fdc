package distribution

import (
	"regexp"
	"testing"
)

func TestParseManifest(t *testing.T) {
	for _, tc := range []struct {
		name, raw   string
		index       bool
		layers      int
		children    int
		wantErr     bool
		schemaOne   bool
		platformArm bool
	}{
		{name: "oci image", raw: `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:` + zeros + `","size":2},"layers":[{"digest":"sha256:` + zeros + `","size":3}]}`, layers: 1},
		{name: "docker list", raw: `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"digest":"sha256:` + zeros + `","size":5,"platform":{"os":"linux","architecture":"arm64"}}]}`, index: true, children: 1, platformArm: true},
		{name: "schema1", raw: `{"schemaVersion":1,"fsLayers":[{"blobSum":"sha256:` + zeros + `"}],"architecture":"amd64"}`, schemaOne: true},
		{name: "not an object", raw: `[1]`, wantErr: true},
		{name: "not JSON", raw: `{`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tc.raw))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if IsIndex(m.MediaType) != tc.index || len(m.Layers) != tc.layers || len(m.Manifests) != tc.children {
				t.Errorf("%+v", m)
			}
			if tc.schemaOne && (len(m.FSLayers) != 1 || m.Architecture != "amd64") {
				t.Errorf("schema1: %+v", m)
			}
			if tc.platformArm && m.Manifests[0].Platform.String() != "linux/arm64" {
				t.Errorf("platform %v", m.Manifests[0].Platform)
			}
		})
	}
}

const zeros = "0000000000000000000000000000000000000000000000000000000000000000"

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:` + zeros + `"}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := ParseManifest(raw)
		if err == nil && m == nil {
			t.Fatal("nil manifest without error")
		}
	})
}

// TestManifestTypes: the one media-type table — every type stored has an
// nginx extension of its own, IsIndex says what the table says, and the
// index pattern matches exactly the index types in an Accept header.
func TestManifestTypes(t *testing.T) {
	exts := map[string]bool{}
	indexes := 0
	for _, mt := range ManifestTypes() {
		if mt.NginxExt == "" || exts[mt.NginxExt] {
			t.Errorf("%s: nginx extension %q missing or shared", mt.MediaType, mt.NginxExt)
		}
		exts[mt.NginxExt] = true
		if IsIndex(mt.MediaType) != mt.Index {
			t.Errorf("IsIndex(%s) = %v, the table says %v", mt.MediaType, !mt.Index, mt.Index)
		}
		re := regexp.MustCompile(IndexTypesPattern())
		if got := re.MatchString("application/json, " + mt.MediaType + ";q=0.9"); got != mt.Index {
			t.Errorf("the index pattern matches %s: %v, want %v", mt.MediaType, got, mt.Index)
		}
		if mt.Index {
			indexes++
		}
	}
	if indexes != 2 || !IsIndex(MediaTypeOCIIndex) || !IsIndex(MediaTypeDockerList) || IsIndex(MediaTypeOCIManifest) {
		t.Errorf("%d index types; want the OCI index and the Docker list", indexes)
	}
}
