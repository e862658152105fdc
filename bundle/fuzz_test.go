package bundle

import (
	"bytes"
	"io"
	"testing"
)

func FuzzReadInventory(f *testing.F) {
	var buf bytes.Buffer
	NewInventory(nil, nil).WriteTo(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte("image-serve inventory 1\nblobs 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := ReadInventory(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if _, err := inv.WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("an inventory read does not write back the same: %v", err)
		}
	})
}

func FuzzParseDescriptor(f *testing.F) {
	d, _ := testBundle(f, 10)
	raw, _ := d.Encode()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDescriptor(b)
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("parsed but invalid: %v", err)
		}
	})
}

func FuzzOpen(f *testing.F) {
	d, c := testBundle(f, 600, 10)
	f.Add(whole(f, d, c))
	for _, p := range split(f, d, c, 2000) {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Open(sources(b))
		if err != nil {
			return
		}
		for range len(r.Descriptor().Members) + 2 {
			_, body, err := r.Next()
			if err != nil {
				return
			}
			io.Copy(io.Discard, body)
		}
		t.Fatal("Next went on past the descriptor's members")
	})
}
