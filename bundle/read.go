package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Source is one input of a bundle: a whole bundle, its parts concatenated
// in order (as `cat` joins them), or one part among several given. Name
// names it in errors.
type Source struct {
	Name string
	R    io.Reader
}

// Reader reads a bundle as a stream: Open reads its descriptor, then Next
// hands out its members in the descriptor's order, each checked against
// its digest while it is read — unless its reader hands that check over
// (Unhashed). Every departure from the descriptor — a
// member missing, out of order or of another size, a part missing, of
// another bundle or given twice, a member after the last one — is an
// error naming the input and the cause.
type Reader struct {
	desc *Descriptor
	id   digest.Digest

	// inputs: one per part in part order when several were given; for
	// one input, the stream the whole bundle or its parts are on.
	inputs []*input
	single bool
	count  int // parts; 0 for a whole (unsplit) bundle

	in     *input // the input being read
	partNo int    // the part being read, from 1; 0 for a whole bundle
	tr     *tar.Reader
	listed []PartMember // the current part's members, as its header lists them
	inPart int          // members of the current part read so far
	next   int          // the descriptor member Next returns next
	body   *memberReader
	err    error
}

type input struct {
	Source
	br     *bufio.Reader // single stream only
	tr     *tar.Reader
	header *PartHeader
}

// Open reads the start of a bundle from srcs — one input holding a whole
// bundle or its parts in order, or several inputs each holding one part,
// in any order — up to and including its descriptor.
func Open(srcs []Source) (*Reader, error) {
	if len(srcs) == 0 {
		return nil, errors.New("no bundle to read")
	}
	r := &Reader{single: len(srcs) == 1}
	if r.single {
		return r, r.openStream(srcs[0])
	}
	return r, r.openParts(srcs)
}

// Descriptor is the bundle's descriptor, validated.
func (r *Reader) Descriptor() *Descriptor { return r.desc }

// ID is the bundle's id, the sha256 of its descriptor.
func (r *Reader) ID() digest.Digest { return r.id }

// Parts is how many parts the bundle is in: 0 for a whole bundle.
func (r *Reader) Parts() int { return r.count }

func (r *Reader) openStream(src Source) error {
	in := &input{Source: src, br: bufio.NewReaderSize(src.R, 1<<16)}
	in.tr = tar.NewReader(in.br)
	r.inputs = []*input{in}
	h, raw, err := readFirst(in)
	if err != nil {
		return err
	}
	r.in, r.tr = in, in.tr
	if h.Name == DescriptorName {
		return r.setDescriptor(in, raw)
	}
	ph := in.header
	if ph.Part != 1 {
		return fmt.Errorf("%s begins with part %d of %d: on one stream the parts must follow each other in order (or give each part as a file)", src.Name, ph.Part, ph.Count)
	}
	r.count, r.partNo, r.listed = ph.Count, 1, ph.Members
	return r.readDescriptor(in, ph.Bundle)
}

func (r *Reader) openParts(srcs []Source) error {
	byNo := map[int]*input{}
	var first *input
	for _, src := range srcs {
		in := &input{Source: src}
		in.tr = tar.NewReader(src.R)
		h, _, err := readFirst(in)
		if err != nil {
			return err
		}
		if h.Name == DescriptorName {
			return fmt.Errorf("%s is a whole bundle, not a part: give it alone", src.Name)
		}
		ph := in.header
		if first == nil {
			first = in
		} else if ph.Bundle != first.header.Bundle || ph.Count != first.header.Count {
			return fmt.Errorf("%s is part %d of %d of bundle %s, not of bundle %s (%s is part %d of %d of it)",
				src.Name, ph.Part, ph.Count, ph.Bundle, first.header.Bundle, first.Name, first.header.Part, first.header.Count)
		}
		if other, dup := byNo[ph.Part]; dup {
			return fmt.Errorf("%s and %s are both part %d of bundle %s", other.Name, src.Name, ph.Part, ph.Bundle)
		}
		byNo[ph.Part] = in
	}
	count := first.header.Count
	var missing []string
	for n := 1; n <= count; n++ {
		if byNo[n] == nil {
			missing = append(missing, fmt.Sprint(n))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("bundle %s is in %d parts; part %s missing", first.header.Bundle, count, strings.Join(missing, ", "))
	}
	for n := 1; n <= count; n++ {
		r.inputs = append(r.inputs, byNo[n])
	}
	in := r.inputs[0]
	r.count, r.partNo, r.in, r.tr, r.listed = count, 1, in, in.tr, in.header.Members
	return r.readDescriptor(in, in.header.Bundle)
}

// readFirst reads the first member of in: a descriptor (returned raw) or
// a part header (parsed into in.header). Anything else is no bundle.
func readFirst(in *input) (*tar.Header, []byte, error) {
	h, err := in.tr.Next()
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not an image-serve bundle: %v", in.Name, tarCause(err))
	}
	if h.Name != DescriptorName && h.Name != PartName {
		return nil, nil, fmt.Errorf("%s is not an image-serve bundle: its first member is %q, not %s or %s", in.Name, h.Name, DescriptorName, PartName)
	}
	raw, err := readSmall(in.tr, h, MaxDescriptorSize)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %v", in.Name, h.Name, err)
	}
	if h.Name == PartName {
		if in.header, err = parsePartHeader(raw); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", in.Name, err)
		}
	}
	return h, raw, nil
}

