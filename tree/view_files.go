package tree

import (
	"context"
	"errors"
	"io/fs"
	"slices"

	"github.com/opencontainers/go-digest"
)

// The reads below return, with what they read, the name of the file it
// came from: a checker names the file a problem is about, and must not
// build that name itself (only the tree knows the layout). The names are
// the files' absolute paths, as verify has always printed them; they are
// for people to read, and every read of the tree goes through the View.

// Context is the root's context: a long read (verify's re-hashing) stops
// between two steps once it is done.
func (v *View) Context() context.Context { return v.r.Context() }

// RepoEntry is a repository as a View finds it.
type RepoEntry struct {
	Name string
	Path string // its directory, for reports
	// Exists is whether the directory is there, tagged or not.
	Exists bool
}

// Repository looks repo up: whether its directory exists, and its name
// for a report that says it does not. A directory reached through a
// symlink leading outside the root does not exist in the tree. It fails
// only for a name that is no repository name.
func (v *View) Repository(repo string) (RepoEntry, error) {
	if err := ValidateRepo(repo); err != nil {
		return RepoEntry{}, err
	}
	e := RepoEntry{Name: repo, Path: v.r.repoDir(repo)}
	_, err := v.r.statInTree(e.Path)
	e.Exists = !absentOrOutside(err)
	return e, nil
}

// BlobFile is a blob file of a repository and its name for reports.
type BlobFile struct {
	StoredBlob
	Path string
}

// BlobFiles is Blobs with each file's name.
func (v *View) BlobFiles(repo string) ([]BlobFile, error) {
	bs, err := v.r.blobs(repo)
	if err != nil {
		return nil, err
	}
	out := make([]BlobFile, len(bs))
	for i, b := range bs {
		out[i] = BlobFile{b, v.r.blobFilePath(repo, b)}
	}
	return out, nil
}

// MissingBlobs lists, sorted and each once, the blobs of ds that repo does
// not hold (under either name, plain or legacy), each named by where it
// belongs: what a checker reports as missing. It reads the blobs
// directory once.
func (v *View) MissingBlobs(repo string, ds []digest.Digest) ([]BlobFile, error) {
	bs, err := v.r.blobs(repo)
	if err != nil {
		return nil, err
	}
	held := map[digest.Digest]bool{}
	for _, b := range bs {
		held[b.Digest] = true
	}
	var out []BlobFile
	for _, d := range slices.Compact(slices.Sorted(slices.Values(ds))) {
		if !held[d] {
			out = append(out, BlobFile{StoredBlob{Digest: d}, v.r.blobPath(repo, d)})
		}
	}
	return out, nil
}

// TagEntry is what a tag names, and the file that records it.
type TagEntry struct {
	Tag  string
	Path string // the type map, or a TripleO symlink tag's symlink
	// Legacy marks a TripleO symlink tag: Variants is then its one
	// manifest, with neither media type nor quality (the symlink records
	// none).
	Legacy   bool
	Variants []TagVariant
}

// Tag reads what tag of repo names, by the one rule every reader of a
// tag follows: its type map; or, where it has none, the manifest its
// TripleO symlink names. A type map that leads outside the root is no
// missing one: its error is returned, the symlink tag not consulted. It
// fails with an error matching fs.ErrNotExist when repo has no such tag.
// The entry names the file even when the read fails.
func (v *View) Tag(repo, tag string) (TagEntry, error) {
	e := TagEntry{Tag: tag, Path: v.r.typeMapPath(repo, tag)}
	vs, err := v.r.TagVariants(repo, tag)
	if errors.Is(err, fs.ErrNotExist) {
		if d, ok := v.r.legacyTagTarget(repo, tag); ok {
			e.Path, e.Legacy, e.Variants = v.r.legacyTagPath(repo, tag), true, []TagVariant{{Digest: d}}
			return e, nil
		}
	}
	e.Variants = vs
	return e, err
}

// TagNames lists, sorted, every tag of repo a person would call one: those
// with a type map (Tags) and TripleO's symlink tags (LegacyTags), each once.
func (v *View) TagNames(repo string) ([]string, error) {
	tags, err := v.r.tags(repo)
	if err != nil {
		return nil, err
	}
	legacy, err := v.r.legacyTags(repo)
	if err != nil {
		return nil, err
	}
	tags = append(tags, legacy...)
	slices.Sort(tags)
	return slices.Compact(tags), nil
}

// Listing is a derived listing file — a repository's tags/list, or
// _catalog — as read.
type Listing struct {
	Path   string // for reports, set even when the read fails
	Names  []string
	Exists bool
}

// Catalog reads _catalog (ReadCatalog). Exists is true when it was read.
func (v *View) Catalog() (Listing, error) {
	l := Listing{Path: v.r.catalogPath()}
	var err error
	l.Names, err = v.r.readCatalog()
	l.Exists = err == nil
	return l, err
}

// ReferrersFile is the stored referrers index of one subject.
type ReferrersFile struct {
	Path  string // for reports, set even when the read fails
	Index []byte
}

// ReferrersFile reads the referrers index of subject in repo
// (ReadReferrers).
func (v *View) ReferrersFile(repo string, subject digest.Digest) (ReferrersFile, error) {
	f := ReferrersFile{Path: v.r.referrersPath(repo, subject)}
	var err error
	f.Index, err = v.r.readReferrers(repo, subject)
	return f, err
}
