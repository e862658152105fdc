package imagefs

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// generatedLayer streams a tar of files files of size bytes each, made as
// it is read: the benchmark holds no layer in memory either.
func generatedLayer(b *testing.B, files int, size int64) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		for i := range files {
			if err := tw.WriteHeader(&tar.Header{Name: "data/" + string(rune('a'+i%26)) + "/" + itoa(i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.CopyN(tw, zeros{}, size); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(tw.Close())
	}()
	return pr
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// BenchmarkFlattenLayer reads one large generated layer and applies it:
// the allocations per operation follow the number of entries, never the
// bytes (compare the two sizes' B/op at the same file count), which is
// what keeps a command's RSS flat whatever the layer size.
func BenchmarkFlattenLayer(b *testing.B) {
	for _, c := range []struct {
		name  string
		files int
		size  int64
	}{
		{"64MiB-in-64-files", 64, 1 << 20},
		{"1GiB-in-64-files", 64, 16 << 20},
		{"64MiB-in-65536-files", 65536, 1 << 10},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(c.files) * c.size)
			for b.Loop() {
				r := generatedLayer(b, c.files, c.size)
				es, err := List(r)
				r.Close()
				if err != nil {
					b.Fatal(err)
				}
				if err := New().Apply(es); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// gzipLayer is a gzip layer of files files of size bytes each, of text
// that compresses about as real layers do (3× to 4×): inflating it is
// real work, as it is for a real layer.
func gzipLayer(b *testing.B, files int, size int64) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	rnd := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("the quick brown fox jumps over a lazy dog while layers of images keep their files in tar streams compressed with gzip zstd or xz 0123456789")
	content := make([]byte, 0, size)
	for i := range files {
		content = content[:0]
		for int64(len(content)) < size {
			content = append(content, words[rnd.IntN(len(words))]...)
			content = append(content, " \n"[rnd.IntN(2)], byte('A'+rnd.IntN(26)))
		}
		content = content[:size]
		if err := tw.WriteHeader(&tar.Header{Name: "data/" + string(rune('a'+i%26)) + "/" + itoa(i), Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(content); err != nil {
			b.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkListGzipLayer decompresses and lists a gzip layer: the cold
// read of files, inflate, tar parse and sha256 of every file.
func BenchmarkListGzipLayer(b *testing.B) {
	for _, c := range []struct {
		name  string
		files int
		size  int64
	}{
		{"64MiB-in-64-files", 64, 1 << 20},
		{"64MiB-in-16384-files", 16384, 4 << 10},
	} {
		layer := gzipLayer(b, c.files, c.size)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(c.files) * c.size)
			for b.Loop() {
				rc, _, err := Decompress(bytes.NewReader(layer), "", int64(len(layer)), Options{})
				if err != nil {
					b.Fatal(err)
				}
				_, err = List(rc)
				rc.Close()
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchList is an entry list of 26,000 entries, the size of a 1 GiB
// layer's.
func benchList() []Entry {
	es := make([]Entry, 26000)
	for i := range es {
		es[i] = Entry{Path: "usr/share/doc/" + itoa(i%300) + "/" + itoa(i), Type: File, Size: int64(i), Mode: 0o644,
			MTime: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Seq: i}
	}
	return es
}

// BenchmarkEncodeList encodes the list a cold files stores, against
// json.Marshal of it.
func BenchmarkEncodeList(b *testing.B) {
	es := benchList()
	for _, c := range []struct {
		name string
		fn   func([]Entry) ([]byte, error)
	}{{"EncodeList", EncodeList}, {"json.Marshal", func(es []Entry) ([]byte, error) { return json.Marshal(es) }}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.fn(es); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeList decodes a cached entry list of 26,000 entries (the
// size of a 1 GiB layer's): the cached read of files.
func BenchmarkDecodeList(b *testing.B) {
	list, err := EncodeList(benchList())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(list)))
	for b.Loop() {
		if _, err := DecodeList(list); err != nil {
			b.Fatal(err)
		}
	}
}
