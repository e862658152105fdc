package tree

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/opencontainers/go-digest"
)

// fileSource is a FileCopier over bytes: CopyTo writes them to dst, as a
// clone would put them there; unsupported makes the first CopyTo refuse;
// failAt makes a CopyTo fail once that many bytes are copied.
type fileSource struct {
	r           *bytes.Reader
	unsupported bool
	failAt      int64
	copied      int64
	calls       int
}

var errCopy = errors.New("copy failed")

func (s *fileSource) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *fileSource) Close() error               { return nil }

func (s *fileSource) CopyTo(dst *os.File, n int64) (int64, error) {
	s.calls++
	if s.unsupported {
		return 0, errors.ErrUnsupported
	}
	if s.failAt > 0 && s.copied >= s.failAt {
		return 0, errCopy
	}
	k, err := io.CopyN(dst, s.r, n)
	s.copied += k
	if err == io.EOF {
		err = nil
	}
	return k, err
}

// TestPutBlobFileCopier: a blob from a FileCopier is copied by it and
// verified from the temporary file — across several chunks, a last
// partial one, and an empty blob; one that holds more than its declared
// size is cut at the first byte too many and refused, as a read source
// would be; a corrupt one is refused; a source that cannot copy is read
// instead; a copy that fails mid-way fails the blob and leaves nothing.
func TestPutBlobFileCopier(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rand.Uint32())
		}
		return b
	}
	const repo = "ns/app"
	for _, size := range []int{0, 1, fileChunk, 2*fileChunk + 4097} {
		r, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		data := random(size)
		d := digest.FromBytes(data)
		src := &fileSource{r: bytes.NewReader(data)}
		out, n, err := Fixture(r).PutBlob(repo, d, int64(size), false, func() (io.ReadCloser, error) { return src, nil })
		if err != nil || out != BlobFetched || n != int64(size) {
			t.Fatalf("size %d: %v, %d bytes, %v", size, out, n, err)
		}
		if src.calls == 0 {
			t.Errorf("size %d: CopyTo never called", size)
		}
		got, err := os.ReadFile(r.blobPath(repo, d))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("size %d: stored %d bytes (%v), not the blob", size, len(got), err)
		}
	}

	data := random(fileChunk + 10)
	d := digest.FromBytes(data)
	cases := []struct {
		name    string
		src     *fileSource
		size    int64
		d       digest.Digest
		wantErr func(error) bool
	}{
		{"larger than declared", &fileSource{r: bytes.NewReader(data)}, int64(len(data)) - 5, digest.FromBytes(data[:len(data)-5]), func(err error) bool {
			var m *MismatchError
			return errors.As(err, &m) && m.Got == int64(len(data))-4
		}},
		{"corrupt", &fileSource{r: bytes.NewReader(data)}, int64(len(data)), digest.FromString("other"), func(err error) bool {
			var m *MismatchError
			return errors.As(err, &m) && m.GotDigest == d
		}},
		{"fails mid-way", &fileSource{r: bytes.NewReader(data), failAt: fileChunk}, int64(len(data)), d, func(err error) bool { return errors.Is(err, errCopy) }},
		{"unsupported, read instead", &fileSource{r: bytes.NewReader(data), unsupported: true}, int64(len(data)), d, func(err error) bool { return err == nil }},
	}
	for _, c := range cases {
		r, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = Fixture(r).PutBlob(repo, c.d, c.size, false, func() (io.ReadCloser, error) { return c.src, nil })
		if !c.wantErr(err) {
			t.Errorf("%s: %v", c.name, err)
		}
		stored := r.isFile(r.blobPath(repo, c.d))
		if stored != (err == nil) {
			t.Errorf("%s: blob stored %v after error %v", c.name, stored, err)
		}
		if entries, _ := os.ReadDir(r.incomingDir()); len(entries) != 0 {
			t.Errorf("%s: %d files left in incoming", c.name, len(entries))
		}
	}
}
