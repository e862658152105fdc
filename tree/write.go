package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"

	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// BlobOutcome says how a blob came to be in a repository.
type BlobOutcome int

const (
	BlobPresent BlobOutcome = iota // the repository had it already
	BlobLinked                     // hard-linked from another repository
	BlobFetched                    // fetched from the source
)

// FetchFunc opens a blob's bytes. PutBlob calls it only when no repository
// of the tree holds the blob.
type FetchFunc func() (io.ReadCloser, error)

// PutBlob makes blob d (size bytes, -1 if unknown) available in repo. The
// blob is fetched only when the tree has no sound copy anywhere; a
// per-digest lock held across processes makes concurrent exports of
// images sharing layers fetch each shared blob once. Bytes are verified
// while streaming and published only when they match.
//
// A copy already in the tree is sound when its size is the declared one
// (a truncated file is replaced, not reused) and, with verify, when its
// bytes hash to d: re-hashing every reused blob is slow, so only
// export --verify-existing asks for it.
func (r *Root) PutBlob(repo string, d digest.Digest, size int64, verify bool, fetch FetchFunc) (BlobOutcome, int64, error) {
	if err := ValidateRepo(repo); err != nil {
		return 0, 0, err
	}
	if err := ValidateDigest(d); err != nil {
		return 0, 0, err
	}
	if r.hasSoundBlob(repo, d, size, verify) {
		return BlobPresent, 0, nil
	}
	l, err := r.lockBlob(d)
	if err != nil {
		return 0, 0, err
	}
	defer l.Unlock()
	if r.hasSoundBlob(repo, d, size, verify) {
		return BlobPresent, 0, nil
	}
	if src, ok := r.findBlob(d, size, verify); ok {
		// publishHardLink, not link: a broken copy of this repository's
		// is replaced, never kept because its name exists.
		if err := r.mkdirAll(filepath.Dir(r.BlobPath(repo, d))); err != nil {
			return 0, 0, err
		}
		if err := r.publishHardLink(src, r.BlobPath(repo, d)); err != nil {
			return 0, 0, fmt.Errorf("blob %s: link from %s: %w", d, src, err)
		}
		return BlobLinked, 0, nil
	}
	if err := r.checkSpace(d, size); err != nil {
		return 0, 0, err
	}
	rc, err := fetch()
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	n, err := r.publishVerified(r.BlobPath(repo, d), d, size, rc)
	if err != nil {
		return BlobFetched, n, fmt.Errorf("blob %s: %w", d, err)
	}
	return BlobFetched, n, nil
}

// hasSoundBlob reports whether repo holds a sound copy of blob d: under
// its plain name or, when it has none, its legacy one (readers prefer the
// plain name, so a broken plain copy is not made good by a legacy one).
func (r *Root) hasSoundBlob(repo string, d digest.Digest, size int64, verify bool) bool {
	p := r.BlobPath(repo, d)
	if !r.isFile(p) {
		p = r.LegacyBlobPath(repo, d)
	}
	return r.soundBlob(p, d, size, verify)
}

// soundBlob reports whether the file at path is blob d: a regular file of
// size bytes (when size is known) whose bytes, with verify, hash to d.
//
// Only a regular file counts, never a symlink: blobs are shared as hard
// links, and a link of a symlink would be a symlink.
func (r *Root) soundBlob(path string, d digest.Digest, size int64, verify bool) bool {
	fi, err := r.lstat(path)
	if err != nil || !fi.Mode().IsRegular() || (size >= 0 && fi.Size() != size) {
		return false
	}
	if !verify {
		return true
	}
	f, err := r.open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := d.Algorithm().Hash()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return digest.NewDigest(d.Algorithm(), h) == d
}

// findBlob looks for a sound copy of blob d in every repository of the
// tree. The list is read afresh each time: another process may have just
// added a repository.
func (r *Root) findBlob(d digest.Digest, size int64, verify bool) (string, bool) {
	repos, _ := r.repoDirs()
	for _, repo := range repos {
		for _, p := range []string{r.BlobPath(repo, d), r.LegacyBlobPath(repo, d)} {
			if r.soundBlob(p, d, size, verify) {
				return p, true
			}
		}
	}
	return "", false
}

// checkSpace refuses a blob of size bytes that the tree's file system has
// no room for, before the first byte is written: a source declaring a
// huge blob must not fill the disk the served tree lives on. An unknown
// size (-1) or free space passes; the write then finds out.
func (r *Root) checkSpace(d digest.Digest, size int64) error {
	if size < 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.V2Dir(), &st); err != nil {
		return nil
	}
	if free := int64(st.Bavail) * st.Bsize; size > free {
		return fmt.Errorf("blob %s: %d bytes declared, but the file system of %s has only %d bytes free", d, size, r.Dir(), free)
	}
	return nil
}

// MaxManifestSize is the largest manifest we store, as distribution and
// containerd cap it.
const MaxManifestSize = 4 << 20

