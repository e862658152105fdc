package tree

import (
	"errors"
	"strings"

	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// ErrNotAcceptable reports a tag none of whose manifests the client
// accepts: Apache's 406.
var ErrNotAcceptable = errors.New("no variant of the tag matches the Accept header")

// A Resolution is the manifest a tag serves one request.
type Resolution struct {
	Digest digest.Digest
	// MediaType is the type the tag's type map gives the manifest.
	MediaType string
	// Vary reports a tag whose variants differ in media type, whose
	// answers depend on Accept (mod_negotiation then sends "Vary: accept",
	// on a 406 too).
	Vary bool
}

// A TagResolver resolves the tags of one tree as Apache's type-map
// handler does.
type TagResolver struct {
	Root Reader
	// Variants reads the variants a tag offers; nil is Root.TagVariants. A
	// server that keeps parsed type maps supplies its own.
	Variants func(repo, tag string) ([]TagVariant, error)
	// FS stats the manifests a tag offers, to weigh them by size; the zero
	// FS is Root.FS(). A server passes the FS it holds for the request
	// (FS.Hold).
	FS FS
}

// resolveTag is TagResolver{Root: r}.ResolveTag.
func (r *Root) resolveTag(repo, tag, accept string) (Resolution, error) {
	return TagResolver{Root: r}.ResolveTag(repo, tag, accept)
}

// ResolveTag picks the manifest tag of repo serves to a client whose
// Accept header is accept (several fields joined by ", "; "" for none), by
// Apache's rules (typemap.Negotiate): ties go to the smaller manifest file.
// It reads the tag's type map once, so the answer is one state of the tag
// however often it moves. The error is ErrNotAcceptable, with the
// Resolution's Vary set, when the client accepts no variant, and wraps
// fs.ErrNotExist for a tag without a type map: TripleO's symlink tags are
// not served (LegacyTags lists them). It does not open the manifest.
func (t TagResolver) ResolveTag(repo, tag, accept string) (Resolution, error) {
	read := t.Variants
	if read == nil {
		read = t.Root.TagVariants
	}
	variants, err := read(repo, tag)
	if err != nil {
		return Resolution{}, err
	}
	vs := make([]typemap.Variant, len(variants))
	for i, v := range variants {
		vs[i] = TypeMapVariant(v)
	}
	fsys := t.FS
	if fsys.r == nil {
		fsys = t.Root.FS()
	}
	length := func(v typemap.Variant) int64 {
		d, err := VariantDigest(v)
		if err != nil {
			return -1
		}
		fi, err := fsys.Stat(Match{Repo: repo, Digest: d}.Expand(manifestFileT))
		if err != nil {
			return -1 // as Apache's failed stat
		}
		return fi.Size()
	}
	res := Resolution{Vary: varyByType(variants)}
	chosen, ok := typemap.Negotiate(vs, accept, length)
	if !ok {
		return res, ErrNotAcceptable
	}
	if res.Digest, err = VariantDigest(chosen); err != nil {
		return Resolution{}, err
	}
	res.MediaType = chosen.ContentType
	return res, nil
}

// varyByType reports whether the variants differ in media type.
func varyByType(variants []TagVariant) bool {
	for _, v := range variants {
		if !strings.EqualFold(v.MediaType, variants[0].MediaType) {
			return true
		}
	}
	return false
}
