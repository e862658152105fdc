package tree

import (
	"context"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
)

// The tree has three kinds of users, and each gets a view of its own: a
// *Root is all three, but a package holding a Publisher or a Reader can
// do nothing else to the tree, and the compiler says so.
//
//   - Publisher: what an exporter writes through — one protocol, Publish,
//     which owns the order of every step.
//   - Reader: what a server reads through — paths it may open (only inside
//     the root, through OpenInTree and OpenBlob), tags and what they
//     resolve to, referrers indexes. Nothing in it changes the tree.
//   - Maintenance (gc, delete, repair, migrate, watch) works on the *Root
//     inside Maintain, which holds the tree alone.

// Publisher is the view an exporter writes through.
type Publisher interface {
	Publish(ctx context.Context, images []Image, o PublishOptions) (*PublishReport, error)
	Dir() string
}

// Reader is the view a server reads through. Its paths are for OpenInTree
// and for identifying files (a cache keys on them); they are never opened
// by name.
type Reader interface {
	Dir() string
	State() (RootState, error)
	PingPath() string
	CatalogPath() string
	TagsListPath(repo string) string
	TypeMapPath(repo, tag string) string
	ManifestPath(repo string, d digest.Digest) string
	HeadersPath(repo string, d digest.Digest) string
	OpenInTree(path string) (*os.File, error)
	StatInTree(path string) (fs.FileInfo, error)
	OpenBlob(repo string, d digest.Digest) (*os.File, error)
	TagVariants(repo, tag string) ([]TagVariant, error)
	ManifestMediaType(repo string, d digest.Digest) (string, error)
	HasManifests(repo string) bool
	ReadReferrers(repo string, subject digest.Digest) ([]byte, error)
}

var (
	_ Publisher = (*Root)(nil)
	_ Reader    = (*Root)(nil)
)
