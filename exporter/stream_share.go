package exporter

import (
	"context"
	"io"
	"sync"
)

// Planning an image of a store on this machine reads all of it — a
// docker save stream has no index, so the manifest is known only at its
// end — into temporary files its blobs are then read from. Two jobs of
// one batch naming the same image (two tags of one build, or a sync's
// tags that name one image ID) share that one read instead of each
// asking podman or the engine for the whole image again.

// streamShare hands the jobs of one planning pass the streamed sources
// they name, one read per reference while any job holds it.
type streamShare struct {
	mu      sync.Mutex
	streams map[string]*sharedStream
}

// sharedStream is one streamed source and how many jobs hold it
// (counted under streamShare.mu).
type sharedStream struct {
	once sync.Once
	s    source
	name string
	err  error
	refs int
}

// shareable reports whether src is read whole to be planned: the
// sources worth sharing.
func shareable(src SourceRef) bool {
	return src.Transport == transportContainersStorage || src.Transport == transportDockerDaemon
}

// open opens src, or, when another job of the pass holds it open, shares
// that read: the first caller reads it, later ones wait for that read and
// get its result, error included (a reference that failed fails every
// job of the pass naming it, asked once). Each source returned is closed
// by its holder; the read's temporary files go with the last, and a job
// opening the reference after that reads it anew.
func (sh *streamShare) open(ctx context.Context, src SourceRef, o Options) (source, string, error) {
	key := src.String()
	sh.mu.Lock()
	if sh.streams == nil {
		sh.streams = map[string]*sharedStream{}
	}
	st := sh.streams[key]
	if st == nil {
		st = &sharedStream{}
		sh.streams[key] = st
	}
	st.refs++
	sh.mu.Unlock()
	st.once.Do(func() { st.s, st.name, st.err = openSource(ctx, src, o) })
	if st.err != nil {
		// Kept: every job of the pass naming it fails alike, asking once.
		return nil, "", st.err
	}
	return &streamHold{share: sh, key: key, st: st}, st.name, nil
}

// release lets go of one hold on st; true for the last.
func (sh *streamShare) release(key string, st *sharedStream) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st.refs--
	if st.refs > 0 {
		return false
	}
	if sh.streams[key] == st {
		delete(sh.streams, key)
	}
	return true
}

// streamHold is one job's hold on a shared stream: its Close lets go of
// it once, and the last to let go closes the stream.
type streamHold struct {
	share  *streamShare
	key    string
	st     *sharedStream
	closed sync.Once
}

func (h *streamHold) Close() error {
	var err error
	h.closed.Do(func() {
		if h.share.release(h.key, h.st) {
			err = h.st.s.Close()
		}
	})
	return err
}

func (h *streamHold) Root(ctx context.Context) ([]byte, string, error) { return h.st.s.Root(ctx) }

func (h *streamHold) Manifest(ctx context.Context, d Descriptor) ([]byte, error) {
	return h.st.s.Manifest(ctx, d)
}

func (h *streamHold) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	return h.st.s.Blob(ctx, d)
}
