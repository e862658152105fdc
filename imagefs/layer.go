package imagefs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/ulikunitz/xz"
)

// DefaultMaxRatio is how many times its compressed size a layer may grow
// to when decompressed. gzip cannot exceed about 1030× on anything, and
// most real layers stay well under 20×; a layer that goes past 256× is
// taken for a decompression bomb (zstd and xz can go far beyond).
const DefaultMaxRatio = 256

// bombFloor is what any compressed layer may decompress to, whatever its
// ratio: an empty tar (10 KiB) gzips to a few dozen bytes.
const bombFloor = 16 << 20

// ErrBomb is a layer that decompresses to more than its limit allows.
var ErrBomb = errors.New("decompression bomb")

// MaxWindow is the most history a layer's decompressor may keep: a zstd
// window or an xz dictionary. It bounds the memory a layer's read takes
// (the decompressors' defaults let a crafted header ask for 128 MiB and
// more), and it is twice what the tools that write layers use: zstd's
// levels 1 to 19 (the CLI's, and the Go encoder's that podman, buildah,
// containerd and buildkit use, zstd:chunked included) have windows of at
// most 8 MiB, as have xz's default preset 6 and the Go xz writer; xz -7
// has 16 MiB. Past it: zstd --long, zstd --ultra -20 to -22, xz -8 and -9.
const MaxWindow = 16 << 20

// ErrWindow is a layer whose compression needs more history than
// MaxWindow.
var ErrWindow = errors.New("compression window too large")

// Options bound a layer's read.
type Options struct {
	// MaxRatio is how many times its compressed size a compressed layer
	// may decompress to (DefaultMaxRatio when 0).
	MaxRatio int64
}

// Compression is how a layer's bytes are compressed.
type Compression string

// The compressions a layer can have.
const (
	None Compression = "none"
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
	XZ   Compression = "xz"
)

// stated is the compression mediaType names, "" when it names none a
// reader may trust (no media type, schema1; Docker's, which has long
// said gzip for whatever the layer was), or an error for what is no
// layer.
func stated(mediaType string) (Compression, error) {
	switch {
	case mediaType == "", strings.HasPrefix(mediaType, "application/vnd.docker.image.rootfs."):
		return "", nil
	case strings.Contains(mediaType, "+encrypted"):
		return "", fmt.Errorf("media type %s: an encrypted layer", mediaType)
	case strings.HasSuffix(mediaType, ".tar+gzip"):
		return Gzip, nil
	case strings.HasSuffix(mediaType, ".tar+zstd"):
		return Zstd, nil
	case strings.HasSuffix(mediaType, ".tar+xz"):
		return XZ, nil
	case strings.HasSuffix(mediaType, ".tar"):
		return None, nil
	}
	return "", fmt.Errorf("media type %s: not a layer", mediaType)
}

// sniff says the compression of what starts with head, by its magic
// bytes.
func sniff(head []byte) Compression {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return XZ
	}
	return None
}

// Decompress returns the tar stream of the layer r holds: size bytes of
// mediaType. The compression is read from the magic bytes; a media type
// that states another is an error. The stream fails with ErrBomb once it
// has given more than the ratio allows, and with ErrWindow (for xz, up
// front) when the layer needs more history than MaxWindow. A compressed
// layer is decompressed ahead of its reader, in a goroutine of its own
// (a few hundred KiB ahead at most): Close stops it, and the stream must
// be closed before r is.
func Decompress(r io.Reader, mediaType string, size int64, o Options) (io.ReadCloser, Compression, error) {
	want, err := stated(mediaType)
	if err != nil {
		return nil, "", err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(6)
	got := sniff(head)
	if want != "" && want != got {
		return nil, "", fmt.Errorf("media type %s says %s, its bytes are %s", mediaType, want, got)
	}
	ratio := o.MaxRatio
	if ratio <= 0 {
		ratio = DefaultMaxRatio
	}
	limit := max(size, 0) * ratio
	if limit/ratio != max(size, 0) { // overflow: no limit worth the name
		limit = 1<<63 - 1
	}
	limit = max(limit, bombFloor)
	var rc io.ReadCloser
	switch got {
	case None:
		return io.NopCloser(br), None, nil
	case Gzip:
		z, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("gzip: %w", err)
		}
		rc = z
	case Zstd:
		// One goroutine, low memory, a window of at most MaxWindow: the
		// memory a layer's read takes stays bounded. MaxMemory bounds what
		// MaxWindow does not: a single-segment frame's window is its
		// stated content size.
		z, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxWindow), zstd.WithDecoderMaxMemory(MaxWindow))
		if err != nil {
			return nil, "", fmt.Errorf("zstd: %w", err)
		}
		rc = z.IOReadCloser()
	case XZ:
		// The xz reader takes the dictionary size a block header states
		// as given (its ReaderConfig.DictCap is a floor, not a cap), so
		// the first block's is checked here, before any of it is read.
		if err := xzDictOK(br); err != nil {
			return nil, "", err
		}
		z, err := xz.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("xz: %w", err)
		}
		rc = io.NopCloser(z)
	}
	return newReadahead(&bounded{rc: rc, left: limit, size: size, ratio: ratio}), got, nil
}

