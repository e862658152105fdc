package distribution

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// readerSeeds are manifests whose shapes the readers' tolerances differ
// on: fields of the wrong type where only ParseManifest looks, repeated
// fields (encoding/json merges a repeated object into the first), null
// fields, invalid digests, foreign layers.
var readerSeeds = []string{
	`{"schemaVersion":2,"config":{"digest":"` + dA.String() + `"},"manifests":[{"digest":"` + dB.String() + `"}],"subject":{"digest":"` + dC.String() + `"}}`,
	`{"schemaVersion":"2","mediaType":"m","layers":[{"digest":"` + dA.String() + `","size":"big"}],"subject":{"digest":"` + dB.String() + `"}}`,
	`{"config":{"digest":"` + dA.String() + `"},"config":{"mediaType":"x"},"subject":{"digest":"` + dB.String() + `"},"subject":{"size":1}}`,
	`{"mediaType":"a","mediaType":null,"artifactType":"t","annotations":{"a":"1"},"annotations":{"b":"2"},"subject":{"digest":"` + dC.String() + `"}}`,
	`{"artifactType":1,"config":[],"annotations":{"a":1},"subject":{"mediaType":5,"digest":"` + dA.String() + `"}}`,
	`{"subject":{"digest":"md5:00"},"layers":[{"digest":"sha256:zz"}]}`,
	`{"subject":null,"fsLayers":[{"blobSum":"` + dA.String() + `"}],"schemaVersion":1,"signatures":[{}]}`,
	`{"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` + dB.String() + `"}]}`,
	`{"Subject":{"DIGEST":"` + dA.String() + `"},"MEDIATYPE":"x"}`,
	`null`, `[1]`, `"s"`, `{`, ``,
}

// FuzzReaders: whatever the bytes, the three readers of a manifest agree
// where their tolerances overlap — what ParseReferences names is what
// ParseManifest sees, the subject ReferrerOf finds is the one the others
// find, ReferrerOf finds a subject wherever ParseManifest does — and
// ParseReferences answers as it did (parseReferencesBefore), errors
// included.
func FuzzReaders(f *testing.F) {
	for _, s := range readerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := digest.FromBytes(raw)
		m, errM := ParseManifest(raw)
		r, errR := ParseReferences(raw)
		s, rd := ReferrerOf(raw, d, "")

		// ParseReferences as it was before it spelt field names only for
		// errors: the same answers, the same error texts.
		rB, errRB := parseReferencesBefore(raw)
		if fmt.Sprint(errR) != fmt.Sprint(errRB) || !reflect.DeepEqual(r, rB) {
			t.Fatalf("ParseReferences = %+v, %v; before %+v, %v", r, errR, rB, errRB)
		}

		// The readers with each other.
		if errR != nil && r != nil {
			t.Fatalf("ParseReferences failed with a result: %v", errR)
		}
		if errM == nil && errR == nil {
			var blobs, children []digest.Digest
			named := func(to *[]digest.Digest, d *Descriptor) {
				if d != nil && d.Digest != "" && !IsForeign(d.MediaType) {
					*to = append(*to, d.Digest)
				}
			}
			named(&blobs, m.Config)
			for i := range m.Layers {
				named(&blobs, &m.Layers[i])
			}
			for i := range m.Blobs {
				named(&blobs, &m.Blobs[i])
			}
			for _, l := range m.FSLayers {
				named(&blobs, &Descriptor{Digest: l.BlobSum})
			}
			for i := range m.Manifests {
				named(&children, &m.Manifests[i])
			}
			if !slices.Equal(r.Blobs, blobs) || !slices.Equal(r.Children, children) || r.MediaType != m.MediaType {
				t.Fatalf("ParseReferences %+v; ParseManifest names blobs %v, children %v, type %q", r, blobs, children, m.MediaType)
			}
			if m.Subject != nil && r.Subject != m.Subject.Digest || m.Subject == nil && r.Subject != "" {
				t.Fatalf("ParseReferences subject %q; ParseManifest's %+v", r.Subject, m.Subject)
			}
		}
		if errR == nil && s != r.Subject {
			t.Fatalf("ReferrerOf subject %q; ParseReferences %q", s, r.Subject)
		}
		if errM == nil {
			want := digest.Digest("")
			if m.Subject != nil && ValidateDigest(m.Subject.Digest) == nil {
				want = m.Subject.Digest
			}
			if s != want {
				t.Fatalf("ReferrerOf subject %q; ParseManifest's %+v", s, m.Subject)
			}
		}
		if s != "" && (rd.Digest != d || rd.Size != int64(len(raw))) {
			t.Fatalf("entry %+v for %s of %d bytes", rd, d, len(raw))
		}
		if s == "" && !reflect.DeepEqual(rd, ReferrerDescriptor{}) {
			t.Fatalf("entry %+v without a subject", rd)
		}
	})
}