func (r *Reader) readDescriptor(in *input, id digest.Digest) error {
	h, err := in.tr.Next()
	if err != nil {
		return fmt.Errorf("%s: part 1 of bundle %s: no descriptor: %v", in.Name, id, tarCause(err))
	}
	if h.Name != DescriptorName {
		return fmt.Errorf("%s: part 1 of bundle %s: member %q where %s should be", in.Name, id, h.Name, DescriptorName)
	}
	raw, err := readSmall(in.tr, h, MaxDescriptorSize)
	if err != nil {
		return fmt.Errorf("%s: %s: %v", in.Name, DescriptorName, err)
	}
	if got := digest.FromBytes(raw); got != id {
		return fmt.Errorf("%s: the descriptor's sha256 is %s, not the bundle id %s its part header names", in.Name, got, id)
	}
	return r.setDescriptor(in, raw)
}

func (r *Reader) setDescriptor(in *input, raw []byte) error {
	d, err := ParseDescriptor(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", in.Name, err)
	}
	r.desc, r.id = d, digest.FromBytes(raw)
	return nil
}

// readSmall reads a small member whole, refusing more than limit bytes.
func readSmall(tr *tar.Reader, h *tar.Header, limit int64) ([]byte, error) {
	if h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("not a regular file (tar type %q)", h.Typeflag)
	}
	if h.Size > limit {
		return nil, fmt.Errorf("%d bytes, over the limit of %d", h.Size, limit)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, tarCause(err)
	}
	return b, nil
}

// tarCause says what a tar read error means for a bundle.
func tarCause(err error) error {
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("truncated")
	case errors.Is(err, tar.ErrHeader):
		return errors.New("not a tar archive, or a damaged one")
	}
	return err
}

// Next returns the next member and a reader of its bytes, which fails at
// their end if they do not match the member's digest; io.EOF once every
// member is read and the input ends where it should. A member whose bytes
// are not read is skipped (not checked). After an error, every call
// returns it.
func (r *Reader) Next() (Member, io.Reader, error) {
	if r.err != nil {
		return Member{}, nil, r.err
	}
	m, body, err := r.next1()
	if err != nil {
		r.err = err
	}
	return m, body, err
}

func (r *Reader) next1() (Member, io.Reader, error) {
	if r.body != nil && r.body.err != nil {
		return Member{}, nil, r.body.err
	}
	r.body = nil
	for {
		h, err := r.tr.Next()
		if err == io.EOF {
			if err := r.endPart(); err != nil {
				return Member{}, nil, err
			}
			if r.next == len(r.desc.Members) && r.partNo == r.count {
				return Member{}, nil, io.EOF
			}
			if err := r.nextPart(); err != nil {
				return Member{}, nil, err
			}
			continue
		}
		if err != nil {
			return Member{}, nil, fmt.Errorf("%s: %v%s", r.in.Name, tarCause(err), r.where())
		}
		return r.member(h)
	}
}

// where says which member the reader expected, for an error.
func (r *Reader) where() string {
	if r.next < len(r.desc.Members) {
		return fmt.Sprintf(" before member %s", r.desc.Members[r.next].Name())
	}
	return ""
}

// endPart checks that the part (or the whole bundle) just ended held
// every member it should.
func (r *Reader) endPart() error {
	switch {
	case r.count == 0 && r.next < len(r.desc.Members):
		return fmt.Errorf("%s: truncated: the bundle ends%s (%d of %d members read)", r.in.Name, r.where(), r.next, len(r.desc.Members))
	case r.count > 0 && r.inPart < len(r.listed):
		return fmt.Errorf("%s: part %d of %d truncated: it ends before member %s", r.in.Name, r.partNo, r.count, r.listed[r.inPart].Name)
	}
	return nil
}

// nextPart moves to the next part: the next input, or on one stream the
// next tar, which must be the next part of the same bundle.
func (r *Reader) nextPart() error {
	if r.count == 0 || r.partNo >= r.count {
		return fmt.Errorf("%s: %d members read, the descriptor lists %d", r.in.Name, r.next, len(r.desc.Members))
	}
	want := r.partNo + 1
	if !r.single {
		r.in = r.inputs[want-1]
	} else {
		in := r.in
		if err := skipZeroBlocks(in.br); err != nil {
			return fmt.Errorf("%s: ends after part %d of %d: part %d missing", in.Name, r.partNo, r.count, want)
		}
		in.tr = tar.NewReader(in.br)
		h, _, err := readFirst(in)
		if err != nil {
			return err
		}
		if h.Name != PartName {
			return fmt.Errorf("%s: after part %d of %d comes a whole bundle, not part %d", in.Name, r.partNo, r.count, want)
		}
		switch ph := in.header; {
		case ph.Bundle != r.id || ph.Count != r.count:
			return fmt.Errorf("%s: after part %d of %d of bundle %s comes part %d of %d of bundle %s", in.Name, r.partNo, r.count, r.id, ph.Part, ph.Count, ph.Bundle)
		case ph.Part != want:
			return fmt.Errorf("%s: after part %d of %d comes part %d: on one stream the parts must follow each other in order", in.Name, r.partNo, r.count, ph.Part)
		}
	}
	r.partNo, r.tr, r.listed, r.inPart = want, r.in.tr, r.in.header.Members, 0
	return nil
}

