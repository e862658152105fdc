package tree

import (
	"context"

	"github.com/opencontainers/go-digest"
)

// The tree has three kinds of users, and each gets a view of its own: a
// *Root is all three, but a package holding a Publisher or a Reader can
// do nothing else to the tree, and the compiler says so.
//
//   - Publisher: what an exporter writes through — one protocol, Publish,
//     which owns the order of every step.
//   - Reader: what a server reads through — the files it serves, as an
//     fs.FS confined to the root (FS), tags and what they resolve to.
//     Nothing in it changes the tree, and nothing in it is a path.
//   - Maintenance (gc, delete, repair, migrate, watch) works on the *Root
//     inside Maintain, which holds the tree alone.

// Publisher is the view an exporter writes through.
type Publisher interface {
	Publish(ctx context.Context, images []Image, o PublishOptions) (*PublishReport, error)
	Dir() string
}

// Reader is the view a server reads through. It names no path: a server
// opens and stats what it serves through FS, by the names the route
// table's templates expand to (Match.Expand), and reads a tag's variants
// and a manifest's media type by their names in the registry.
type Reader interface {
	Dir() string
	State() (RootState, error)
	FS() FS
	TagVariants(repo, tag string) ([]TagVariant, error)
	ManifestMediaType(repo string, d digest.Digest) (string, error)
}

var (
	_ Publisher = (*Root)(nil)
	_ Reader    = (*Root)(nil)
)
