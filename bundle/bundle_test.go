package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// content is a test bundle's member bytes by digest.
type content map[digest.Digest][]byte

func (c content) open(m Member) (io.ReadCloser, error) {
	b, ok := c[m.Digest]
	if !ok {
		return nil, errors.New("no such content")
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// testBundle is a descriptor of one tag: a manifest, a config and n
// layers of the given sizes, and one needed blob.
func testBundle(t testing.TB, sizes ...int) (*Descriptor, content) {
	t.Helper()
	c := content{}
	add := func(kind, mt string, b []byte) Member {
		d := digest.FromBytes(b)
		c[d] = b
		return Member{Kind: kind, Digest: d, Size: int64(len(b)), MediaType: mt}
	}
	var members []Member
	man := add(KindManifest, "application/vnd.oci.image.manifest.v1+json", []byte(`{"schemaVersion":2}`))
	members = append(members, man, add(KindConfig, "", []byte(`{"architecture":"amd64"}`)))
	for i, n := range sizes {
		b := bytes.Repeat([]byte{byte('a' + i)}, n)
		members = append(members, add(KindBlob, "", b))
	}
	d := &Descriptor{Format: Format, Version: Version,
		Tags:    []Tag{{Repo: "ns/app", Tag: "v1", Digest: man.Digest, MediaType: man.MediaType}},
		Members: members,
		Needed:  []Needed{{Digest: digest.FromString("base"), Size: 4}},
	}
	for _, m := range members {
		d.Bytes.Members += m.Size
	}
	d.Bytes.Needed = 4
	d.Bytes.Images = d.Bytes.Members + 4
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	return d, c
}

func whole(t testing.TB, d *Descriptor, c content) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := Write(&buf, d, c.open)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("Write says %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

type closer struct{ *bytes.Buffer }

func (closer) Close() error { return nil }

func split(t testing.TB, d *Descriptor, c content, size int64) [][]byte {
	t.Helper()
	parts, err := PlanParts(d, size, false)
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([]*bytes.Buffer, len(parts))
	if _, err := WriteParts(d, parts, func(n, count int) (io.WriteCloser, error) {
		bufs[n-1] = &bytes.Buffer{}
		return closer{bufs[n-1]}, nil
	}, c.open); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i, b := range bufs {
		if int64(b.Len()) > parts[i].Size {
			t.Errorf("part %d: %d bytes, planned at most %d", i+1, b.Len(), parts[i].Size)
		}
		out = append(out, b.Bytes())
	}
	return out
}

// readAll reads every member, checking each, and returns them in order.
func readAll(srcs []Source) ([]Member, error) {
	r, err := Open(srcs)
	if err != nil {
		return nil, err
	}
	var got []Member
	for {
		m, body, err := r.Next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return got, err
		}
		got = append(got, m)
	}
}

func sources(bs ...[]byte) []Source {
	var out []Source
	for i, b := range bs {
		out = append(out, Source{Name: fmt.Sprintf("in%d", i), R: bytes.NewReader(b)})
	}
	return out
}

func TestWholeRoundTrip(t *testing.T) {
	d, c := testBundle(t, 3000, 10, 700)
	b := whole(t, d, c)
	got, err := readAll(sources(b))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(d.Members) {
		t.Fatalf("read %d members, want %d", len(got), len(d.Members))
	}
	// A tar of 512-byte blocks: the overhead is a header a member and
	// padding, well under a few KiB here.
	if over := int64(len(b)) - d.Bytes.Members; over > 8<<10 {
		t.Errorf("bundle of %d bytes carries %d of members: %d bytes of overhead", len(b), d.Bytes.Members, over)
	}
}

func TestPartsAnyOrder(t *testing.T) {
	d, c := testBundle(t, 3000, 10, 2500, 100, 1200)
	parts := split(t, d, c, 5000)
	if len(parts) < 3 {
		t.Fatalf("%d parts, want several", len(parts))
	}
	for range 5 {
		shuffled := append([][]byte(nil), parts...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if _, err := readAll(sources(shuffled...)); err != nil {
			t.Fatal(err)
		}
	}
	// Concatenated in order, on one stream.
	if _, err := readAll(sources(bytes.Join(parts, nil))); err != nil {
		t.Fatal(err)
	}
}

func TestStrictSize(t *testing.T) {
	d, _ := testBundle(t, 3000, 10, 9000)
	if _, err := PlanParts(d, 5000, true); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("strict: got %v, want ErrTooLarge", err)
	}
	parts, err := PlanParts(d, 5000, false)
	if err != nil {
		t.Fatal(err)
	}
	if last := parts[len(parts)-1]; len(last.Members) != 1 || last.Size <= 5000 {
		t.Fatalf("the 9000-byte blob should have an oversize part of its own: %+v", parts)
	}
}

func TestBadBundles(t *testing.T) {
	d, c := testBundle(t, 3000, 10, 2500, 100)
	b := whole(t, d, c)
	parts := split(t, d, c, 4000)
	d2, c2 := testBundle(t, 3001, 10, 2500, 100)
	other := split(t, d2, c2, 4000)
	if len(parts) != len(other) {
		t.Fatalf("want as many parts of both bundles: %d, %d", len(parts), len(other))
	}
	var foreign bytes.Buffer
	tw := tar.NewWriter(&foreign)
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Size: 2, Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Write([]byte("[]"))
	tw.Close()
	corrupt := bytes.Clone(b)
	i := bytes.LastIndex(corrupt, bytes.Repeat([]byte{'c'}, 2500))
	corrupt[i+100] = 'X'
	newVersion := bytes.Replace(b, []byte(`"version":1`), []byte(`"version":9`), 1)
	for _, tc := range []struct {
		name string
		srcs []Source
		want string
	}{
		{"truncated bundle", sources(b[:len(b)-3000]), "truncated"},
		{"truncated at a header", sources(b[:1536]), "truncated"},
		{"truncated part", sources(with(parts, 1, parts[1][:len(parts[1])-2000])...), "truncated"},
		{"missing part", sources(with(parts, 1, nil)...), "part 2 missing"},
		{"missing part on a stream", sources(bytes.Join(parts[:2], nil)), "part 3 missing"},
		{"part of another bundle", sources(with(parts, 1, other[1])...), "not of bundle"},
		{"part of another bundle on a stream", sources(bytes.Join([][]byte{parts[0], other[1]}, nil)), "of bundle"},
		{"parts out of order on a stream", sources(bytes.Join([][]byte{parts[0], parts[2], parts[1]}, nil)), "in order"},
		{"part twice", sources(parts[0], parts[1], parts[1]), "both part 2"},
		{"foreign tar", sources(foreign.Bytes()), "not an image-serve bundle"},
		{"not a tar", sources([]byte(strings.Repeat("hello ", 200))), "not an image-serve bundle"},
		{"member not matching its digest", sources(corrupt), "does not match its digest"},
		{"unknown version", sources(newVersion), "unknown bundle format version 9"},
		{"whole bundle among parts", sources(b, parts[1]), "whole bundle"},
		{"bytes after the end", sources(bytes.Join([][]byte{b[:len(b)-1024], foreignMember(t)}, nil)), "after the last one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(tc.srcs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is more than one line: %q", err)
			}
		})
	}
}