// skipZeroBlocks skips zero blocks between concatenated tars (a tar
// writer may pad its end to a record); io.EOF when nothing follows.
func skipZeroBlocks(br *bufio.Reader) error {
	zero := make([]byte, 512)
	for {
		b, err := br.Peek(512)
		if len(b) == 0 && err != nil {
			return io.EOF
		}
		if len(b) < 512 || !bytes.Equal(b, zero) {
			return nil
		}
		br.Discard(512)
	}
}

// member checks that h is the member the descriptor (and the part's
// header) lists next, and returns it.
func (r *Reader) member(h *tar.Header) (Member, io.Reader, error) {
	if r.next >= len(r.desc.Members) {
		return Member{}, nil, fmt.Errorf("%s: member %q after the last one the descriptor lists", r.in.Name, h.Name)
	}
	m := r.desc.Members[r.next]
	if h.Name != m.Name() {
		return Member{}, nil, fmt.Errorf("%s: member %q where the descriptor lists %s", r.in.Name, h.Name, m.Name())
	}
	if h.Typeflag != tar.TypeReg || h.Size != m.Size {
		return Member{}, nil, fmt.Errorf("%s: member %s: %d bytes (tar type %q), the descriptor says a file of %d", r.in.Name, h.Name, h.Size, h.Typeflag, m.Size)
	}
	if r.count > 0 {
		if r.inPart >= len(r.listed) {
			return Member{}, nil, fmt.Errorf("%s: member %s is not in part %d's list of its members", r.in.Name, h.Name, r.partNo)
		}
		if l := r.listed[r.inPart]; l.Name != h.Name || l.Size != h.Size || l.SHA256 != m.Digest {
			return Member{}, nil, fmt.Errorf("%s: member %s is not the one part %d's header lists (%s)", r.in.Name, h.Name, r.partNo, l.Name)
		}
		r.inPart++
	}
	r.next++
	r.body = &memberReader{r: r.tr, h: sha256.New(), left: m.Size, m: m, src: r.in.Name}
	return m, r.body, nil
}

// Unhashed hands the check of the last member Next returned to the
// caller: the body Next returned then reads the member's bytes without
// hashing them, and their end checks only that they are all there. It is
// for a caller that hashes the bytes itself as it reads them — the tree
// does, as it stages a blob, and hashing each byte twice would halve the
// speed of a load — and it must then refuse the member, and everything
// after it, when they do not match its digest. A body already read from,
// or one that failed, stays hashed: the check cannot start halfway.
// Unhashed returns that body; with no member (before the first Next,
// after io.EOF or an error) an empty reader.
func (r *Reader) Unhashed() io.Reader {
	if r.body == nil {
		return eofReader{}
	}
	if r.body.left == r.body.m.Size && r.body.err == nil {
		r.body.h = nil
	}
	return r.body
}

// eofReader is the body of no member.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Verify reads the rest of the bundle, checking every member against its
// digest and that every member and part is there, in order, and nothing
// else: what a loader does first with a bundle it can read twice, so that
// a damaged one is refused before anything is written.
func (r *Reader) Verify() error {
	for {
		_, body, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err == nil {
			_, err = io.Copy(io.Discard, body)
		}
		if err != nil {
			return err
		}
	}
}

// Missing lists, sorted, the needed blobs of d that has does not report.
func (d *Descriptor) Missing(has func(digest.Digest) bool) []Needed {
	var out []Needed
	for _, n := range d.Needed {
		if !has(n.Digest) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b Needed) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	return out
}

// memberReader reads one member's bytes, hashing them; at their end it
// fails unless they are the member's. With h nil (Unhashed) it only counts
// them: its caller checks the digest.
type memberReader struct {
	r    io.Reader
	h    hash.Hash // nil: the caller hashes
	left int64
	m    Member
	src  string
	err  error
}

func (b *memberReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if b.h != nil {
		b.h.Write(p[:n])
	}
	b.left -= int64(n)
	switch {
	case err == io.EOF && b.left != 0, errors.Is(err, io.ErrUnexpectedEOF):
		b.err = fmt.Errorf("%s: member %s truncated", b.src, b.m.Name())
	case err == io.EOF && b.h != nil:
		if got := digest.NewDigest(digest.SHA256, b.h); got != b.m.Digest {
			b.err = fmt.Errorf("%s: member %s does not match its digest (its bytes hash to %s)", b.src, b.m.Name(), got)
		}
	case err == io.EOF:
		// Unhashed: its reader checks the digest.
	case err != nil:
		b.err = fmt.Errorf("%s: member %s: %w", b.src, b.m.Name(), err)
	}
	if b.err != nil {
		return n, b.err
	}
	return n, err
}
