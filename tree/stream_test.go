package tree

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// TestCopyHashing: whatever the sizes and however the source splits its
// reads, the bytes written and hashed are the source's; a source's error
// (a cut stream's io.ErrUnexpectedEOF above all) and a write error come
// back as they are, with the bytes written before them.
func TestCopyHashing(t *testing.T) {
	readers := map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+err": iotest.DataErrReader,
	}
	for _, size := range []int{0, 1, streamChunk - 1, streamChunk, streamChunk + 1, 3*streamChunk + 5, 7 * streamChunk} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		for name, wrap := range readers {
			if name == "one byte" && size > streamChunk+1 {
				continue // slow, and no different
			}
			t.Run(fmt.Sprintf("%d/%s", size, name), func(t *testing.T) {
				var out bytes.Buffer
				h := sha256.New()
				n, err := copyHashing(&out, h, wrap(bytes.NewReader(data)))
				if err != nil || n != int64(size) || !bytes.Equal(out.Bytes(), data) {
					t.Fatalf("n=%d err=%v, %d bytes out, want %d, nil, the same bytes", n, err, out.Len(), size)
				}
				if want := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), want[:]) {
					t.Fatal("hash differs")
				}
			})
		}
	}
	t.Run("cut stream", func(t *testing.T) {
		data := bytes.Repeat([]byte{7}, streamChunk+100)
		var out bytes.Buffer
		n, err := copyHashing(&out, sha256.New(), io.MultiReader(bytes.NewReader(data), iotest.ErrReader(io.ErrUnexpectedEOF)))
		if !errors.Is(err, io.ErrUnexpectedEOF) || n != int64(len(data)) || out.Len() != len(data) {
			t.Fatalf("n=%d err=%v, want %d and io.ErrUnexpectedEOF", n, err, len(data))
		}
	})
	t.Run("write fails", func(t *testing.T) {
		full := errors.New("no space left on device")
		w := &failAfter{n: streamChunk, err: full}
		n, err := copyHashing(w, sha256.New(), bytes.NewReader(make([]byte, 5*streamChunk)))
		if !errors.Is(err, full) || n != streamChunk {
			t.Fatalf("n=%d err=%v, want %d and the write error", n, err, streamChunk)
		}
	})
}

// failAfter accepts n bytes, then fails every write with err.
type failAfter struct {
	n   int
	err error
}

func (w *failAfter) Write(b []byte) (int, error) {
	if w.n <= 0 {
		return 0, w.err
	}
	w.n -= len(b)
	return len(b), nil
}

// BenchmarkCopyHashing is one blob's stream from a file to a file
// through sha256 (both in the page cache, no fsync), chunked and
// overlapped, against io.Copy to a MultiWriter of the two.
func BenchmarkCopyHashing(b *testing.B) {
	data := make([]byte, 64<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		copy func(io.Writer, io.Reader) error
	}{
		{"overlapped", func(w io.Writer, r io.Reader) error { _, err := copyHashing(w, sha256.New(), r); return err }},
		{"io.Copy", func(w io.Writer, r io.Reader) error {
			_, err := io.Copy(io.MultiWriter(w, sha256.New()), r)
			return err
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				in, err := os.Open(src)
				if err != nil {
					b.Fatal(err)
				}
				out, err := os.Create(filepath.Join(dir, "dst"))
				if err != nil {
					b.Fatal(err)
				}
				if err := bc.copy(out, in); err != nil {
					b.Fatal(err)
				}
				in.Close()
				out.Close()
			}
		})
	}
}

// TestReadSmall: whatever a file's size around the read buffer's and the
// limit, readSmall returns it whole, or refuses it over the limit.
func TestReadSmall(t *testing.T) {
	r := newTree(t)
	const limit = 10000
	for _, size := range []int{0, 1, 4095, 4096, 4097, 8192, limit, limit + 1, 3 * limit} {
		p := filepath.Join(r.v2Dir(), fmt.Sprintf("f%d", size))
		want := bytes.Repeat([]byte{'m'}, size)
		if err := os.WriteFile(p, want, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := r.readSmall(p, limit)
		switch {
		case size > limit && !errors.Is(err, errOverLimit):
			t.Errorf("%d bytes: %v, want over the limit", size, err)
		case size <= limit && (err != nil || !bytes.Equal(got, want)):
			t.Errorf("%d bytes: got %d bytes, %v", size, len(got), err)
		}
	}
}

// TestWriteBehind: a blob file written through writeBehind holds exactly
// the bytes written, across several write-back steps and a partial last
// one; a write error comes back as os.File's own (publishVerified names
// the blob by its *fs.PathError); and a file whose write-back cannot be
// started (a pipe: sync_file_range fails with ESPIPE) is still written,
// with no further attempt.
func TestWriteBehind(t *testing.T) {
	data := make([]byte, 2*writeBehindStep+streamChunk+3)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	path := filepath.Join(t.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &writeBehind{f: f}
	if _, err := copyHashing(w, sha256.New(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := syncAndClose(f); err != nil {
		t.Fatal(err)
	}
	if w.disabled || w.started != 2*writeBehindStep {
		t.Errorf("write-back started for %d bytes (disabled %v), want %d", w.started, w.disabled, 2*writeBehindStep)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("file holds %d bytes, not the %d written", len(got), len(data))
	}

	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var pe *os.PathError
	if _, err := (&writeBehind{f: ro}).Write([]byte("x")); !errors.As(err, &pe) || pe.Path != path {
		t.Errorf("write to a read-only file: %v, want a *PathError naming %s", err, path)
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	go io.Copy(io.Discard, pr)
	wp := &writeBehind{f: pw}
	if _, err := copyHashing(wp, sha256.New(), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if !wp.disabled || wp.written != int64(len(data)) {
		t.Errorf("pipe: disabled %v after %d bytes, want disabled after %d", wp.disabled, wp.written, len(data))
	}
}
