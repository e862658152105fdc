package exporter

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
)

// Descriptor names a piece of content by digest, as manifests do.
type Descriptor struct {
	MediaType string        `json:"mediaType,omitempty"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls,omitempty"`
}

// A source reads one image reference: the manifest the reference names and,
// by digest, every manifest and blob reachable from it. Sources hand out
// bytes exactly as stored; the exporter verifies every digest itself, so a
// source need not (but may) verify.
type source interface {
	// Root returns the exact bytes of the manifest the reference names and
	// its media type as the source labels it ("" when the source has no
	// label; the exporter then derives it from the bytes).
	Root(ctx context.Context) (raw []byte, mediaType string, err error)
	// Manifest returns the exact bytes of the manifest d.
	Manifest(ctx context.Context, d Descriptor) ([]byte, error)
	// Blob opens the bytes of blob d as stored (compressed layers stay
	// compressed). The caller closes it.
	Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error)
	// Close releases connections and temporary files.
	Close() error
}
