package bundle

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// OpenFunc opens the bytes of a member, to be copied into the bundle.
type OpenFunc func(Member) (io.ReadCloser, error)

// Write writes the bundle d to w as one tar stream: the descriptor, then
// every member in its order, each read with open and checked against its
// digest and size as it is copied (a corrupt source makes no bundle).
// It returns the bytes written.
func Write(w io.Writer, d *Descriptor, open OpenFunc) (int64, error) {
	desc, err := d.Encode()
	if err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	if err := putBytes(tw, DescriptorName, desc); err != nil {
		return cw.n, err
	}
	for _, m := range d.Members {
		if err := putMember(tw, m, open); err != nil {
			return cw.n, err
		}
	}
	err = tw.Close()
	return cw.n, err
}

// Part is one part of a split bundle as PlanParts lays it out: the
// indexes of its members in the descriptor, and its size as written.
type Part struct {
	Members []int
	Size    int64
}

// ErrTooLarge is the error of a member larger than a part, with strict.
var ErrTooLarge = errors.New("larger than a part")

// PlanParts lays d's members out in parts of at most size bytes, in
// member order, each member whole in one part. A member that fits no part
// gets a part of its own, larger than size; with strict it is refused
// (ErrTooLarge) instead.
func PlanParts(d *Descriptor, size int64, strict bool) ([]Part, error) {
	desc, err := d.Encode()
	if err != nil {
		return nil, err
	}
	// The part header lists its members; its size is bounded above by
	// what every member's entry may take.
	const perMember = 256
	var parts []Part
	cur := Part{Size: tarEnd + tarMemberSize(int64(len(desc))) + partHeaderBase}
	start := func() { cur = Part{Size: tarEnd + partHeaderBase} }
	for i, m := range d.Members {
		add := tarMemberSize(m.Size) + perMember
		if cur.Size+add > size && len(cur.Members) > 0 {
			parts = append(parts, cur)
			start()
		}
		if cur.Size+add > size {
			if strict {
				return nil, fmt.Errorf("%s %s: %d bytes, %w of %d bytes (--strict-size)", m.Kind, m.Digest, m.Size, ErrTooLarge, size)
			}
		}
		cur.Members = append(cur.Members, i)
		cur.Size += add
	}
	parts = append(parts, cur)
	return parts, nil
}

// partHeaderBase bounds a part header's size without its member list, as
// tar members: its tar header and the JSON around the list.
const partHeaderBase = 512 + 512 + 512

// tarEnd is the end of a tar: two zero blocks.
const tarEnd = 1024

// tarMemberSize is what a member of size bytes takes in a tar: its header
// (a PAX header more when over USTAR's 8 GiB), its bytes padded to
// 512.
func tarMemberSize(size int64) int64 {
	n := 512 + (size+511)/512*512
	if size >= 1<<33 {
		n += 1024
	}
	return n
}

// WriteParts writes the bundle d as the parts PlanParts laid out, each
// to the writer create returns for its number (from 1) and count, which
// it closes. It returns the bytes written over all parts.
func WriteParts(d *Descriptor, parts []Part, create func(part, count int) (io.WriteCloser, error), open OpenFunc) (int64, error) {
	desc, err := d.Encode()
	if err != nil {
		return 0, err
	}
	id := digest.FromBytes(desc)
	var total int64
	for i, p := range parts {
		h := PartHeader{Format: PartFormat, Version: Version, Bundle: id, Part: i + 1, Count: len(parts)}
		for _, k := range p.Members {
			m := d.Members[k]
			h.Members = append(h.Members, PartMember{Name: m.Name(), Size: m.Size, SHA256: m.Digest})
		}
		raw, err := json.Marshal(h)
		if err != nil {
			return total, err
		}
		w, err := create(i+1, len(parts))
		if err != nil {
			return total, err
		}
		cw := &countWriter{w: w}
		tw := tar.NewWriter(cw)
		err = putBytes(tw, PartName, raw)
		if err == nil && i == 0 {
			err = putBytes(tw, DescriptorName, desc)
		}
		for _, k := range p.Members {
			if err == nil {
				err = putMember(tw, d.Members[k], open)
			}
		}
		if err == nil {
			err = tw.Close()
		}
		total += cw.n
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return total, fmt.Errorf("part %d of %d: %w", i+1, len(parts), err)
		}
	}
	return total, nil
}

// header is the tar header of a member: fixed owner, mode and time, so
// the same content makes the same bundle.
func header(name string, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: time.Unix(0, 0)}
}

func putBytes(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(header(name, int64(len(b)))); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

func putMember(tw *tar.Writer, m Member, open OpenFunc) error {
	rc, err := open(m)
	if err != nil {
		return fmt.Errorf("%s %s: %w", m.Kind, m.Digest, err)
	}
	defer rc.Close()
	if err := tw.WriteHeader(header(m.Name(), m.Size)); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(tw, io.TeeReader(io.LimitReader(rc, m.Size), h))
	if err != nil {
		return fmt.Errorf("%s %s: %w", m.Kind, m.Digest, err)
	}
	if n != m.Size {
		return fmt.Errorf("%s %s: %d bytes, not its %d", m.Kind, m.Digest, n, m.Size)
	}
	if k, _ := rc.Read(make([]byte, 1)); k > 0 {
		return fmt.Errorf("%s %s: more than its %d bytes", m.Kind, m.Digest, m.Size)
	}
	if got := digest.NewDigest(digest.SHA256, h); got != m.Digest {
		return fmt.Errorf("%s %s: content does not match its digest (got %s)", m.Kind, m.Digest, got)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
