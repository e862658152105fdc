package tree

import (
	"errors"
	"io/fs"

	"github.com/opencontainers/go-digest"
)

// What a publisher reads before it publishes. An exporter that mirrors a
// source again and again (sync) asks the source for a tag's digest only,
// and must compare it with what the tree's tag already names, to skip
// what has not moved without fetching a manifest. That read belongs to
// the publisher's side — it decides what to hand to Publish — and not to
// a server's (Reader) or to maintenance: it is the one thing an exporter
// reads of the tree.

// TagDigest is the manifest tag of repo names first in its type map: the
// top manifest an export of it tagged (an index, or the image itself).
// ok is false, with no error, when the tree has no such tag. Like every
// read of the tree it stays inside the root and reads a regular file
// only; a type map that does not parse is an error, and so is a tag name
// or repository name that is not valid.
//
// While a tag move a crashed writer left is pending (a journal in the
// tree), ok is false for every tag: a type map may already name the new
// manifest while tags/list and nginx's links do not, and only a Publish
// finishes that move (it settles the journals first). A caller that
// skips what the tree "has" would otherwise leave the move half done.
func (r *Root) TagDigest(repo, tag string) (d digest.Digest, ok bool, err error) {
	if err := ValidateRepo(repo); err != nil {
		return "", false, err
	}
	if r.hasJournals() {
		return "", false, nil
	}
	vs, err := r.TagVariants(repo, tag)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if len(vs) == 0 {
		return "", false, errors.New("tag " + repo + ":" + tag + ": its type map offers no manifest")
	}
	return vs[0].Digest, true, nil
}
