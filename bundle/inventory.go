package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Inventory is what a tree holds, by digest: its blobs and its manifests.
// Only sha256 digests are listed; content named by another algorithm is
// left out, so a bundle made against the inventory carries it (the safe
// side of a delta).
type Inventory struct {
	Blobs     []digest.Digest // sorted, each once
	Manifests []digest.Digest // sorted, each once
}

// The inventory file is
//
//	image-serve inventory 1\n
//	blobs N\n      then N raw sha256 digests, 32 bytes each, sorted
//	manifests M\n  then M such digests, sorted
//	sha256 HEX\n   the sha256 of every byte before this line
//
// 32 bytes a digest: 100,000 blobs are 3.2 MB. Random digests do not
// compress, so the file is not gzipped.
const (
	inventoryMagic = "image-serve inventory"
	// InventoryVersion is the version of the inventory format this
	// package writes and reads.
	InventoryVersion = 1
	// MaxInventoryDigests bounds each section of an inventory a reader
	// accepts: far above any tree (a million blobs), far below what a
	// hostile count could make a reader allocate.
	MaxInventoryDigests = 10_000_000
)

// NewInventory builds an inventory of blobs and manifests: sorted, each
// digest once, digests of other algorithms than sha256 left out.
func NewInventory(blobs, manifests []digest.Digest) *Inventory {
	return &Inventory{Blobs: sha256Set(blobs), Manifests: sha256Set(manifests)}
}

func sha256Set(ds []digest.Digest) []digest.Digest {
	var out []digest.Digest
	for _, d := range ds {
		if d.Algorithm() == digest.SHA256 && d.Validate() == nil {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// HasBlob reports whether the inventory lists blob d.
func (inv *Inventory) HasBlob(d digest.Digest) bool {
	_, ok := slices.BinarySearch(inv.Blobs, d)
	return ok
}

// HasManifest reports whether the inventory lists manifest d.
func (inv *Inventory) HasManifest(d digest.Digest) bool {
	_, ok := slices.BinarySearch(inv.Manifests, d)
	return ok
}

// WriteTo writes the inventory in its file format.
func (inv *Inventory) WriteTo(w io.Writer) (int64, error) {
	h := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	var n int64
	put := func(s string) {
		k, _ := bw.WriteString(s)
		n += int64(k)
	}
	put(fmt.Sprintf("%s %d\n", inventoryMagic, InventoryVersion))
	for _, sec := range []struct {
		name string
		ds   []digest.Digest
	}{{"blobs", inv.Blobs}, {"manifests", inv.Manifests}} {
		put(fmt.Sprintf("%s %d\n", sec.name, len(sec.ds)))
		for _, d := range sec.ds {
			raw, err := hex.DecodeString(d.Encoded())
			if err != nil || d.Algorithm() != digest.SHA256 || len(raw) != sha256.Size {
				return n, fmt.Errorf("inventory: %q is no sha256 digest", d)
			}
			k, _ := bw.Write(raw)
			n += int64(k)
		}
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	k, err := fmt.Fprintf(w, "sha256 %x\n", h.Sum(nil))
	return n + int64(k), err
}

// ErrNotInventory is the error of a file that is no inventory at all.
var ErrNotInventory = errors.New("not an image-serve inventory")

// ReadInventory reads an inventory file: its version known, each section
// sorted and within MaxInventoryDigests, its checksum right, nothing after
// it. It reads at most what the counts announce.
func ReadInventory(r io.Reader) (*Inventory, error) {
	h := sha256.New()
	br := bufio.NewReader(r)
	tr := io.TeeReader(br, h)
	line, err := readLine(tr, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInventory, err)
	}
	ver, ok := strings.CutPrefix(line, inventoryMagic+" ")
	if !ok {
		return nil, ErrNotInventory
	}
	if v, err := strconv.Atoi(ver); err != nil || v != InventoryVersion {
		return nil, fmt.Errorf("inventory format version %q: this image-serve reads version %d only", ver, InventoryVersion)
	}
	inv := &Inventory{}
	for _, sec := range []struct {
		name string
		ds   *[]digest.Digest
	}{{"blobs", &inv.Blobs}, {"manifests", &inv.Manifests}} {
		line, err := readLine(tr, 64)
		if err != nil {
			return nil, fmt.Errorf("inventory: %s section: %v", sec.name, truncated(err))
		}
		count, ok := strings.CutPrefix(line, sec.name+" ")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n < 0 || strconv.Itoa(n) != count {
			return nil, fmt.Errorf("inventory: want the %s section's count, got %q", sec.name, line)
		}
		if n > MaxInventoryDigests {
			return nil, fmt.Errorf("inventory: %d %s, over the limit of %d", n, sec.name, MaxInventoryDigests)
		}
		raw := make([]byte, sha256.Size)
		for i := range n {
			if _, err := io.ReadFull(tr, raw); err != nil {
				return nil, fmt.Errorf("inventory: %s section: %v", sec.name, truncated(err))
			}
			d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(raw))
			if i > 0 && d <= (*sec.ds)[i-1] {
				return nil, fmt.Errorf("inventory: %s section not sorted at %s", sec.name, d)
			}
			*sec.ds = append(*sec.ds, d)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	line, err = readLine(br, 80)
	if err != nil {
		return nil, fmt.Errorf("inventory: checksum: %v", truncated(err))
	}
	if line != "sha256 "+sum {
		return nil, fmt.Errorf("inventory: checksum line %q does not match its content (sha256 %s)", line, sum)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, errors.New("inventory: bytes after its checksum line")
	}
	return inv, nil
}

// readLine reads one line of at most limit bytes, without its newline,
// a byte at a time: what follows it is read by others.
func readLine(r io.Reader, limit int) (string, error) {
	var b bytes.Buffer
	one := make([]byte, 1)
	for b.Len() <= limit {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return b.String(), nil
		}
		b.WriteByte(one[0])
	}
	return "", fmt.Errorf("a line longer than %d bytes", limit)
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("truncated")
	}
	return err
}
