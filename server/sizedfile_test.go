package server

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestSizedFile: a sizedFile reads and seeks as the file itself would
// (bytes.Reader over its contents is the reference), the seeks ServeContent
// makes for a whole body and for ranges included, without moving the
// file's own offset.
func TestSizedFile(t *testing.T) {
	data := []byte("0123456789abcdefghij")
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := &sizedFile{f: f, size: int64(len(data))}
	ref := bytes.NewReader(data)
	type op struct {
		offset int64
		whence int
		read   int // bytes to read after the seek; -1: to the end
	}
	for _, o := range []op{
		{0, io.SeekEnd, 0}, {0, io.SeekStart, -1}, // a whole body
		{5, io.SeekStart, 4}, {2, io.SeekCurrent, 3}, // ranges
		{-3, io.SeekEnd, -1}, {25, io.SeekStart, 1}, // the tail, past the end
		{-1, io.SeekStart, 0}, // refused
	} {
		got, gerr := s.Seek(o.offset, o.whence)
		want, werr := ref.Seek(o.offset, o.whence)
		if got != want && werr == nil || (gerr == nil) != (werr == nil) {
			t.Fatalf("Seek(%d, %d) = %d, %v; want %d, %v", o.offset, o.whence, got, gerr, want, werr)
		}
		if werr != nil {
			continue
		}
		var gb, wb []byte
		if o.read < 0 {
			gb, gerr = io.ReadAll(s)
			wb, werr = io.ReadAll(ref)
		} else {
			gb, wb = make([]byte, o.read), make([]byte, o.read)
			var gn, wn int
			gn, gerr = io.ReadFull(s, gb)
			wn, werr = io.ReadFull(ref, wb)
			gb, wb = gb[:gn], wb[:wn]
		}
		if !bytes.Equal(gb, wb) || (gerr == nil) != (werr == nil) {
			t.Fatalf("after Seek(%d, %d): read %q, %v; want %q, %v", o.offset, o.whence, gb, gerr, wb, werr)
		}
	}
	if pos, err := f.Seek(0, io.SeekCurrent); err != nil || pos != 0 {
		t.Errorf("the file's own offset moved to %d (%v)", pos, err)
	}
}
