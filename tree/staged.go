package tree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Staging: a source whose blobs come as one stream in its own order (a
// bundle: package bundle) and that must be read whole, and checked whole,
// before anything is published, hands its blobs to a Stager during
// Publish (PublishOptions.Stage). Each blob is written once, into the
// incoming directory where every download goes, and hashed once, as it
// is written (from the page cache, just behind the writing); Publish then
// moves it into its repository by a rename, without reading it again. A source that is refused at its end (a
// member that does not match its digest, a truncated stream, a missing
// part) has then put nothing anywhere a server reads, and the staged
// files go.
//
// The staged files are temporary files of the incoming directory: the
// Stage runs under the tree lock Publish holds shared, so no sweep
// removes them meanwhile; a crash leaves them to the next writer's sweep
// (tidyIfAlone) or gc's, as it leaves a download.

// Stager takes the blobs of a publication's source before Publish
// transfers them. It is handed out by Publish, to PublishOptions.Stage,
// and valid until that hook returns; the hook stages one blob at a time (a
// stream hands them out one after the other) and calls Wait after the
// last.
//
// Stage writes a blob as its source hands it over, and hashes it behind
// the writing, from what it wrote, in a goroutine of its own: the source
// reads on into the next blob meanwhile, so that on a machine of several
// cores several blobs are hashed at once — hashing, at about 1.7 GB/s a
// core here, is the slowest step — and each blob's fsync waits for its
// own disk writes without holding the stream up. Wait says when every
// staged blob is verified and durable.
type Stager struct {
	r      *Root
	verify bool                   // PublishOptions.VerifyExisting
	wants  map[digest.Digest]bool // the blobs the publication's images name

	mu     sync.Mutex
	moved  *sync.Cond // a blob was written further, hashed further, or ended
	closed bool       // the hook has returned: no more blobs
	// flight are the blobs staged, in order; staged those verified and
	// durable, for putBlob.
	flight []*stagingBlob
	seen   map[digest.Digest]bool
	staged map[digest.Digest]stagedBlob
	// unhashed is what the blobs in flight have written and not hashed
	// yet; active how many of them are not yet verified and durable.
	unhashed int64
	active   int
	hashed   sync.WaitGroup // the hashing goroutines
}

// The hashing stays at most stagedLead bytes behind the writing, over all
// the blobs of a Stager: what it reads back then comes from the page
// cache, not the disk, and the memory that takes is bounded. At most
// stagedActive blobs are in flight at once (each holds two descriptors
// and, at its end, an fsync). Variables: the tests make them small.
var (
	stagedLead   int64 = 128 << 20
	stagedActive       = 16
)

// stagingBlob is one blob of a Stager on its way: written up to written,
// hashed up to hashed (all guarded by the Stager's mu).
type stagingBlob struct {
	d       digest.Digest
	size    int64 // declared; -1 unknown
	tmp     string
	written int64
	hashed  int64
	ended   bool  // the writing is over, whole or not
	aborted bool  // refused: the writing and the hashing stop, if still going
	err     error // why the blob was refused
}

// chunkBufs are the buffers of the staged blobs' writing and hashing.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, streamChunk); return &b }}

// stagedBlob is a blob's verified, durable bytes in the incoming
// directory.
type stagedBlob struct {
	tmp  string
	size int64
}

// Wants reports whether an image of the publication names blob d (and had
// not failed when the hook began): a blob worth staging, unless the tree
// holds it (Holds).
func (s *Stager) Wants(d digest.Digest) bool { return s.wants[d] }

// Holds reports whether a repository of the tree holds a sound copy of
// blob d, size bytes (-1: unknown): Publish will link it from there, and
// staging it would write it for nothing. Sound as Publish judges it: the
// right size, and the right digest when the publication re-hashes what it
// reuses (PublishOptions.VerifyExisting). Under the tree lock Publish
// holds, no collection removes it before Publish links it.
func (s *Stager) Holds(d digest.Digest, size int64) bool {
	if distribution.ValidateDigest(d) != nil {
		return false
	}
	_, ok := s.r.findBlob(d, size, s.verify)
	return ok
}

// Stage writes blob d from rd into the tree's incoming directory, and
// keeps it there for Publish, which moves it into the repositories of the
// images that name it instead of fetching it. It returns the bytes read,
// once they are written: their hash is checked behind, and Wait says
// whether they were d's. It reads at most size+1 bytes (size < 0:
// unknown): a source that sends more than it declared is cut off at the
// first byte too many, so it cannot fill the disk. A blob of other than
// its declared size is refused at once, with a *MismatchError; so, with
// an error, is one that cannot be read or written whole, and one of more
// bytes than the file system has free, before a byte is read. Read errors
// are rd's, as rd returned them. Nothing of a refused blob is kept. A
// blob staged already is an error, and rd is not read.
func (s *Stager) Stage(d digest.Digest, size int64, rd io.Reader) (int64, error) {
	if err := distribution.ValidateDigest(d); err != nil {
		return 0, err
	}
	s.mu.Lock()
	closed, dup := s.closed, s.seen[d]
	for !closed && !dup && s.active >= stagedActive {
		s.moved.Wait()
	}
	if !closed && !dup {
		s.seen[d] = true
		s.active++
	}
	s.mu.Unlock()
	switch {
	case closed:
		return 0, fmt.Errorf("blob %s: staged after the publication's stage ended", d)
	case dup:
		return 0, fmt.Errorf("blob %s: staged twice", d)
	}
	f, rf, tmp, err := s.create(d, size)
	if err != nil {
		s.mu.Lock()
		s.active--
		s.moved.Broadcast()
		s.mu.Unlock()
		return 0, err
	}
	b := &stagingBlob{d: d, size: size, tmp: tmp}
	s.mu.Lock()
	s.flight = append(s.flight, b)
	s.mu.Unlock()
	done := make(chan struct{})
	s.hashed.Add(1)
	go func() {
		defer s.hashed.Done()
		defer close(done)
		s.hash(b, f, rf)
	}()
	if size >= 0 {
		rd = io.LimitReader(rd, size+1)
	}
	n, err := s.write(b, f, rd)
	if err == nil && size >= 0 && n != size {
		err = &MismatchError{Digest: d, Size: size, Got: n}
	}
	s.mu.Lock()
	if err != nil {
		s.abort(b, err)
		err = b.err // the hashing's, when it refused the blob first
	}
	b.ended = true
	s.moved.Broadcast()
	s.mu.Unlock()
	if err != nil {
		<-done // the hashing has let go of the file
		return n, err
	}
	return n, nil
}

// create makes the file blob d is staged in, when there is room for it,
// and opens it twice: to write, and for the hashing to read what was
// written (it is created write-only).
func (s *Stager) create(d digest.Digest, size int64) (f, rf *os.File, tmp string, err error) {
	if err := s.r.checkSpace(d, size); err != nil {
		return nil, nil, "", err
	}
	dir := s.r.incomingDir()
	if err := s.r.mkdirAll(dir); err != nil {
		return nil, nil, "", err
	}
	f, tmp, err = s.r.stageFile(filepath.Join(dir, d.String()))
	if err != nil {
		return nil, nil, "", err
	}
	if rf, err = s.r.open(tmp); err != nil {
		f.Close()
		s.r.discardTemp(tmp)
		return nil, nil, "", err
	}
	return f, rf, tmp, nil
}

// abort refuses b with err, unless it was refused already; the writing
// and the hashing of b stop. The caller holds s.mu.
func (s *Stager) abort(b *stagingBlob, err error) {
	if b.aborted {
		return
	}
	b.aborted, b.err = true, err
	s.unhashed -= b.written - b.hashed
	s.moved.Broadcast()
}

// write copies rd into f, letting the hashing of b know how far it got,
// and waiting while the blobs in flight are more than stagedLead bytes
// ahead of their hashing.
func (s *Stager) write(b *stagingBlob, f *os.File, rd io.Reader) (int64, error) {
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		k, rerr := fill(rd, buf)
		if k > 0 {
			if err := writeAll(f, buf[:k]); err != nil {
				var pe *fs.PathError
				if errors.As(err, &pe) {
					// Name the blob, not its random temporary name.
					err = pe.Err
				}
				return n, fmt.Errorf("staging blob %s: %w", b.d, err)
			}
			n += int64(k)
			s.mu.Lock()
			if !b.aborted {
				b.written = n
				s.unhashed += int64(k)
				s.moved.Broadcast()
			}
			for s.unhashed > stagedLead && !b.aborted {
				s.moved.Wait()
			}
			aborted := b.aborted
			s.mu.Unlock()
			if aborted {
				return n, errors.New("refused") // b.err says why
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// hash hashes b, reading back from rf what the writing wrote as it goes,
// then checks it, makes it durable and keeps it (s.staged), or refuses it
// (b.err) and removes it. Once the writing has ended, it closes f.
func (s *Stager) hash(b *stagingBlob, f, rf *os.File) {
	defer rf.Close()
	kept := false
	defer func() {
		s.mu.Lock()
		for !b.ended {
			s.moved.Wait()
		}
		s.active--
		s.moved.Broadcast()
		s.mu.Unlock()
		if !kept {
			f.Close()
			s.r.discardTemp(b.tmp)
		}
	}()
	bp := chunkBufs.Get().(*[]byte)
	defer chunkBufs.Put(bp)
	buf := *bp
	h := b.d.Algorithm().Hash()
	var off int64
	for {
		s.mu.Lock()
		for off == b.written && !b.ended && !b.aborted {
			s.moved.Wait()
		}
		avail, ended, aborted := b.written, b.ended, b.aborted
		s.mu.Unlock()
		if aborted {
			return
		}
		var err error
		for off < avail && err == nil {
			var k int
			k, err = rf.ReadAt(buf[:min(int64(len(buf)), avail-off)], off)
			h.Write(buf[:k])
			off += int64(k)
		}
		s.mu.Lock()
		if err != nil && off < avail {
			s.abort(b, fmt.Errorf("staging blob %s: reading it back: %w", b.d, err))
		}
		if !b.aborted {
			s.unhashed -= off - b.hashed
			b.hashed = off
			s.moved.Broadcast()
		}
		aborted = b.aborted
		s.mu.Unlock()
		if aborted {
			return
		}
		if ended && off == avail {
			break
		}
	}
	var err error
	if got := digest.NewDigest(b.d.Algorithm(), h); got != b.d {
		err = &MismatchError{Digest: b.d, Size: b.size, Got: off, GotDigest: got}
	} else if serr := syncAndClose(f); serr != nil {
		err = fmt.Errorf("staging blob %s: %w", b.d, serr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.abort(b, err)
		return
	}
	s.staged[b.d] = stagedBlob{tmp: b.tmp, size: off}
	kept = true
}

// Wait waits until every blob staged so far is verified and durable, and
// returns the first refused, in the order they were staged: a
// *MismatchError (its Digest names the blob) for one whose bytes are not
// its digest's, or the error that stopped it.
func (s *Stager) Wait() error {
	s.hashed.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.flight {
		if b.err != nil {
			return b.err
		}
	}
	return nil
}

// stage runs o.Stage with a Stager of p's, before any blob transfers,
// and waits for what it staged: when either fails, every image fails with
// the error, and nothing is put. The Stager is kept for putBlob; its
// blobs not taken by the end of Publish are discarded (discard).
func (p *publication) stage(ctx context.Context) {
	s := &Stager{r: p.r, verify: p.o.VerifyExisting, wants: map[digest.Digest]bool{}, seen: map[digest.Digest]bool{}, staged: map[digest.Digest]stagedBlob{}}
	s.moved = sync.NewCond(&s.mu)
	for i, im := range p.images {
		if p.failed(i) != nil {
			continue
		}
		for _, b := range im.Blobs {
			s.wants[b.Digest] = true
		}
	}
	p.stager = s
	err := p.o.Stage(ctx, s)
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if werr := s.Wait(); err == nil {
		err = werr
	}
	if err == nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		s.discard()
		for i := range p.images {
			p.fail(i, err)
		}
	}
}

// take hands out the staged copy of b, once: the first image to put it
// moves it in, the others link it from there, as they would a fetched
// blob. A staged copy of another size than b declares is not b's.
func (s *Stager) take(b Blob) (stagedBlob, bool) {
	if s == nil {
		return stagedBlob{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, ok := s.staged[b.Digest]
	if !ok || (b.Size >= 0 && b.Size != sb.size) {
		return stagedBlob{}, false
	}
	delete(s.staged, b.Digest)
	return sb, true
}

// discard removes the staged blobs nobody took. It takes no step: nothing
// in the tree names them.
func (s *Stager) discard() {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, sb := range s.staged {
		s.r.discardTemp(sb.tmp)
		delete(s.staged, d)
	}
}

// putStagedBlob makes blob d, staged as sb, available in repo, as putBlob
// does for a fetched one: a sound copy in repo is kept, one elsewhere in
// the tree linked (under the blob's lock, as putBlob takes it, so that a
// concurrent export of the same blob fetches nothing either), and only
// when the tree has none is the staged file renamed into place — its
// bytes verified and made durable when it was staged. The staged file
// goes whichever way. Like putBlob, it leaves the sync of the blob's
// directory to ds.
func (r *Root) putStagedBlob(repo string, d digest.Digest, sb stagedBlob, verify bool, ds *dirSyncs) (BlobOutcome, int64, error) {
	renamed := false
	defer func() {
		if !renamed {
			r.discardTemp(sb.tmp)
		}
	}()
	if err := ValidateRepo(repo); err != nil {
		return 0, 0, err
	}
	if r.hasSoundBlob(repo, d, sb.size, verify) {
		return BlobPresent, 0, nil
	}
	l, err := r.lockBlob(d)
	if err != nil {
		return 0, 0, err
	}
	defer l.Unlock()
	if r.hasSoundBlob(repo, d, sb.size, verify) {
		return BlobPresent, 0, nil
	}
	path := r.blobPath(repo, d)
	if err := r.mkdirAll(filepath.Dir(path)); err != nil {
		return 0, 0, err
	}
	if src, ok := r.findBlob(d, sb.size, verify); ok {
		if err := r.linkInto(src, path, ds); err != nil {
			return 0, 0, fmt.Errorf("blob %s: link from %s: %w", d, src, err)
		}
		return BlobLinked, 0, nil
	}
	if err := r.renameEntry(sb.tmp, path); err != nil {
		return BlobFetched, 0, fmt.Errorf("blob %s: %w", d, err)
	}
	renamed = true
	return BlobFetched, sb.size, ds.sync(r, filepath.Dir(path))
}
