package exporter

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ociLayout reads an OCI image layout directory (oci:DIR[:REF]).
type ociLayout struct {
	root    *os.Root // every file is opened through it, so none leads outside
	label   string   // how errors name the source
	image   Descriptor
	cleanup func() error
}

// annotationRefName is how a layout's index.json names its images.
const annotationRefName = "org.opencontainers.image.ref.name"

type ociIndexEntry struct {
	Descriptor
	Annotations map[string]string `json:"annotations,omitempty"`
}

// openOCILayout opens dir and finds image ref ("" when the layout holds one
// image). It also returns the image's name as the layout records it.
func openOCILayout(dir, ref, label string) (*ociLayout, string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", label, err)
	}
	if _, err := root.Stat(ociLayoutFile); err != nil {
		root.Close()
		return nil, "", fmt.Errorf("%s: not an OCI layout (no oci-layout file)", label)
	}
	l := &ociLayout{root: root, label: label}
	raw, err := l.readFile(ociIndexFile, tree.MaxManifestSize)
	if err != nil {
		root.Close()
		return nil, "", err
	}
	var idx struct {
		Manifests []ociIndexEntry `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		root.Close()
		return nil, "", fmt.Errorf("%s: index.json: %v", label, err)
	}
	e, err := pickOCIImage(idx.Manifests, ref, label)
	if err != nil {
		root.Close()
		return nil, "", err
	}
	l.image = e.Descriptor
	return l, e.Annotations[annotationRefName], nil
}

func pickOCIImage(entries []ociIndexEntry, ref, label string) (ociIndexEntry, error) {
	var names []string
	for _, e := range entries {
		n := e.Annotations[annotationRefName]
		if ref != "" && n == ref {
			return e, nil
		}
		names = append(names, fmt.Sprintf("%q", n))
	}
	switch {
	case ref == "" && len(entries) == 1:
		return entries[0], nil
	case len(entries) == 0:
		return ociIndexEntry{}, fmt.Errorf("%s: the layout holds no image", label)
	case ref == "":
		return ociIndexEntry{}, fmt.Errorf("%s: the layout holds %d images (%s): name one as oci:DIR:REF", label, len(entries), strings.Join(names, ", "))
	default:
		return ociIndexEntry{}, fmt.Errorf("%s: no image named %q in the layout (it holds %s)", label, ref, strings.Join(names, ", "))
	}
}

// open opens a file of the layout for reading, refusing a symlink that
// leads outside it — an untrusted layout must not make us publish
// /etc/shadow as a blob — and anything but a regular file.
func (l *ociLayout) open(rel string) (*os.File, error) {
	f, err := l.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if tree.EscapesRoot(err) {
		if target, lerr := l.root.Readlink(rel); lerr == nil {
			return nil, fmt.Errorf("%s: %s is a symlink to %s, outside the layout", l.label, rel, target)
		}
		return nil, fmt.Errorf("%s: %s leads outside the layout", l.label, rel)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.label, err)
	}
	if err := checkRegular(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", l.label, err)
	}
	return f, nil
}

func (l *ociLayout) readFile(rel string, max int64) ([]byte, error) {
	f, err := l.open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", l.label, rel, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %s: over the %d byte limit", l.label, rel, max)
	}
	return b, nil
}

func blobRel(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("invalid digest %q: %v", d, err)
	}
	return filepath.Join("blobs", d.Algorithm().String(), d.Encoded()), nil
}

func (l *ociLayout) Root(ctx context.Context) ([]byte, string, error) {
	b, err := l.Manifest(ctx, l.image)
	if err != nil {
		return nil, "", err
	}
	if got := l.image.Digest.Algorithm().FromBytes(b); got != l.image.Digest {
		return nil, "", fmt.Errorf("%s: manifest %s: content does not match its digest (got %s)", l.label, l.image.Digest, got)
	}
	return b, l.image.MediaType, nil
}

func (l *ociLayout) Manifest(_ context.Context, d Descriptor) ([]byte, error) {
	rel, err := blobRel(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.label, err)
	}
	return l.readFile(rel, tree.MaxManifestSize)
}

func (l *ociLayout) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	rel, err := blobRel(d.Digest)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.label, err)
	}
	f, err := l.open(rel)
	if err != nil {
		return nil, err
	}
	return &layoutBlob{ctxReadCloser: ctxReadCloser{ctxReader{ctx, f}, f}, f: f, size: -1}, nil
}

// layoutBlob is a blob file of a layout, read until ctx is done, which
// the tree may also clone from (tree.FileCopier).
type layoutBlob struct {
	ctxReadCloser
	f     *os.File
	off   int64 // bytes cloned so far
	size  int64 // the file's size when the first clone was asked for; -1 before
	block int64 // its file system's block size, which clones are aligned to
}

// CopyTo clones the next n bytes of the blob into dst (FICLONERANGE): on
// a file system with reflinks (XFS, Btrfs) the two files then share
// those blocks, so nothing is copied, nor written back, nor flushed by
// the fsync that publishes the blob (the tree then hashes what dst
// holds). Without reflinks (ext4, another file system than dst's)
// the first call fails with errors.ErrUnsupported and the tree reads the
// blob instead: copy_file_range, which would copy there, measured no
// cheaper than that read, whose buffer the hash reads while still in the
// CPU's cache (bench/PROFILES.md, issue 25).
func (b *layoutBlob) CopyTo(dst *os.File, n int64) (int64, error) {
	if b.ctx.Err() != nil {
		return 0, context.Cause(b.ctx)
	}
	if b.size < 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(b.f.Fd()), &st); err != nil {
			return 0, &fs.PathError{Op: "fstat", Path: b.f.Name(), Err: err}
		}
		b.size, b.block = st.Size, max(int64(st.Blksize), 1)
	}
	k := min(n, b.size-b.off)
	if k <= 0 {
		return 0, nil
	}
	at, err := dst.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if b.off%b.block != 0 || at%b.block != 0 || b.off+k < b.size && k%b.block != 0 {
		// A clone starts on block boundaries and ends on one or at the end
		// of the file; this piece does not (the tree's limit of a blob
		// larger than declared cuts it, or a piece cut so came before):
		// copy it.
		m, err := io.Copy(dst, io.NewSectionReader(b.f, b.off, k))
		b.off += m
		return m, err
	}
	err = unix.IoctlFileCloneRange(int(dst.Fd()), &unix.FileCloneRange{
		Src_fd: int64(b.f.Fd()), Src_offset: uint64(b.off), Src_length: uint64(k), Dest_offset: uint64(at),
	})
	if err != nil {
		if b.off == 0 && (err == unix.EOPNOTSUPP || err == unix.EXDEV || err == unix.EINVAL || err == unix.ENOTTY || err == unix.ENOSYS) {
			return 0, fmt.Errorf("cloning %s: %w (%w)", b.f.Name(), err, errors.ErrUnsupported)
		}
		return 0, &fs.PathError{Op: "clone", Path: b.f.Name(), Err: err}
	}
	if _, err := dst.Seek(k, io.SeekCurrent); err != nil {
		return 0, err
	}
	b.off += k
	return k, nil
}

func (l *ociLayout) Close() error {
	err := l.root.Close()
	if l.cleanup != nil {
		err = errors.Join(err, l.cleanup())
	}
	return err
}

// The files of an OCI image layout besides its blobs.
const (
	ociLayoutFile = "oci-layout"
	ociIndexFile  = "index.json"
)

// openOCIArchive unpacks an oci-archive (a tar of a layout) into a
// temporary directory, as skopeo does, and reads it as a layout.
func openOCIArchive(ctx context.Context, file, ref, label string) (*ociLayout, string, error) {
	tmp, err := os.MkdirTemp("", "image-serve-oci-archive-")
	if err != nil {
		return nil, "", err
	}
	cleanup := func() error { return os.RemoveAll(tmp) }
	if err := untar(ctx, file, tmp); err != nil {
		cleanup()
		return nil, "", fmt.Errorf("%s: %w", label, err)
	}
	l, name, err := openOCILayout(tmp, ref, label)
	if err != nil {
		cleanup()
		return nil, "", err
	}
	l.cleanup = cleanup
	return l, name, nil
}

// untar extracts the files of an OCI layout from archive into dir,
// through an os.Root of dir: oci-layout, index.json and blobs named
// blobs/ALGORITHM/ENCODED as a digest names them. Other entries are
// skipped unread — a layout needs none, links are how archives escape
// their directory, and what is not extracted cannot fill $TMPDIR. An
// entry naming ".." is refused with its name, before os.Root would refuse
// it. Sparse files, FIFOs and devices are refused, so what is written is
// never more than the archive's own size, and an archive of more than
// maxArchiveEntries entries is refused.
func untar(ctx context.Context, archive, dir string) error {
	f, err := openRegular(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(ctxReader{ctx, f})
	for ord := 0; ; ord++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %v", err)
		}
		if err := checkTarEntry(h); err != nil {
			return err
		}
		if err := checkEntryCount(ord); err != nil {
			return err
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		if h.Typeflag == tar.TypeReg && isLayoutFile(filepath.ToSlash(name)) {
			if err := writeUntarred(root, name, tr); err != nil {
				return err
			}
		}
	}
}

// isLayoutFile reports whether name, slash-separated and clean, is a file
// an OCI image layout holds: its oci-layout marker, its index.json, or a
// blob at blobs/ALGORITHM/ENCODED of a well-formed digest.
func isLayoutFile(name string) bool {
	switch name {
	case ociLayoutFile, ociIndexFile:
		return true
	}
	rest, ok := strings.CutPrefix(name, "blobs/")
	if !ok {
		return false
	}
	alg, enc, ok := strings.Cut(rest, "/")
	return ok && digest.NewDigestFromEncoded(digest.Algorithm(alg), enc).Validate() == nil
}

// writeUntarred creates file name inside root (never through a link out
// of it) with r's bytes.
func writeUntarred(root *os.Root, name string, r io.Reader) error {
	if err := root.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return err
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