// with is parts with part i replaced by p, or left out when p is nil.
func with(parts [][]byte, i int, p []byte) [][]byte {
	out := append([][]byte(nil), parts[:i]...)
	if p != nil {
		out = append(out, p)
	}
	return append(out, parts[i+1:]...)
}

// foreignMember is a tar of one member no bundle lists.
func foreignMember(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "extra", Size: 1, Mode: 0o644, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	return buf.Bytes()
}

func TestVerify(t *testing.T) {
	d, c := testBundle(t, 3000, 10)
	b := whole(t, d, c)
	for _, tc := range []struct {
		b    []byte
		want string
	}{
		{b, ""},
		{b[:len(b)-2000], "truncated"},
		{bytes.Replace(b, bytes.Repeat([]byte{'a'}, 100), bytes.Repeat([]byte{'b'}, 100), 1), "does not match its digest"},
	} {
		r, err := Open(sources(tc.b))
		if err != nil {
			t.Fatal(err)
		}
		err = r.Verify()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Verify: got %v, want %q", err, tc.want)
		}
	}
}

func TestWriteRefusesCorruptContent(t *testing.T) {
	d, c := testBundle(t, 100)
	c[d.Members[2].Digest] = bytes.Repeat([]byte{'z'}, 100)
	if _, err := Write(io.Discard, d, c.open); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("got %v", err)
	}
}

