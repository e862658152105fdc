package exporter

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// ociLayout reads an OCI image layout directory (oci:DIR[:REF]).
type ociLayout struct {
	dir     string // symlinks resolved: every blob must resolve inside it
	label   string // how errors name the source
	root    Descriptor
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
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", label, err)
	}
	if _, err := os.Stat(filepath.Join(real, "oci-layout")); err != nil {
		return nil, "", fmt.Errorf("%s: not an OCI layout (no oci-layout file)", label)
	}
	l := &ociLayout{dir: real, label: label}
	raw, err := l.readFile("index.json", tree.MaxManifestSize)
	if err != nil {
		return nil, "", err
	}
	var idx struct {
		Manifests []ociIndexEntry `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, "", fmt.Errorf("%s: index.json: %v", label, err)
	}
	e, err := pickOCIImage(idx.Manifests, ref, label)
	if err != nil {
		return nil, "", err
	}
	l.root = e.Descriptor
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

// path resolves a file of the layout, refusing symlinks that lead outside
// it: an untrusted layout must not make us publish /etc/shadow as a blob.
func (l *ociLayout) path(rel string) (string, error) {
	p, err := filepath.EvalSymlinks(filepath.Join(l.dir, rel))
	if err != nil {
		return "", fmt.Errorf("%s: %w", l.label, err)
	}
	if p != l.dir && !strings.HasPrefix(p, l.dir+string(filepath.Separator)) {
		return "", fmt.Errorf("%s: %s is a symlink to %s, outside the layout", l.label, rel, p)
	}
	return p, nil
}

func (l *ociLayout) open(rel string) (*os.File, error) {
	p, err := l.path(rel)
	if err != nil {
		return nil, err
	}
	f, err := openRegular(p)
	var nr *notRegularError
	if errors.As(err, &nr) {
		return nil, fmt.Errorf("%s: %w", l.label, err)
	}
	return f, err
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
	b, err := l.Manifest(ctx, l.root)
	if err != nil {
		return nil, "", err
	}
	if got := l.root.Digest.Algorithm().FromBytes(b); got != l.root.Digest {
		return nil, "", fmt.Errorf("%s: manifest %s: content does not match its digest (got %s)", l.label, l.root.Digest, got)
	}
	return b, l.root.MediaType, nil
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
	return withContext(ctx, f), nil
}

func (l *ociLayout) Close() error {
	if l.cleanup != nil {
		return l.cleanup()
	}
	return nil
}

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

// untar extracts regular files and directories of archive into dir.
// Links are skipped: a layout needs none, and they are how archives escape
// their directory. Sparse files, FIFOs and devices are refused, so what
// is written is never more than the archive's own size.
func untar(ctx context.Context, archive, dir string) error {
	f, err := openRegular(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(ctxReader{ctx, f})
	for {
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
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("entry %q leaves the archive", h.Name)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := writeUntarred(target, tr); err != nil {
				return err
			}
		}
	}
}

func writeUntarred(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