// parseReferencesBefore is ParseReferences as it was, verbatim, before it
// spelt a field's name only for an error: FuzzReaders holds it to this.
func parseReferencesBefore(raw []byte) (*References, error) {
	var m rawRefs
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	out := &References{MediaType: m.MediaType}
	add := func(to *[]digest.Digest, field string, d refDescriptor) error {
		if d.Digest == "" {
			return nil
		}
		if err := ValidateDigest(d.Digest); err != nil {
			return fmt.Errorf("%s: %v", field, err)
		}
		if !IsForeign(d.MediaType) {
			*to = append(*to, d.Digest)
		}
		return nil
	}
	if m.Config != nil {
		if err := add(&out.Blobs, "config", *m.Config); err != nil {
			return nil, err
		}
	}
	for _, set := range []struct {
		field string
		ds    []refDescriptor
		to    *[]digest.Digest
	}{{"layers", m.Layers, &out.Blobs}, {"blobs", m.Blobs, &out.Blobs}, {"manifests", m.Manifests, &out.Children}} {
		for i, d := range set.ds {
			if err := add(set.to, fmt.Sprintf("%s[%d]", set.field, i), d); err != nil {
				return nil, err
			}
		}
	}
	for i, l := range m.FSLayers {
		if err := add(&out.Blobs, fmt.Sprintf("fsLayers[%d]", i), refDescriptor{Digest: l.BlobSum}); err != nil {
			return nil, err
		}
	}
	if m.Subject != nil && m.Subject.Digest != "" {
		if err := ValidateDigest(m.Subject.Digest); err != nil {
			return nil, fmt.Errorf("subject: %v", err)
		}
		out.Subject = m.Subject.Digest
	}
	return out, nil
}

// TestProjections: rawRefs and referrerFields are projections of
// Manifest — each field has Manifest's JSON name and type (a descriptor's
// fields Descriptor's; a raw field is read later, by its own type) — and
// rawRefs has every field of Manifest that names content, so that gc
// marks all of it.
func TestProjections(t *testing.T) {
	fields := func(typ reflect.Type) map[string]reflect.Type {
		out := map[string]reflect.Type{}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			out[name] = f.Type
		}
		return out
	}
	manifest, descriptor := fields(reflect.TypeFor[Manifest]()), fields(reflect.TypeFor[Descriptor]())
	raw := reflect.TypeFor[json.RawMessage]()
	// same reports whether a projection's field type p reads what
	// Manifest's type m does: the same type, or a descriptor (behind the
	// same pointer or slice) whose fields are Descriptor's.
	var same func(p, m reflect.Type) bool
	same = func(p, m reflect.Type) bool {
		switch {
		case p == m:
			return true
		case p.Kind() != m.Kind():
			return false
		case p.Kind() == reflect.Pointer || p.Kind() == reflect.Slice:
			return same(p.Elem(), m.Elem())
		case p.Kind() == reflect.Struct && m == reflect.TypeFor[Descriptor]():
			for name, ft := range fields(p) {
				if descriptor[name] != ft {
					t.Errorf("descriptor field %q: %v, Descriptor's is %v", name, ft, descriptor[name])
				}
			}
			return true
		}
		return false
	}
	for _, projection := range []reflect.Type{reflect.TypeFor[rawRefs](), reflect.TypeFor[referrerFields]()} {
		for name, ft := range fields(projection) {
			mt, ok := manifest[name]
			switch {
			case !ok:
				t.Errorf("%v.%s: Manifest has no such field", projection, name)
			case ft != raw && !same(ft, mt):
				t.Errorf("%v.%s is %v, Manifest's is %v", projection, name, ft, mt)
			}
		}
	}
	refs := fields(reflect.TypeFor[rawRefs]())
	for name, mt := range manifest {
		names := mt == reflect.TypeFor[*Descriptor]() || mt == reflect.TypeFor[[]Descriptor]() || name == "fsLayers"
		if _, ok := refs[name]; names && !ok {
			t.Errorf("Manifest.%s names content; ParseReferences does not read it", name)
		}
	}
}
