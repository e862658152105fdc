package exporter

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testwait"
	"github.com/opencontainers/go-digest"
)

// gzipTestTar is a layer-like tar of about size bytes: text files (words
// of a small vocabulary, which compress as source and configuration do)
// alternating with files of random bytes (which do not), all from a fixed
// seed, in the USTAR format with fixed metadata: the same bytes every run.
func gzipTestTar(t testing.TB, size int) []byte {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{'g', 'z', 'i', 'p'}))
	words := strings.Fields("layer image blob digest manifest config tar gzip export serve tree tag " +
		"repository registry client podman skopeo docker store lock stream block level the a of to")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; b.Len() < size; i++ {
		var body []byte
		if i%2 == 0 {
			var text strings.Builder
			for text.Len() < 100<<10+rng.IntN(400<<10) {
				text.WriteString(words[rng.IntN(len(words))])
				if rng.IntN(12) == 0 {
					text.WriteString(".\n")
				} else {
					text.WriteByte(' ')
				}
			}
			body = []byte(text.String())
		} else {
			body = make([]byte, 50<<10+rng.IntN(700<<10))
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/share/file%03d", i), Mode: 0o644,
			Size: int64(len(body)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// chunkedReader returns its data in reads of the sizes of sizes, in turn.
type chunkedReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// yieldingWriter yields the processor before each write it passes on, so
// pgzip's writing goroutine runs at other times than it otherwise would.
type yieldingWriter struct{ w io.Writer }

func (y yieldingWriter) Write(p []byte) (int, error) {
	runtime.Gosched()
	return y.w.Write(p)
}

// compressed gzips the input read from r with gzipLayerBlocks (through
// a yieldingWriter if yield) and checks what it reports against in and
// against the bytes it wrote.
func compressed(t *testing.T, r io.Reader, blocks int, yield bool, in []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var w io.Writer = &out
	if yield {
		w = yieldingWriter{w}
	}
	desc, diffID, err := gzipLayerBlocks(w, r, blocks)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest.FromBytes(out.Bytes()) || desc.Size != int64(out.Len()) || desc.MediaType != dockerArchiveLayerGzipType {
		t.Fatalf("described %+v, wrote %d bytes of digest %s", desc, out.Len(), digest.FromBytes(out.Bytes()))
	}
	if diffID != digest.FromBytes(in) {
		t.Fatalf("diff id %s, want the input's %s", diffID, digest.FromBytes(in))
	}
	return out.Bytes()
}

// TestGzipLayerDeterministic: a layer's compressed bytes are a function of
// its bytes alone — not of how it is read, how many blocks compress at
// once, how many processors run them, or in which order the scheduler
// runs the goroutines. A difference would give the same layer another
// digest on another export.
func TestGzipLayerDeterministic(t *testing.T) {
	in := gzipTestTar(t, 6<<20)
	want := compressed(t, bytes.NewReader(in), 1, false, in)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	chunkings := map[string][]int{
		"one read":            {len(in)},
		"32 KiB":              {32 << 10},
		"odd sizes":           {1, 7, 4093, 1<<20 + 1, 65536, 13, 3 << 20},
		"one byte, then more": {1, 1, 1, 2, 511, 100003},
	}
	for _, procs := range []int{1, 2, 8} {
		runtime.GOMAXPROCS(procs)
		for name, sizes := range chunkings {
			for _, blocks := range []int{1, 2, 3, 4, 8} {
				got := compressed(t, &chunkedReader{data: in, sizes: sizes}, blocks, blocks%2 == 1, in)
				if !bytes.Equal(got, want) {
					t.Fatalf("GOMAXPROCS %d, reads of %s, %d blocks at once: %d bytes of digest %s, want %d bytes of %s",
						procs, name, blocks, len(got), digest.FromBytes(got), len(want), digest.FromBytes(want))
				}
			}
		}
	}
	// Several layers at once, as export compresses the layers of several
	// images, each one's goroutines competing with the others'.
	runtime.GOMAXPROCS(8)
	got := make([][]byte, 6)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() {
			var out bytes.Buffer
			if _, _, err := gzipLayerBlocks(yieldingWriter{&out}, &chunkedReader{data: in, sizes: []int{4096 + i}}, 1+i%4); err != nil {
				t.Error(err)
			}
			got[i] = out.Bytes()
		})
	}
	wg.Wait()
	for i, g := range got {
		if !bytes.Equal(g, want) {
			t.Errorf("compression %d of %d at once: %d bytes of digest %s, want %d bytes of %s", i, len(got), len(g), digest.FromBytes(g), len(want), digest.FromBytes(want))
		}
	}
}

// TestGzipLayerGunzips: the standard library's gzip reader (what
// go-containerregistry and most clients use) reads the output back to the
// input, as one gzip member with nothing after it, carrying no name and
// no time; an empty input too.
func TestGzipLayerGunzips(t *testing.T) {
	for _, in := range [][]byte{gzipTestTar(t, 3<<20), gzipTestTar(t, 0), {}} {
		out := compressed(t, bytes.NewReader(in), layerGzipMaxBlocks, false, in)
		// A bytes.Reader is an io.ByteReader, which gzip.Reader reads
		// without buffering: what it leaves is what follows the member.
		br := bytes.NewReader(out)
		zr, err := gzip.NewReader(br)
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, in) {
			t.Fatalf("gunzipped %d bytes of digest %s, want the input's %d bytes of %s", len(got), digest.FromBytes(got), len(in), digest.FromBytes(in))
		}
		if br.Len() != 0 {
			t.Errorf("%d bytes after the gzip member", br.Len())
		}
		if zr.Name != "" || !zr.ModTime.IsZero() || zr.Comment != "" || zr.Extra != nil {
			t.Errorf("header name %q, time %v, comment %q, extra %q: want none", zr.Name, zr.ModTime, zr.Comment, zr.Extra)
		}
	}
}

