package imagefs

import (
	"io"
	"sync"
)

// Read-ahead of a layer's decompressed stream. Inflating a layer is most
// of the CPU a listing takes (about three quarters for gzip; parsing the
// tar and hashing its files the rest), and it is one stream that cannot
// be split: so the decompressor runs in a goroutine of its own, filling a
// small ring of buffers that the reader — the tar parser and the sha256
// of its files — drains on another core. Memory stays bounded by the
// ring, whatever the layer's size.
const (
	aheadBufs = 4
	aheadSize = 256 << 10
)

// readahead reads rc in a goroutine of its own, at most aheadBufs buffers
// ahead of its reader. Bytes come out in rc's order, and rc's error (a
// bomb's, a window's, a corrupt stream's, io.EOF) comes out with the last
// of the bytes read before it, and then from every later Read.
type readahead struct {
	rc   io.ReadCloser
	full chan chunk  // filled buffers, in order; the last one holds rc's error
	free chan []byte // buffers the reader is done with
	stop chan struct{}
	done chan struct{} // closed when the goroutine no longer reads rc
	once sync.Once

	cur chunk // the buffer being read
	off int   // how much of cur.b was read
	err error // sticky: rc's error, once reached
}

type chunk struct {
	b   []byte
	err error
}

func newReadahead(rc io.ReadCloser) *readahead {
	a := &readahead{
		rc:   rc,
		full: make(chan chunk, aheadBufs),
		free: make(chan []byte, aheadBufs),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range aheadBufs {
		a.free <- make([]byte, aheadSize)
	}
	go a.fill()
	return a
}

// fill reads rc into free buffers, each as full as rc gives before an
// error, and hands them over in order until rc fails or Close stops it.
func (a *readahead) fill() {
	defer close(a.done)
	for {
		var b []byte
		select {
		case b = <-a.free:
		case <-a.stop:
			return
		}
		n, err := 0, error(nil)
		for n < len(b) && err == nil {
			var m int
			m, err = a.rc.Read(b[n:])
			n += m
		}
		// full has room for every buffer: this never blocks.
		a.full <- chunk{b[:n], err}
		if err != nil {
			return
		}
	}
}

func (a *readahead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for a.off == len(a.cur.b) {
		if a.err != nil {
			return 0, a.err
		}
		if a.cur.b != nil {
			a.free <- a.cur.b[:cap(a.cur.b)]
		}
		a.cur, a.off = <-a.full, 0
		a.err = a.cur.err
	}
	n := copy(p, a.cur.b[a.off:])
	a.off += n
	if a.off == len(a.cur.b) && a.err != nil {
		// The error with the last bytes before it, as rc gave it.
		return n, a.err
	}
	return n, nil
}

// Close stops the read-ahead, waits until it no longer reads, and closes
// rc.
func (a *readahead) Close() error {
	a.once.Do(func() { close(a.stop) })
	<-a.done
	return a.rc.Close()
}
