package tree

import (
	"cmp"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"
)

// Blob bytes are read, hashed and written in chunks of streamChunk, up to
// streamDepth of them in flight: while one chunk is hashed and written,
// the next are read. Hashing is the slowest of the three (sha256 runs at
// about 1 GB/s here, a page-cache read or write at several), so overlapping
// them brings a transfer close to the speed of hashing alone, instead of
// the sum of the three. The buffers bound a transfer's memory.
const (
	streamChunk = 512 << 10
	streamDepth = 3
)

// chunkSets holds the buffers of finished transfers for the next ones.
var chunkSets = sync.Pool{New: func() any {
	set := make([][]byte, streamDepth)
	for i := range set {
		set[i] = make([]byte, streamChunk)
	}
	return &set
}}

// chunk is a buffer of read bytes, or the read error that ended the
// stream.
type chunk struct {
	b   []byte
	err error
}

// copyHashing copies src to dst and into h, as io.Copy to an
// io.MultiWriter of the two would, but reads ahead in another goroutine
// and writes each chunk while hashing it. It returns the bytes written to
// dst and the first error of reading or writing; on an error it does not
// wait for a read in progress, whose buffers it then leaves to it (the
// caller closes src, which ends it) instead of reusing them.
func copyHashing(dst io.Writer, h hash.Hash, src io.Reader) (int64, error) {
	set := chunkSets.Get().(*[][]byte)
	free := make(chan []byte, streamDepth)
	for _, b := range *set {
		free <- b
	}
	filled := make(chan chunk, streamDepth)
	done := make(chan struct{})
	defer close(done)
	go readAhead(src, free, filled, done)

	var n int64
	for c := range filled {
		if len(c.b) > 0 {
			written := make(chan error, 1)
			go func() { written <- writeAll(dst, c.b) }()
			h.Write(c.b)
			if err := <-written; err != nil {
				return n, err
			}
			n += int64(len(c.b))
			free <- c.b[:cap(c.b)]
		}
		if c.err == io.EOF {
			// The reader has returned: the buffers are ours again.
			chunkSets.Put(set)
			return n, nil
		}
		if c.err != nil {
			return n, c.err
		}
	}
	return n, nil
}

