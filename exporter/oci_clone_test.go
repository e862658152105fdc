package exporter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestLayoutBlobCopyTo: a layout's blob file is cloned into the tree's
// file chunk by chunk, a piece that ends off a block boundary before the
// end of the file (a blob larger than declared, cut by the tree) is
// copied, and the end of the file is the end of the blob. Where the file
// system has no reflinks (ext4: run with TMPDIR on XFS or Btrfs to test
// the clones), the first call says so with errors.ErrUnsupported and
// copies nothing. A cancelled export copies nothing more.
func TestLayoutBlobCopyTo(t *testing.T) {
	dir := t.TempDir()
	data := make([]byte, 3<<20+123)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	src := filepath.Join(dir, "blob")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	open := func(ctx context.Context) (*layoutBlob, *os.File) {
		f, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		dst, err := os.CreateTemp(dir, "dst")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dst.Close() })
		return &layoutBlob{ctxReadCloser: ctxReadCloser{ctxReader{ctx, f}, f}, f: f, size: -1}, dst
	}

	b, dst := open(context.Background())
	var got int64
	for _, n := range []int64{1 << 20, 1<<20 + 5, 4 << 20, 4 << 20} {
		k, err := b.CopyTo(dst, n)
		if got == 0 && errors.Is(err, errors.ErrUnsupported) {
			if k != 0 {
				t.Fatalf("unsupported after copying %d bytes", k)
			}
			t.Skipf("no reflinks under %s: %v", dir, err)
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
		if want := min(n, int64(len(data))-got); k != want {
			t.Fatalf("after %d bytes: copied %d of %d asked, want %d", got, k, n, want)
		}
		got += k
	}
	if k, err := b.CopyTo(dst, 1<<20); k != 0 || err != nil {
		t.Errorf("at the end: %d, %v", k, err)
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if out, err := io.ReadAll(dst); err != nil || !bytes.Equal(out, data) {
		t.Errorf("the copy holds %d bytes (%v), not the blob's %d", len(out), err, len(data))
	}

	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stopped")
	cancel(stop)
	b, dst = open(ctx)
	if k, err := b.CopyTo(dst, 1<<20); k != 0 || !errors.Is(err, stop) {
		t.Errorf("cancelled: %d, %v", k, err)
	}
}
