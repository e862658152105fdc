package imagefs

import (
	"archive/tar"
	"io"
	"testing"
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