func TestInventoryRoundTrip(t *testing.T) {
	var blobs []digest.Digest
	for i := range 1000 {
		blobs = append(blobs, digest.FromString(fmt.Sprint(i)))
	}
	inv := NewInventory(append(blobs, blobs[0], "sha512:"+digest.Digest(strings.Repeat("ab", 64))), []digest.Digest{digest.FromString("m")})
	var buf bytes.Buffer
	if _, err := inv.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 1000*32+200 {
		t.Errorf("inventory of 1001 digests: %d bytes", buf.Len())
	}
	got, err := ReadInventory(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Blobs) != 1000 || !got.HasBlob(blobs[7]) || !got.HasManifest(digest.FromString("m")) || got.HasBlob(digest.FromString("m")) {
		t.Fatalf("read back %d blobs; lookups wrong", len(got.Blobs))
	}
	raw := buf.Bytes()
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", raw[:len(raw)-100], "truncated"},
		{"flipped bit", flip(raw, 200), "checksum"},
		{"other version", bytes.Replace(raw, []byte("inventory 1"), []byte("inventory 2"), 1), "version"},
		{"not one", []byte("hello\n"), "not an image-serve inventory"},
		{"huge count", []byte("image-serve inventory 1\nblobs 99999999999\n"), "over the limit"},
		{"trailing bytes", append(bytes.Clone(raw), 'x'), "after its checksum"},
	} {
		if _, err := ReadInventory(bytes.NewReader(tc.b)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 1
	return b
}

// TestUnhashed: a member whose check its reader takes over (Unhashed) is
// not hashed — wrong bytes pass, for the caller to refuse — but a cut one
// still fails; a body already read from stays hashed, and so does every
// other member.
func TestUnhashed(t *testing.T) {
	d, c := testBundle(t, 3000, 10)
	b := whole(t, d, c)
	corrupt := bytes.Replace(b, bytes.Repeat([]byte{'a'}, 100), bytes.Repeat([]byte{'b'}, 100), 1)
	layer := d.Members[2] // the 3000 bytes of 'a'
	read := func(raw []byte, unhash func(r *Reader, body io.Reader) io.Reader) ([]byte, error) {
		r, err := Open(sources(raw))
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for {
			m, body, err := r.Next()
			if err == io.EOF {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			if m.Digest == layer.Digest {
				body = unhash(r, body)
			}
			bs, err := io.ReadAll(body)
			if err != nil {
				return got, err
			}
			if m.Digest == layer.Digest {
				got = bs
			}
		}
	}
	unhashed := func(r *Reader, _ io.Reader) io.Reader { return r.Unhashed() }
	got, err := read(corrupt, unhashed)
	if err != nil || digest.FromBytes(got) == layer.Digest || len(got) != int(layer.Size) {
		t.Errorf("unhashed, corrupt: %v, %d bytes", err, len(got))
	}
	if _, err := read(b[:len(b)-2500], unhashed); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("unhashed, cut: %v, want truncated", err)
	}
	// Started before Unhashed: the check stays.
	started := func(r *Reader, body io.Reader) io.Reader {
		first := make([]byte, 10)
		if _, err := io.ReadFull(body, first); err != nil {
			t.Fatal(err)
		}
		return io.MultiReader(bytes.NewReader(first), r.Unhashed())
	}
	if _, err := read(corrupt, started); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("unhashed after a read: %v, want the mismatch", err)
	}
	// Another member, corrupt, still fails.
	other := bytes.Replace(b, bytes.Repeat([]byte{'b'}, 10), bytes.Repeat([]byte{'c'}, 10), 1)
	if _, err := read(other, unhashed); err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("another member corrupt: %v, want the mismatch", err)
	}
	r, err := Open(sources(b))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, r.Unhashed()); n != 0 || err != nil {
		t.Errorf("Unhashed before Next: %d bytes, %v", n, err)
	}
}