// xzDictOK refuses an xz stream whose first block's LZMA2 dictionary is
// larger than MaxWindow. xz writes every block of a stream with the same
// filter chain, so the first block's stands for the stream's; a crafted
// stream whose later block asks for more is not caught here.
func xzDictOK(br *bufio.Reader) error {
	const streamHeader = 12
	head, _ := br.Peek(streamHeader + 1)
	if len(head) <= streamHeader || head[streamHeader] == 0 {
		return nil // no block: the xz reader says what is wrong, if anything
	}
	size := (int(head[streamHeader]) + 1) * 4
	h, _ := br.Peek(streamHeader + size)
	if len(h) < streamHeader+size {
		return nil // truncated: the xz reader says so
	}
	flags, b := h[streamHeader+1], h[streamHeader+2:]
	// skip passes a multibyte integer; false when there is none.
	skip := func() bool {
		for i := 0; i < len(b) && i < 9; i++ {
			if b[i]&0x80 == 0 {
				b = b[i+1:]
				return true
			}
		}
		return false
	}
	if flags&0x40 != 0 && !skip() || flags&0x80 != 0 && !skip() { // compressed, uncompressed size
		return nil
	}
	for range int(flags&0x03) + 1 {
		// A filter: its ID, the size of its properties, the properties.
		// LZMA2 (0x21) is always last, with one byte of properties.
		if len(b) >= 3 && b[0] == 0x21 && b[1] == 1 {
			bits := int(b[2] & 0x3f)
			dict := uint64(0xffffffff)
			if bits < 40 {
				dict = uint64(2|bits&1) << (bits/2 + 11)
			}
			if dict > MaxWindow {
				return fmt.Errorf("xz: %w: its dictionary is %d MiB, more than the %d MiB read here (xz -8 and -9 write such, preset 7 and below do not)",
					ErrWindow, dict>>20, MaxWindow>>20)
			}
			return nil
		}
		if len(b) < 1 || !skip() { // the ID
			return nil
		}
		if len(b) < 1 {
			return nil
		}
		n := int(b[0])
		if n >= 0x80 || len(b) < 1+n {
			return nil
		}
		b = b[1+n:]
	}
	return nil
}

// bounded fails with ErrBomb once more than left bytes came out.
type bounded struct {
	rc    io.ReadCloser
	left  int64
	size  int64
	ratio int64
}

func (b *bounded) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		// Said by the frame's header, before its window is allocated.
		err = fmt.Errorf("zstd: %w: a frame needs a window of more than the %d MiB read here (zstd --long and --ultra -20 to -22 write such, levels 1 to 19 do not): %w",
			ErrWindow, MaxWindow>>20, err)
	}
	b.left -= int64(n)
	if b.left < 0 {
		return n, fmt.Errorf("%w: %d compressed bytes decompress to more than %d× as many (raise the limit with --max-ratio)", ErrBomb, b.size, b.ratio)
	}
	return n, err
}

func (b *bounded) Close() error { return b.rc.Close() }

// Scan reads the tar stream r entry by entry and calls fn with each
// entry and, for a regular file, its content (which fn may leave unread).
// The layer's root directory ("./") is no entry. An entry whose name is
// absolute or holds "..", or whose type a layer cannot hold, is an
// *EntryError; a malformed tar is an error naming the last entry read.
func Scan(r io.Reader, fn func(Entry, io.Reader) error) error {
	tr := tar.NewReader(r)
	last := ""
	for seq := 0; ; seq++ {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrBomb) || errors.Is(err, ErrWindow) {
				if last == "" {
					return err
				}
				return fmt.Errorf("after entry %q: %w", last, err)
			}
			if last == "" {
				return fmt.Errorf("malformed tar at its first entry: %w", err)
			}
			return fmt.Errorf("malformed tar after entry %q: %w", last, err)
		}
		last = h.Name
		e, skip, err := entryOf(h, seq)
		if err != nil {
			return &EntryError{Name: h.Name, Err: err}
		}
		if skip {
			continue
		}
		var content io.Reader
		if e.Type == File {
			content = tr
		}
		if err := fn(e, content); err != nil {
			if errors.Is(err, ErrBomb) || errors.Is(err, ErrWindow) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("entry %q: %w", h.Name, err)
			}
			return err
		}
	}
}

