package exporter

import (
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
)

// The layer compressor. A plain tar layer — docker save's, podman image
// save's, the Docker Engine's /images/get — is served gzip-compressed
// under a digest image-serve computes, so the compressed bytes must be a
// function of the tar alone: the same layer exported twice must get the
// same digest, or a re-export moves its tag and clients pull the layer
// again.
//
// gzipLayer compresses with klauspost/pgzip (klauspost/compress's deflate,
// blocks compressed in parallel), which is deterministic by construction:
// it cuts the input every layerGzipBlock bytes counted from the start,
// whatever the sizes of the reads; compresses each block on its own with
// the previous block's last 32 KiB as its dictionary, ending it with a
// sync flush; and writes the blocks out in input order. How many blocks
// compress at once, and which finishes first, changes when bytes are
// written, never which. The header carries no name and a zero time.
//
// The limit: the bytes are those of one version of pgzip and
// klauspost/compress with this level and block size. Any of them changing
// gives every plain layer of a re-export a new digest (the layers of
// image-serve versions before pgzip were compress/gzip's, and differ);
// TestGzipLayerGolden pins the output of a fixed input so that a
// dependency bump that changes it fails loudly instead.
const (
	// layerGzipLevel is klauspost/compress's level 6, measured on this
	// project's 2-core test machine on a 256 MiB tar of /usr (binaries,
	// Python, text): 1.6 % larger than compress/gzip's default level for
	// about 3.5× less CPU (bench/PROFILES.md, "Issue 24: the layer
	// compressor"). Level 7 is 0.8 % larger at 1.8× the CPU of level 6.
	layerGzipLevel = 6
	// layerGzipBlock is where the input is cut into independently
	// compressed blocks: part of the output's definition, like the level.
	layerGzipBlock = 1 << 20
	// layerGzipMaxBlocks caps the blocks compressed at once (one per
	// processor up to it), which bounds memory: see gzipLayerBlocks.
	layerGzipMaxBlocks = 4
)

// gzipLayer compresses the plain tar layer read from r into w, and
// describes what it wrote; diffID is the digest of the tar itself. Both
// digests are taken in the same pass, neither on the compressing
// goroutines: the tar's as it is read, the compressed bytes' as they are
// written, on pgzip's writing goroutine.
func gzipLayer(w io.Writer, r io.Reader) (compressed Descriptor, diffID digest.Digest, err error) {
	return gzipLayerBlocks(w, r, min(runtime.GOMAXPROCS(0), layerGzipMaxBlocks))
}

// gzipLayerBlocks is gzipLayer compressing at most blocks blocks at once.
// Memory is bounded by blocks: pgzip holds at most blocks+2 blocks of the
// input (blocks queued for compression or writing, one being written out,
// one being filled), each with its compressed copy, and a deflate state
// (about 1 MiB) per block being compressed — about 3 MiB per block, under
// 20 MiB per layer at layerGzipMaxBlocks (TestGzipLayerBoundsBlocks).
//
// Once the writer is made, whatever fails, it is closed before returning,
// so none of pgzip's goroutines outlives the call.
func gzipLayerBlocks(w io.Writer, r io.Reader, blocks int) (compressed Descriptor, diffID digest.Digest, err error) {
	out := &gzipSink{w: w, digester: digest.Canonical.Digester()}
	zw, err := pgzip.NewWriterLevel(out, layerGzipLevel)
	if err != nil {
		return Descriptor{}, "", err
	}
	if err := zw.SetConcurrency(layerGzipBlock, max(blocks, 1)); err != nil {
		return Descriptor{}, "", err
	}
	// pgzip writes ModTime's Unix seconds as they are: the zero Time
	// would be a date before 1970 truncated to 32 bits. The epoch writes
	// 0, gzip's "no time", as compress/gzip does.
	zw.ModTime = time.Unix(0, 0)
	uncompressed := digest.Canonical.Digester()
	buf := make([]byte, 128<<10)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			uncompressed.Hash().Write(buf[:n])
			// pgzip reports w's errors here only once a block's write
			// has failed; out's own error, below, is the one returned.
			if _, err := zw.Write(buf[:n]); err != nil {
				out.fail(err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.fail(rerr)
			break
		}
		if out.failed() != nil {
			break
		}
	}
	// Close ends pgzip's goroutines, compressing what is buffered; after
	// a failure out discards it. Close returns once every block is
	// written, so out's counts are final.
	if cerr := zw.Close(); cerr != nil {
		out.fail(cerr)
	}
	if err := out.failed(); err != nil {
		return Descriptor{}, "", err
	}
	return Descriptor{MediaType: dockerArchiveLayerGzipType, Digest: out.digester.Digest(), Size: out.n}, uncompressed.Digest(), nil
}

// gzipSink is what pgzip writes to: w, hashed and counted. It never
// returns an error to pgzip — pgzip v1.2.7's Close returns early after
// a failed write without stopping its writing goroutine, which would
// then wait forever — but keeps the first failure (of w, of the read or
// of pgzip) and discards everything after it.
type gzipSink struct {
	w        io.Writer
	digester digest.Digester
	n        int64

	mu  sync.Mutex
	err error
}

func (s *gzipSink) Write(b []byte) (int, error) {
	if s.failed() != nil {
		return len(b), nil
	}
	n, err := s.w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.fail(err)
		return len(b), nil
	}
	s.digester.Hash().Write(b)
	s.n += int64(n)
	return len(b), nil
}

func (s *gzipSink) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *gzipSink) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