// TestGzipLayerGolden pins the compressed digest of a fixed input. It
// fails when a change to the compressor — a bump of klauspost/pgzip or
// klauspost/compress, of Go, or of layerGzipLevel or layerGzipBlock —
// changes the bytes a plain layer compresses to. That matters: every
// plain layer (docker-archive:, containers-storage:, docker-daemon:) of a
// re-export would then get a new digest, moving its image's tag and
// making every client pull the layer again. Take such a change only on
// purpose, saying so in docs/sources.md and the release notes, and pin
// the new digest here.
func TestGzipLayerGolden(t *testing.T) {
	const (
		wantInput      = "sha256:f97d091c73a8796d6898a5cb065d4ec5ae36c513f301bbd9e6214b8b0a730632"
		wantCompressed = "sha256:7905f1a56c0b17523cac39eacb53b445ed5e4b3fcf1ca59fbd77737cb3691269"
		wantSize       = 2143626
	)
	in := gzipTestTar(t, 5<<19)
	if got := digest.FromBytes(in); got != wantInput {
		t.Fatalf("the test's input is not the one pinned (digest %s, want %s): gzipTestTar or archive/tar changed, not the compressor; pin the input again only with the compressor unchanged", got, wantInput)
	}
	desc, _, err := gzipLayer(io.Discard, bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != wantCompressed || desc.Size != wantSize {
		t.Fatalf("the layer compressor's output changed: %d bytes of digest %s, pinned %d bytes of %s.\n"+
			"Every plain layer image-serve exports (docker-archive:, containers-storage:, docker-daemon:) would get a new digest: "+
			"a re-export of an unchanged image moves its tag and clients pull its layers again. "+
			"If that is intended, say so in docs/sources.md and pin the new digest here.",
			desc.Size, desc.Digest, wantSize, wantCompressed)
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// failingWriter takes n bytes, then fails.
type failingWriter struct{ n int }

var errWriterFull = errors.New("disk full")

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errWriterFull
	}
	w.n -= len(p)
	return len(p), nil
}

// pgzipRunning reports whether any goroutine is running pgzip's code.
func pgzipRunning() bool {
	buf := make([]byte, 1<<20)
	return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("klauspost/pgzip"))
}

