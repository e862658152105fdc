// Package exporter copies images from registries, OCI layouts and archives
// into a static registry tree. It is the only package that talks to
// sources; everything it writes goes through package tree.
package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Options tune an export.
type Options struct {
	// Platforms selects children of an index, "os/arch[/variant]". Empty:
	// all. One: that child is tagged directly. Several: a new index of
	// just those children is tagged.
	Platforms []string
	Jobs      int // parallel blob transfers; < 1 means 4
	Registry  RegistryOptions
	Log       *slog.Logger // nil: discard
	Progress  Progress     // nil: none
	// VerifyExisting re-hashes every blob already in the tree before
	// reusing it; without it a blob is reused when its size is right.
	VerifyExisting bool
	// MaxBlobSize refuses, before anything is written, an image with a
	// blob declared larger; 0 means DefaultMaxBlobSize.
	MaxBlobSize int64
	// AllOrNothing, for several images, tags every one or none: when one
	// fails, no tag of the batch moves.
	AllOrNothing bool
	// PreserveDigests refuses a source whose layers would have to be
	// rewritten (a docker save's plain tar layers, which are compressed
	// on export), instead of exporting them under new digests.
	PreserveDigests bool
	// Local tunes the sources on this machine (containers-storage:,
	// docker-daemon:).
	Local LocalOptions
}

// DefaultMaxBlobSize is far above any real layer, and far below what a
// hostile manifest may declare.
const DefaultMaxBlobSize = 64 << 30

// Progress is told about blob transfers as they happen, to draw them.
type Progress interface {
	BlobStart(d digest.Digest, size int64)
	BlobBytes(d digest.Digest, n int64)
	BlobDone(d digest.Digest, outcome tree.BlobOutcome, err error)
}

// PlanProgress is a Progress that is also told, once per batch, which
// images are about to be published and the blobs of each, before any
// blob moves: enough to count images done and bytes left. Images that
// failed to plan, or that are unchanged, are not in it.
type PlanProgress interface {
	Progress
	Planned(images []PlannedImage)
}

// PlannedImage is one image a batch publishes: its destination and the
// blobs it needs (a blob shared by several images is in each).
type PlannedImage struct {
	Dest  string
	Blobs []PlannedBlob
}

// PlannedBlob is a blob of a PlannedImage.
type PlannedBlob struct {
	Digest digest.Digest
	Size   int64
}

// Summary reports what an export did.
type Summary struct {
	Source       string        `json:"source"`
	Dest         string        `json:"dest"`
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"media_type"`
	Manifests    int           `json:"manifests"`
	BlobsFetched int           `json:"blobs_fetched"`
	BytesFetched int64         `json:"bytes_fetched"`
	BlobsReused  int           `json:"blobs_reused"`
	BytesReused  int64         `json:"bytes_reused"`
	Elapsed      time.Duration `json:"-"` // callers print it in their own unit
	// Referrers is how many manifests that refer to the image (signatures,
	// SBOMs) travelled with it, in a sync: those the tree did not hold.
	Referrers int `json:"referrers,omitempty"`
	// unchanged: the destination tag named the image already, and
	// nothing was published (sync).
	unchanged bool
}

// Export copies the image srcArg names into root as destArg (REPO[:TAG];
// "" for the source's own name). Nothing is tagged unless every manifest
// and blob the tag needs is in the tree, verified. It is ExportMany of one
// image.
func Export(ctx context.Context, root tree.Publisher, srcArg, destArg string, o Options) (*Summary, error) {
	sums, errs := ExportEach(ctx, root, []Job{{Source: srcArg, Dest: destArg}}, o)
	return sums[0], errs[0]
}

func (o Options) withDefaults() Options {
	if o.Jobs < 1 {
		o.Jobs = 4
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.MaxBlobSize <= 0 {
		o.MaxBlobSize = DefaultMaxBlobSize
	}
	return o
}

func openSource(ctx context.Context, src SourceRef, o Options) (source, string, error) {
	switch src.Transport {
	case transportDocker:
		r, err := openRegistry(ctx, src, o.Registry)
		return r, "", err
	case transportOCI:
		l, name, err := openOCILayout(src.Path, src.Image, src.String())
		if err != nil {
			return nil, "", err
		}
		return l, name, nil
	case transportOCIArchive:
		l, name, err := openOCIArchive(ctx, src.Path, src.Image, src.String())
		if err != nil {
			return nil, "", err
		}
		return l, name, nil
	case transportDockerArchive:
		a, err := openDockerArchive(ctx, src.Path, src.Image)
		if err != nil {
			return nil, "", err
		}
		if err := preserveDigests(src, len(a.compressed), o); err != nil {
			a.Close()
			return nil, "", err
		}
		return a, a.repoTag(), nil
	case transportContainersStorage, transportDockerDaemon:
		open := openLocalStore
		if src.Transport == transportDockerDaemon {
			open = openDockerDaemon
		}
		a, err := open(ctx, src, o)
		if err != nil {
			return nil, "", err
		}
		if err := preserveDigests(src, a.rewritten, o); err != nil {
			a.Close()
			return nil, "", err
		}
		return a, a.repoTag(), nil
	}
	return nil, "", fmt.Errorf("source %s: unknown transport", src)
}

// preserveDigests refuses, under Options.PreserveDigests, a source of
// which rewritten layers have to be compressed to be served.
func preserveDigests(src SourceRef, rewritten int, o Options) error {
	if !o.PreserveDigests || rewritten == 0 {
		return nil
	}
	if rewritten == 1 {
		return fmt.Errorf("%s: 1 layer is a plain tar that would be gzip-compressed, giving it and the manifest new digests; --preserve-digests refuses", src)
	}
	return fmt.Errorf("%s: %d layers are plain tars that would be gzip-compressed, giving them and the manifest new digests; --preserve-digests refuses", src, rewritten)
}

func resolveDest(src SourceRef, imageName, destArg string) (Dest, error) {
	def, defErr := defaultDest(src, imageName)
	if destArg == "" {
		if defErr != nil {
			return Dest{}, defErr
		}
		d, err := ParseDest(def, "")
		if err != nil {
			return Dest{}, fmt.Errorf("source %s names its image %q, not a valid destination: give DEST: %w", src, def, errors.Unwrap(err))
		}
		return d, nil
	}
	_, defTag := splitRepoTag(def)
	return ParseDest(destArg, defTag)
}

func (sum *Summary) count(b tree.BlobResult) {
	if b.Outcome == tree.BlobFetched {
		sum.BlobsFetched++
		sum.BytesFetched += b.Size
		return
	}
	sum.BlobsReused++
	sum.BytesReused += b.Size
}

func outcomeName(o tree.BlobOutcome) string {
	switch o {
	case tree.BlobFetched:
		return "fetched"
	case tree.BlobLinked:
		return "linked"
	}
	return "present"
}

type countingReader struct {
	rc io.ReadCloser
	d  digest.Digest
	p  Progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.rc.Read(b)
	if n > 0 && c.p != nil {
		c.p.BlobBytes(c.d, int64(n))
	}
	return n, err
}

func (c *countingReader) Close() error { return c.rc.Close() }

// CopyTo lets the tree copy from the source in the kernel when the source
// can (tree.FileCopier), counting the bytes as Read does.
func (c *countingReader) CopyTo(dst *os.File, n int64) (int64, error) {
	fc, ok := c.rc.(tree.FileCopier)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	k, err := fc.CopyTo(dst, n)
	if k > 0 && c.p != nil {
		c.p.BlobBytes(c.d, k)
	}
	return k, err
}
