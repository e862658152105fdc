package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// isTerminal reports whether f is a character device: progress bars go to
// people, not to log files.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ttyProgress draws one line per blob, like skopeo, redrawn in place.
type ttyProgress struct {
	w     io.Writer
	mu    sync.Mutex
	order []digest.Digest
	blobs map[digest.Digest]*blobState
	drawn int // lines drawn last time
	stop  chan struct{}
	done  chan struct{}
}

type blobState struct {
	size, got int64
	status    string
}

func newTTYProgress(w io.Writer) *ttyProgress {
	p := &ttyProgress{w: w, blobs: map[digest.Digest]*blobState{}, stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *ttyProgress) loop() {
	defer close(p.done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			p.draw()
		case <-p.stop:
			p.draw()
			return
		}
	}
}

// Close draws the final state and stops redrawing.
func (p *ttyProgress) Close() {
	close(p.stop)
	<-p.done
}

func (p *ttyProgress) BlobStart(d digest.Digest, size int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.blobs[d]; !ok {
		p.order = append(p.order, d)
	}
	p.blobs[d] = &blobState{size: size, status: "copying"}
}

func (p *ttyProgress) BlobBytes(d digest.Digest, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.blobs[d]; b != nil {
		b.got += n
	}
}

func (p *ttyProgress) BlobDone(d digest.Digest, outcome tree.BlobOutcome, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.blobs[d]
	if b == nil {
		return
	}
	switch {
	case err != nil:
		b.status = "failed"
	case outcome == tree.BlobFetched:
		b.status = "done"
	default:
		b.status = "skipped: already exists"
	}
}

func (p *ttyProgress) draw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn) // back to the first line
	}
	for _, d := range p.order {
		b := p.blobs[d]
		fmt.Fprintf(p.w, "\x1b[2KCopying blob %s %s %s\n", short(d), bar(b.got, b.size), b.status)
	}
	p.drawn = len(p.order)
}

func short(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

func bar(got, size int64) string {
	const width = 30
	if size <= 0 {
		return humanBytes(got)
	}
	n := int(float64(width) * float64(min(got, size)) / float64(size))
	return fmt.Sprintf("[%-*s] %s / %s", width, strings.Repeat("=", n), humanBytes(got), humanBytes(size))
}

// sizeText is a byte count for people, exact below 1 KiB and with the
// exact count beside it above: "233 B", "1.2 MiB (1234567 bytes)".
func sizeText(n int64) string {
	if n < 1024 {
		return humanBytes(n)
	}
	return fmt.Sprintf("%s (%d bytes)", humanBytes(n), n)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
