package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// copyBuffer is the size of the buffer a blob streams through.
const copyBuffer = 1 << 20

// sink receives the members of an archive: a tar stream or a directory.
type sink interface {
	// dir adds a directory.
	dir(name string) error
	// file adds a small file the save made up (a manifest.json, an
	// index.json) or read whole (a manifest, a config).
	file(name string, data []byte) error
	// blob adds a blob of the tree, streamed and checked.
	blob(name string, b blobRef) error
}

// stats counts what a save wrote.
type stats struct {
	Blobs  int   // blobs written (each once)
	Bytes  int64 // their bytes
	Linked int   // of them, hard-linked from the tree rather than copied
}

// epoch is the modification time of every tar member: the same images
// saved twice give the same bytes.
var epoch = time.Unix(0, 0).UTC()

// tarSink writes members as a tar stream.
type tarSink struct {
	ctx   context.Context
	v     *tree.View
	tw    *tar.Writer
	buf   []byte
	stats *stats
}

func newTarSink(ctx context.Context, v *tree.View, w io.Writer, st *stats) *tarSink {
	return &tarSink{ctx: ctx, v: v, tw: tar.NewWriter(w), buf: make([]byte, copyBuffer), stats: st}
}

func (s *tarSink) header(name string, typ byte, mode, size int64) error {
	return s.tw.WriteHeader(&tar.Header{
		Typeflag: typ, Name: name, Mode: mode, Size: size, ModTime: epoch,
		Uname: "root", Gname: "root", Format: tar.FormatPAX,
	})
}

func (s *tarSink) dir(name string) error { return s.header(name+"/", tar.TypeDir, 0o755, 0) }

func (s *tarSink) file(name string, data []byte) error {
	if err := s.header(name, tar.TypeReg, 0o644, int64(len(data))); err != nil {
		return err
	}
	_, err := s.tw.Write(data)
	return err
}

func (s *tarSink) blob(name string, b blobRef) error {
	f, err := openBlob(s.v, b)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := s.header(name, tar.TypeReg, 0o644, b.desc.Size); err != nil {
		return err
	}
	if err := copyChecked(s.ctx, s.tw, f, b, s.buf); err != nil {
		return err
	}
	s.stats.Blobs++
	s.stats.Bytes += b.desc.Size
	return nil
}

// close ends the tar stream (its two zero blocks).
func (s *tarSink) close() error { return s.tw.Close() }

// openBlob opens blob b.desc of b.repo through the View — under its plain
// name, or TripleO's legacy one — and checks that its size is the
// descriptor's, so a tar header written before its bytes tells the truth.
func openBlob(v *tree.View, b blobRef) (*os.File, error) {
	f, _, err := v.OpenBlobFile(b.repo, tree.StoredBlob{Digest: b.desc.Digest})
	if errors.Is(err, fs.ErrNotExist) {
		f, _, err = v.OpenBlobFile(b.repo, tree.StoredBlob{Digest: b.desc.Digest, Legacy: true})
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: missing from %s (run image-serve verify)", b.desc.Digest, b.repo)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s of %s: %w", b.desc.Digest, b.repo, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("blob %s of %s: %w", b.desc.Digest, b.repo, err)
	}
	if st.Size() != b.desc.Size {
		f.Close()
		return nil, fmt.Errorf("blob %s of %s: %d bytes, its descriptor says %d (run image-serve verify)", b.desc.Digest, b.repo, st.Size(), b.desc.Size)
	}
	return f, nil
}

// copyChecked copies exactly b.desc.Size bytes of r to w, hashing them,
// and fails when they do not hash to b.desc.Digest. It stops when ctx is
// done.
func copyChecked(ctx context.Context, w io.Writer, r io.Reader, b blobRef, buf []byte) error {
	h := b.desc.Digest.Algorithm().Hash()
	n, err := io.CopyBuffer(io.MultiWriter(w, h), &ctxReader{ctx, io.LimitReader(r, b.desc.Size)}, buf)
	if err != nil {
		return fmt.Errorf("blob %s of %s: %w", b.desc.Digest, b.repo, err)
	}
	if n != b.desc.Size {
		return fmt.Errorf("blob %s of %s: ended after %d of its %d bytes", b.desc.Digest, b.repo, n, b.desc.Size)
	}
	return checkDigest(h, b.desc.Digest, b.repo)
}

func checkDigest(h hash.Hash, want digest.Digest, repo string) error {
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return fmt.Errorf("blob %s of %s: its bytes hash to %s (run image-serve verify)", want, repo, got)
	}
	return nil
}

// ctxReader is a Reader that stops once its context is done: a SIGINT
// ends a save between two reads.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := context.Cause(c.ctx); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// dirSink writes members as files under a directory.
type dirSink struct {
	ctx   context.Context
	v     *tree.View
	root  string
	buf   []byte
	stats *stats
}

func newDirSink(ctx context.Context, v *tree.View, root string, st *stats) *dirSink {
	return &dirSink{ctx: ctx, v: v, root: root, buf: make([]byte, copyBuffer), stats: st}
}

func (s *dirSink) path(name string) string { return filepath.Join(s.root, filepath.FromSlash(name)) }

func (s *dirSink) dir(name string) error { return os.Mkdir(s.path(name), 0o755) }

func (s *dirSink) file(name string, data []byte) error {
	f, err := os.OpenFile(s.path(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	return syncClose(f, func() error { _, err := f.Write(data); return err }())
}

// blob hard-links the tree's file when it can — the output on the tree's
// file system, and the kernel letting this user link it — and copies it,
// checked, otherwise. The link is made from the open file, through
// /proc/self/fd, so no path of the tree is spelled here and the file
// linked is the one checked for size.
func (s *dirSink) blob(name string, b blobRef) error {
	f, err := openBlob(s.v, b)
	if err != nil {
		return err
	}
	defer f.Close()
	dst := s.path(name)
	if unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, dst, unix.AT_SYMLINK_FOLLOW) == nil {
		s.stats.Blobs++
		s.stats.Linked++
		s.stats.Bytes += b.desc.Size
		return nil
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := syncClose(out, copyChecked(s.ctx, out, f, b, s.buf)); err != nil {
		return err
	}
	s.stats.Blobs++
	s.stats.Bytes += b.desc.Size
	return nil
}

// syncClose closes f after err, the outcome of writing it: when the
// writes succeeded, f is synced first, so the output renamed into place
// later holds every byte after a crash.
func syncClose(f *os.File, err error) error {
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
