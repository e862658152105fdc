package tree

import (
	"errors"
	"io/fs"
	"path/filepath"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Legacy tags. From 2018-12 to 2019-04 TripleO's exporter wrote a tag as
// a symlink, manifests/<tag> -> the digest directory (absolute or
// relative), and rewrote it as a type map only on the repository's next
// write; trees still hold them. No server of ours serves such a link, so
// it is not among Tags (tags/list would otherwise list a tag answering
// 404), but nothing loses it either: gc keeps what it names, verify
// names it, delete removes it, and the next PutTag of the tag replaces it
// with a type map. Only the link's last element is read: the digest it
// names is then read as this repository's manifest, by its own path, so
// a link pointing elsewhere leads nowhere.

// legacyTagPath is where TripleO's symlink tag lived.
func (r *Root) legacyTagPath(repo, tag string) string {
	return filepath.Join(r.manifestsDir(repo), tag)
}

// legacyTag returns the manifest the symlink tag of repo names, and false
// when tag is no such link or names no manifest of repo.
func (r *Root) legacyTag(repo, tag string) (digest.Digest, bool) {
	if distribution.ValidateTag(tag) != nil {
		return "", false
	}
	target, err := r.readlink(r.legacyTagPath(repo, tag))
	if err != nil {
		return "", false
	}
	d := digest.Digest(filepath.Base(target))
	if distribution.ValidateDigest(d) != nil || !r.ManifestComplete(repo, d) {
		return "", false
	}
	return d, true
}

// LegacyTagTarget is the manifest the TripleO symlink tag of repo names,
// and false when tag is no such tag.
func (r *Root) LegacyTagTarget(repo, tag string) (digest.Digest, bool) {
	if ValidateRepo(repo) != nil {
		return "", false
	}
	return r.legacyTag(repo, tag)
}

// LegacyTags lists the tags of repo that are TripleO symlink tags, sorted:
// what verify reports as legacy, and what an export of the tag rewrites.
func (r *Root) LegacyTags(repo string) ([]string, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	entries, err := r.readDir(r.manifestsDir(repo))
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if _, ok := r.legacyTag(repo, e.Name()); ok {
			tags = append(tags, e.Name())
		}
	}
	return tags, nil
}

// isLegacyTagLink reports whether the symlink at path is a TripleO
// symlink tag, which may be absolute (TripleO wrote absolute ones) without
// leading anywhere: only its last element is read.
func (r *Root) isLegacyTagLink(path string) bool {
	dir, tag := filepath.Split(path)
	if filepath.Base(dir) != manifestsDir {
		return false
	}
	repoDir := filepath.Dir(filepath.Clean(dir))
	rel, err := filepath.Rel(r.V2Dir(), repoDir)
	if err != nil || ValidateRepo(filepath.ToSlash(rel)) != nil {
		return false
	}
	_, ok := r.legacyTag(filepath.ToSlash(rel), tag)
	return ok
}

// LegacyTagPath is the symlink of a legacy tag, for messages.
func (r *Root) LegacyTagPath(repo, tag string) string { return r.legacyTagPath(repo, tag) }

// unlinkLegacyTag removes tag's symlink, if it is one, and syncs the
// directory.
func (r *Root) unlinkLegacyTag(repo, tag string) error {
	if _, ok := r.legacyTag(repo, tag); !ok {
		return nil
	}
	if err := r.unlink(r.legacyTagPath(repo, tag)); err != nil {
		return err
	}
	return r.syncDir(r.manifestsDir(repo))
}