// readAhead fills free buffers from src and hands them over, until src
// ends or done closes.
func readAhead(src io.Reader, free <-chan []byte, filled chan<- chunk, done <-chan struct{}) {
	defer close(filled)
	for {
		var b []byte
		select {
		case b = <-free:
		case <-done:
			return
		}
		k, err := fill(src, b)
		select {
		case filled <- chunk{b[:k], err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// fill reads from src into b until b is full or a read fails. Unlike
// io.ReadFull it passes src's own error on as it is: an
// io.ErrUnexpectedEOF of a cut stream must stay one, and a clean end
// stays io.EOF.
func fill(src io.Reader, b []byte) (int, error) {
	k := 0
	for k < len(b) {
		m, err := src.Read(b[k:])
		k += m
		if err != nil {
			return k, err
		}
	}
	return k, nil
}

// writeAll writes b to w, as io.Copy would: a short write without an
// error is io.ErrShortWrite.
func writeAll(w io.Writer, b []byte) error {
	k, err := w.Write(b)
	if err == nil && k != len(b) {
		err = io.ErrShortWrite
	}
	return err
}

// writeBehindStep is how many written bytes a blob file gathers before
// their write-back to the disk is started.
const writeBehindStep = 8 << 20

// writeBehind writes to f and starts the disk write-back of every
// writeBehindStep bytes as soon as they are written
// (sync_file_range SYNC_FILE_RANGE_WRITE: start, do not wait), so that the
// disk writes while the rest of the stream is read and hashed, instead of
// the whole file waiting in the page cache for the fsync that ends it.
// It makes nothing durable and orders nothing: the file is a temporary
// one that nothing names yet, and the fsync before its rename remains
// what makes it durable, with the same step at the same place. The
// fsync, not this, reports a write-back error: a failed or unsupported
// sync_file_range is left for it.
type writeBehind struct {
	f        *os.File
	written  int64 // bytes written so far
	started  int64 // bytes whose write-back has been started
	disabled bool  // the file system refused sync_file_range
}

// Write writes p to the file, as f.Write, errors unchanged.
func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if err == nil {
		w.startWriteBack()
	}
	return n, err
}

// startWriteBack starts the write-back of the bytes written since the
// last start, once they are writeBehindStep or more.
func (w *writeBehind) startWriteBack() {
	if w.disabled || w.written-w.started < writeBehindStep {
		return
	}
	if unix.SyncFileRange(int(w.f.Fd()), w.started, w.written-w.started, unix.SYNC_FILE_RANGE_WRITE) != nil {
		w.disabled = true
	}
	w.started = w.written
}

// A FileCopier is a blob source that can put its bytes into PutBlob's
// temporary file itself, without handing them over through a buffer (an
// oci: layout's blob file, cloned on a file system with reflinks).
// PutBlob then hashes what landed in the temporary file: the digest
// checked is that of the bytes that will be served, whatever happens to
// the source meanwhile.
type FileCopier interface {
	// CopyTo copies the next n bytes of the source to dst at dst's
	// offset, advancing both; fewer than n only at the source's end.
	// An error before any byte was copied with errors.ErrUnsupported in
	// its chain makes the caller read the source instead.
	CopyTo(dst *os.File, n int64) (int64, error)
}

// fileChunk is how much copyFileHashing copies in one step: the next
// step's copy runs while the last one is hashed.
const fileChunk = 4 << 20

// copyFileHashing copies src to dst, at most limit bytes (limit < 0: no
// limit), with src's CopyTo, and hashes each copied chunk into h from
// dst's page cache (mapped, not read: no copy) while the next one is
// copied. Write-back of the copied bytes is started as in writeBehind.
// It returns the bytes copied and the first error; ok false, with
// nothing copied, when src cannot copy into dst (no reflinks, another
// file system), for the caller to read src instead.
func copyFileHashing(dst *os.File, h hash.Hash, src FileCopier, limit int64) (n int64, ok bool, err error) {
	type step struct {
		k   int64
		err error
	}
	if limit < 0 {
		limit = math.MaxInt64
	}
	copyNext := func(want int64) <-chan step {
		c := make(chan step, 1)
		go func() {
			k, err := src.CopyTo(dst, want)
			c <- step{k, err}
		}()
		return c
	}
	wb := &writeBehind{f: dst}
	want := min(fileChunk, limit)
	pending := copyNext(want)
	for {
		s := <-pending
		pending = nil
		if n == 0 && s.k == 0 && errors.Is(s.err, errors.ErrUnsupported) {
			return 0, false, nil
		}
		wb.copied(s.k)
		more := s.err == nil && s.k == want && n+s.k < limit
		if more {
			want = min(fileChunk, limit-n-s.k)
			pending = copyNext(want)
		}
		herr := hashFileRange(h, dst, n, s.k)
		n += s.k
		if err := cmp.Or(s.err, herr); err != nil {
			if pending != nil {
				<-pending // the copy writes to dst: it must be over before dst is closed
			}
			return n, true, err
		}
		if !more {
			return n, true, nil
		}
	}
}

// hashFileRange hashes n bytes of f from off, mapping them rather than
// reading them. off is a multiple of fileChunk, hence of the page size.
// A fault while reading the mapping (the file shortened under us) is an
// error, not a crash.
func hashFileRange(h hash.Hash, f *os.File, off, n int64) (err error) {
	if n == 0 {
		return nil
	}
	b, err := unix.Mmap(int(f.Fd()), off, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return &fs.PathError{Op: "mmap", Path: f.Name(), Err: err}
	}
	defer unix.Munmap(b)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &fs.PathError{Op: "read", Path: f.Name(), Err: fmt.Errorf("%v", r)}
		}
	}()
	h.Write(b)
	return nil
}

// copied accounts for n bytes written to the file by other means than
// Write (by a FileCopier), starting their write-back as Write would.
func (w *writeBehind) copied(n int64) {
	w.written += n
	w.startWriteBack()
}