// entryOf is the entry tar header h describes; skip is true for what is
// no entry of the file system (the root, aufs's own bookkeeping).
func entryOf(h *tar.Header, seq int) (e Entry, skip bool, err error) {
	p, err := cleanPath(h.Name)
	if err != nil {
		return e, false, err
	}
	e = Entry{Path: p, Mode: uint32(h.Mode & 07777), UID: h.Uid, GID: h.Gid, MTime: h.ModTime.UTC(), Seq: seq}
	dir, base := path.Split(p)
	switch {
	case p == "":
		return e, true, nil // the root: not an entry of the file system
	case base == ".wh..wh..opq":
		// At the top, dir is "": the root itself made opaque.
		return Entry{Path: strings.TrimSuffix(dir, "/"), Type: Opaque, Seq: seq}, false, nil
	case strings.HasPrefix(base, ".wh..wh."):
		return e, true, nil // aufs's hard link bookkeeping, no file of the image
	case strings.HasPrefix(base, ".wh."):
		name := strings.TrimPrefix(base, ".wh.")
		if name == "" || name == "." || name == ".." {
			return e, false, fmt.Errorf("whiteout of no name")
		}
		return Entry{Path: dir + name, Type: Whiteout, Seq: seq}, false, nil
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont: // the reader gives TypeReg for the old "\x00"
		e.Type, e.Size = File, h.Size
	case tar.TypeDir:
		e.Type = Dir
	case tar.TypeSymlink:
		e.Type, e.Link = Symlink, h.Linkname
		if h.Linkname == "" {
			return e, false, errors.New("symbolic link to nothing")
		}
	case tar.TypeLink:
		e.Type = Hardlink
		if e.Link, err = cleanPath(h.Linkname); err != nil {
			return e, false, fmt.Errorf("hard link to %q: %w", h.Linkname, err)
		}
		if e.Link == "" {
			return e, false, fmt.Errorf("hard link to the root")
		}
	case tar.TypeChar:
		e.Type, e.Major, e.Minor = Char, h.Devmajor, h.Devminor
	case tar.TypeBlock:
		e.Type, e.Major, e.Minor = Block, h.Devmajor, h.Devminor
	case tar.TypeFifo:
		e.Type = FIFO
	default:
		return e, false, fmt.Errorf("entry type %q is no file", h.Typeflag)
	}
	return e, false, nil
}

// List reads a layer's tar stream and returns its entries, each regular
// file with the digest of its content: the layer's own list, as a cache
// keeps it.
func List(r io.Reader) ([]Entry, error) {
	var es []Entry
	h := sha256.New()
	buf := make([]byte, 64<<10) // one for the layer, not one per file
	err := Scan(r, func(e Entry, content io.Reader) error {
		if e.Type == File {
			h.Reset()
			n, err := io.CopyBuffer(h, content, buf)
			if err != nil {
				return err
			}
			e.Size = n
			e.Digest = digest.NewDigest(digest.SHA256, h)
		}
		es = append(es, e)
		return nil
	})
	return es, err
}

// Extract copies to w the content of the entry at position seq of the tar
// stream r: a regular file's bytes.
func Extract(r io.Reader, seq int, w io.Writer) error {
	found := false
	errFound := errors.New("found")
	err := Scan(r, func(e Entry, content io.Reader) error {
		if e.Seq != seq {
			return nil
		}
		found = true
		if e.Type != File {
			return fmt.Errorf("entry %q is a %s, not a file", e.Path, e.Type)
		}
		if _, err := io.Copy(w, content); err != nil {
			return err
		}
		return errFound
	})
	switch {
	case errors.Is(err, errFound):
		return nil
	case err != nil:
		return err
	case !found:
		return fmt.Errorf("the layer has no entry %d", seq)
	}
	return nil
}