// mediaTypePattern is RFC 6838's type/subtype: nothing that could break out
// of the quotes of an .htaccess line.
var mediaTypePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`)

// PutManifest stores manifest raw, whose digest must be d, in repo with its
// media type, headers first so that the manifest is never served without
// them.
func (r *Root) PutManifest(repo string, d digest.Digest, mediaType string, raw []byte) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := ValidateDigest(d); err != nil {
		return err
	}
	if !mediaTypePattern.MatchString(mediaType) {
		return fmt.Errorf("manifest %s: invalid media type %q", d, mediaType)
	}
	if len(raw) > MaxManifestSize {
		return fmt.Errorf("manifest %s: %d bytes, over the %d byte limit", d, len(raw), MaxManifestSize)
	}
	if got := d.Algorithm().FromBytes(raw); got != d {
		return fmt.Errorf("manifest %s: content does not match its digest (got %s)", d, got)
	}
	if err := r.writeIfChanged(r.HeadersPath(repo, d), headers(d, mediaType)); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	if err := r.writeIfChanged(r.ManifestPath(repo, d), raw); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	if err := r.linkTypedManifest(repo, d, mediaType); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	return nil
}

// headers is the .htaccess Apache reads next to a manifest. No ETag line:
// Apache compares If-None-Match with its own ETag before mod_headers runs,
// so a digest ETag never matches (serving-notes §3.10).
func headers(d digest.Digest, mediaType string) []byte {
	return fmt.Appendf(nil, "Header set Content-Type %q\nHeader set Docker-Content-Digest %q\n", mediaType, d)
}

// TagVariant is one manifest a tag offers.
type TagVariant struct {
	Digest    digest.Digest
	MediaType string
	// QS is the source quality Apache multiplies with the client's q; 0
	// leaves it out (1.0). Multi-variant tags must set it, or Apache breaks
	// ties by size and serves the smaller manifest (serving-notes §3.1).
	QS float64
}

// PutTag points tag of repo at variants, then rewrites the repository's
// tags/list and the catalog. Every variant's manifest must already be in
// the tree: a tag is the last thing published.
func (r *Root) PutTag(repo, tag string, variants []TagVariant) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := ValidateTag(tag); err != nil {
		return err
	}
	m := typemap.Map{URI: tag}
	for _, v := range variants {
		if !r.isFile(r.ManifestPath(repo, v.Digest)) {
			return fmt.Errorf("tag %s:%s: manifest %s is not in the tree", repo, tag, v.Digest)
		}
		m.Variants = append(m.Variants, typemap.Variant{URI: typeMapURI(v.Digest), ContentType: v.MediaType, QS: v.QS})
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	if err := r.updateRepo(repo, func() error {
		if err := r.putTagLinks(repo, tag, variants); err != nil {
			return err
		}
		if err := r.writeIfChanged(r.TypeMapPath(repo, tag), m.Marshal()); err != nil {
			return err
		}
		// A TripleO symlink tag of the same name is now the type map.
		return r.unlinkLegacyTag(repo, tag)
	}); err != nil {
		return fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	return r.RefreshCatalog()
}

// updateRepo runs change under the repository lock and then rewrites
// tags/list and nginx's tag links from the type maps on disk, so
// concurrent taggers never lose each other's tags.
func (r *Root) updateRepo(repo string, change func() error) error {
	l, err := r.lockRepo(repo)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := change(); err != nil {
		return err
	}
	if err := r.writeTagsList(repo, ""); err != nil {
		return err
	}
	return r.syncTagLinks(repo)
}

// writeTagsList rewrites repo's tags/list from its type maps, leaving out
// the tag leaving ("" for none): a tag about to be deleted.
func (r *Root) writeTagsList(repo, leaving string) error {
	all, err := r.Tags(repo)
	if err != nil {
		return err
	}
	tags := slices.DeleteFunc(all, func(t string) bool { return t == leaving })
	if len(tags) == 0 {
		// No tags: no repository for clients (NAME_UNKNOWN) nor _catalog.
		if _, err := r.lstat(r.TagsListPath(repo)); errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
			return nil
		}
		if err := r.unlink(r.TagsListPath(repo)); err != nil {
			return err
		}
		return r.syncDir(filepath.Dir(r.TagsListPath(repo)))
	}
	b, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo, tags})
	if err != nil {
		return err
	}
	return r.writeIfChanged(r.TagsListPath(repo), b)
}

// RefreshCatalog rewrites _catalog from the repositories on disk.
func (r *Root) RefreshCatalog() error {
	l, err := r.lockCatalog()
	if err != nil {
		return err
	}
	defer l.Unlock()
	repos, err := r.Repositories()
	if err != nil {
		return err
	}
	b, err := json.Marshal(struct {
		Repositories []string `json:"repositories"`
	}{repos})
	if err != nil {
		return err
	}
	return r.writeIfChanged(r.CatalogPath(), b)
}

// ManifestMediaType reads the media type recorded for manifest d of repo.
func (r *Root) ManifestMediaType(repo string, d digest.Digest) (string, error) {
	h, err := r.ReadHeaders(repo, d)
	if err != nil {
		return "", err
	}
	if h.ContentType == "" {
		return "", fmt.Errorf("%s: no Content-Type header", r.HeadersPath(repo, d))
	}
	return h.ContentType, nil
}

// OpenBlob opens blob d of repo under its plain or legacy name.
// A blob whose path leads outside the tree is not found: the error says
// so (ErrOutsideRoot) unless the legacy name is found instead.
func (r *Root) OpenBlob(repo string, d digest.Digest) (*os.File, error) {
	f, err := r.open(r.BlobPath(repo, d))
	if !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	f, lerr := r.open(r.LegacyBlobPath(repo, d))
	if errors.Is(lerr, fs.ErrNotExist) && errors.Is(err, ErrOutsideRoot) {
		return nil, err
	}
	return f, lerr
}
