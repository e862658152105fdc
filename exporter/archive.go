package exporter

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Archives and layouts may be hostile: a small tar can describe huge
// sparse files, a layout can hold a FIFO where a blob should be, and a
// signal must stop whatever is being read. These helpers hold the line
// for oci:, oci-archive: and docker-archive: sources alike.

// maxGzipRatio bounds how much a gzipped docker-archive may decompress to,
// as a multiple of its size on disk: docker save output (layers as plain
// tars) compresses a few times, a gzip bomb a thousand.
const maxGzipRatio = 100

// maxArchiveEntries bounds the entries of an archive: docker save of a
// hundred images of forty layers is a few thousand, and every entry read
// costs memory (the docker-archive index) or a file (oci-archive). A
// million empty entries in a 9.5 MB gzip took 917 MB before this bound.
const maxArchiveEntries = 50_000

// checkEntryCount refuses the entry at ord (counted from 0) once an
// archive has more than maxArchiveEntries.
func checkEntryCount(ord int) error {
	if ord >= maxArchiveEntries {
		return fmt.Errorf("over %d entries, the limit of an image archive", maxArchiveEntries)
	}
	return nil
}

// checkTarEntry refuses what no image archive holds and what makes a
// small archive expand without bound: sparse files (archive/tar fills
// their holes with zeros, so a 30 KiB archive unpacks to gigabytes),
// FIFOs and devices.
func checkTarEntry(h *tar.Header) error {
	if h.Typeflag == tar.TypeGNUSparse {
		return fmt.Errorf("entry %q is a sparse file, which no image archive holds", h.Name)
	}
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return fmt.Errorf("entry %q is a sparse file, which no image archive holds", h.Name)
		}
	}
	switch h.Typeflag {
	case tar.TypeFifo, tar.TypeChar, tar.TypeBlock:
		return fmt.Errorf("entry %q is a %s, not a regular file", h.Name, tarTypeName(h.Typeflag))
	}
	return nil
}

func tarTypeName(t byte) string {
	switch t {
	case tar.TypeFifo:
		return "FIFO"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// openRegular opens path for reading only if it is a regular file: a FIFO
// planted where a blob or an archive should be would block the export
// forever (open(2) of a FIFO waits for a writer, so it is opened
// non-blocking and checked before anything is read).
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkRegular refuses an open file that is not a regular file.
func checkRegular(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return &notRegularError{f.Name(), fi.Mode()}
	}
	return nil
}

// notRegularError is a file that is a FIFO, a device, a socket or a
// directory where content was expected.
type notRegularError struct {
	path string
	mode os.FileMode
}

func (e *notRegularError) Error() string {
	kind := "special file"
	switch {
	case e.mode&os.ModeNamedPipe != 0:
		kind = "FIFO"
	case e.mode&os.ModeDevice != 0:
		kind = "device"
	case e.mode&os.ModeSocket != 0:
		kind = "socket"
	case e.mode.IsDir():
		kind = "directory"
	}
	return fmt.Sprintf("%s is a %s, not a regular file", e.path, kind)
}

// ctxReader reads r until ctx is done, then fails with its cause: an
// interrupted export reads no further from a file or an archive.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// ctxReadCloser is a ctxReader that closes what it reads.
type ctxReadCloser struct {
	ctxReader
	io.Closer
}

func withContext(ctx context.Context, rc io.ReadCloser) io.ReadCloser {
	return ctxReadCloser{ctxReader{ctx, rc}, rc}
}

// boundedReader fails once more than limit bytes have been read: what a
// decompressor may produce from a small file. The caller names the file.
type boundedReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("decompresses to more than %d bytes (%d times its size), refusing", b.limit, maxGzipRatio)
	}
	return n, err
}
