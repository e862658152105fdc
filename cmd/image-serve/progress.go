package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/exporter"
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

func (p *ttyProgress) loop() { redrawLoop(p.stop, p.done, func(bool) { p.draw() }) }

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

// runProgress is sync's display: one line for the whole run, redrawn in
// place — images whose blobs are all in the tree out of those the run
// publishes, bytes fetched out of the bytes left to fetch, and the rate
// so far — rather than one line per blob: a release is hundreds of
// blobs. The images are those that moved; unchanged and immutable tags
// are in the summary at the end.
type runProgress struct {
	w     io.Writer
	mu    sync.Mutex
	state runState
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

// runState is what runProgress draws; renderRun draws it.
type runState struct {
	images []map[digest.Digest]bool // each image's blobs; true once in the tree
	sizes  map[digest.Digest]int64  // every blob of the run, once
	reused map[digest.Digest]bool   // blobs the tree had: nothing to fetch
	got    int64                    // bytes read from the sources
	failed int                      // blobs that failed
}

func newRunProgress(w io.Writer) *runProgress {
	p := &runProgress{w: w, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
		state: runState{sizes: map[digest.Digest]int64{}, reused: map[digest.Digest]bool{}}}
	go p.loop()
	return p
}

func (p *runProgress) loop() { redrawLoop(p.stop, p.done, p.draw) }

// redrawLoop redraws a progress display five times a second until stop,
// then once more as final, and closes done.
func redrawLoop(stop <-chan struct{}, done chan<- struct{}, draw func(final bool)) {
	defer close(done)
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			draw(false)
		case <-stop:
			draw(true)
			return
		}
	}
}

// Close draws the final state, ends its line and stops redrawing; a run
// that published nothing draws nothing.
func (p *runProgress) Close() {
	close(p.stop)
	<-p.done
}

func (p *runProgress) Planned(images []exporter.PlannedImage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, im := range images {
		blobs := map[digest.Digest]bool{}
		for _, b := range im.Blobs {
			blobs[b.Digest] = false
			p.state.sizes[b.Digest] = b.Size
		}
		p.state.images = append(p.state.images, blobs)
	}
}

func (p *runProgress) BlobStart(digest.Digest, int64) {}

func (p *runProgress) BlobBytes(_ digest.Digest, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state.got += n
}

func (p *runProgress) BlobDone(d digest.Digest, outcome tree.BlobOutcome, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.state.failed++
		return
	}
	if outcome != tree.BlobFetched && !p.state.done(d) {
		p.state.reused[d] = true
	}
	for _, im := range p.state.images {
		if _, ok := im[d]; ok {
			im[d] = true
		}
	}
}

// done reports whether d is in the tree already for some image.
func (s *runState) done(d digest.Digest) bool {
	for _, im := range s.images {
		if im[d] {
			return true
		}
	}
	return false
}

// draw redraws the line in place; the last one ends it.
func (p *runProgress) draw(last bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.state.images) == 0 {
		return
	}
	end := ""
	if last {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r\x1b[2K%s%s", renderRun(p.state, time.Since(p.start)), end)
}

// renderRun is the line for s, elapsed into the run: "Syncing 3/12
// images, 45.2 MiB / 120.0 MiB, 5.1 MiB/s". The bytes to fetch are
// those of the run's distinct blobs less those the tree already had.
func renderRun(s runState, elapsed time.Duration) string {
	done := 0
	for _, im := range s.images {
		all := true
		for _, ok := range im {
			all = all && ok
		}
		if all {
			done++
		}
	}
	var total int64
	for d, n := range s.sizes {
		if !s.reused[d] {
			total += n
		}
	}
	rate := "-"
	if elapsed > 0 {
		rate = humanBytes(int64(float64(s.got)/elapsed.Seconds())) + "/s"
	}
	line := fmt.Sprintf("Syncing %d/%d images, %s / %s, %s", done, len(s.images), humanBytes(s.got), humanBytes(total), rate)
	if s.failed > 0 {
		line += fmt.Sprintf(", blobs failed: %d", s.failed)
	}
	return line
}