// TestGzipLayerFailures: a read error (a truncated stream) and a write
// error (a full disk) are returned as they are, and no goroutine of the
// compressor outlives the call.
func TestGzipLayerFailures(t *testing.T) {
	in := gzipTestTar(t, 5<<20)
	// An earlier test's compressor may still be ending its goroutines.
	waitPgzipEnded(t, "before the test")
	for _, c := range []struct {
		name string
		r    io.Reader
		w    io.Writer
		want error
	}{
		{"truncated stream", &failingReader{data: in[:5<<19], err: io.ErrUnexpectedEOF}, io.Discard, io.ErrUnexpectedEOF},
		{"full disk, first block", bytes.NewReader(in), &failingWriter{n: 1000}, errWriterFull},
		{"full disk, later", bytes.NewReader(in), &failingWriter{n: 2 << 20}, errWriterFull},
		{"full disk, header", bytes.NewReader(in), &failingWriter{n: 0}, errWriterFull},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := gzipLayerBlocks(c.w, c.r, 3)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			// pgzip's goroutines end just after Close returns: wait
			// for it (a goroutine stuck would never end).
			waitPgzipEnded(t, "after the call")
		})
	}
}

// waitPgzipEnded waits, a minute at most, until no goroutine runs
// pgzip's code, and fails the test, saying when, if one still does.
func waitPgzipEnded(t *testing.T, when string) {
	t.Helper()
	testwait.Until(t, "pgzip's goroutines ended "+when, func() (bool, string) {
		buf := make([]byte, 1<<20)
		return !pgzipRunning(), "still running:\n" + string(buf[:runtime.Stack(buf, true)])
	})
}

// TestGzipLayerBoundsBlocks: however slowly its output is written, the
// compressor reads at most blocks+2 blocks of input ahead of what it has
// written out (gzipLayerBlocks' memory bound). The writer holds each
// block's write until the reader has served all that pgzip may take in
// but the last block, so the bound is tested with the pipeline full.
func TestGzipLayerBoundsBlocks(t *testing.T) {
	const total = 24 * layerGzipBlock
	for _, blocks := range []int{1, 2, layerGzipMaxBlocks} {
		t.Run(fmt.Sprint(blocks, " blocks"), func(t *testing.T) {
			var (
				mu      sync.Mutex
				cond    = sync.NewCond(&mu)
				served  int64 // bytes the reader returned
				written int64 // blocks whose compressed bytes were written
				over    error
			)
			r := readerFunc(func(p []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				if served == total {
					return 0, io.EOF
				}
				n := min(len(p), 64<<10, int(total-served))
				clear(p[:n])
				served += int64(n)
				if bound := (written + int64(blocks) + 2) * layerGzipBlock; served > bound && over == nil {
					over = fmt.Errorf("read %d bytes with %d blocks written: more than %d blocks ahead", served, written, blocks+2)
				}
				cond.Broadcast()
				return n, nil
			})
			writes := 0
			w := writerFunc(func(p []byte) (int, error) {
				writes++
				if writes == 1 {
					return len(p), nil // the header, written before any block
				}
				mu.Lock()
				defer mu.Unlock()
				for target := min((written+int64(blocks)+1)*layerGzipBlock, total); served < target; {
					cond.Wait()
				}
				written++
				return len(p), nil
			})
			if _, _, err := gzipLayerBlocks(w, r, blocks); err != nil {
				t.Fatal(err)
			}
			if over != nil {
				t.Fatal(over)
			}
			if served != total {
				t.Fatalf("read %d bytes of %d", served, total)
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
