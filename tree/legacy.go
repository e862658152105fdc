package tree

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

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
	if distribution.ValidateDigest(d) != nil || !r.manifestComplete(repo, d) {
		return "", false
	}
	return d, true
}

// legacyTagTarget is the manifest the TripleO symlink tag of repo names,
// and false when tag is no such tag.
func (r *Root) legacyTagTarget(repo, tag string) (digest.Digest, bool) {
	if ValidateRepo(repo) != nil {
		return "", false
	}
	return r.legacyTag(repo, tag)
}

// legacyTags lists the tags of repo that are TripleO symlink tags, sorted:
// what verify reports as legacy, and what an export of the tag rewrites.
func (r *Root) legacyTags(repo string) ([]string, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	entries, err := r.readDir(r.manifestsDir(repo))
	if errors.Is(err, fs.ErrNotExist) {
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
	rel, err := filepath.Rel(r.v2Dir(), repoDir)
	if err != nil || ValidateRepo(filepath.ToSlash(rel)) != nil {
		return false
	}
	_, ok := r.legacyTag(filepath.ToSlash(rel), tag)
	return ok
}

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

// LegacyKind names one convention of trees TripleO's exporter wrote that
// every command reads as it is, and that Migrate rewrites.
type LegacyKind string

// The conventions, as verify names them.
const (
	// LegacyBlob: a layer stored as blobs/<digest>.gz only.
	LegacyBlob LegacyKind = "gz-blob"
	// LegacyHeaders: a manifest .htaccess with TripleO's unquoted ETag line.
	LegacyHeaders LegacyKind = "etag-header"
	// LegacyRepoHeaders: a per-repository manifests/.htaccess.
	LegacyRepoHeaders LegacyKind = "repository-htaccess"
	// LegacyTypeMap: a multi-arch type map without qs, which Apache ranks
	// by size.
	LegacyTypeMap LegacyKind = "size-ranked-type-map"
	// LegacySymlinkTag: a tag stored as a symlink to its digest directory.
	LegacySymlinkTag LegacyKind = "symlink-tag"
	// LegacyTagsList: a tags/list listing the right tags unsorted, or
	// listing symlink tags.
	LegacyTagsList LegacyKind = "unsorted-tags-list"
	// LegacyCatalog: a _catalog unsorted, or of two-level names only.
	LegacyCatalog LegacyKind = "tripleo-catalog"
	// LegacyMode: a file or directory of another mode than 0644 or 0755,
	// as an export under umask 077 left them (0600, 0700).
	LegacyMode LegacyKind = "mode"
)

// LegacyFinding is one legacy convention found at Path.
type LegacyFinding struct {
	Kind LegacyKind
	Path string
}

// Describe says what the convention is, for verify's line.
func (k LegacyKind) Describe() string {
	switch k {
	case LegacyBlob:
		return "a layer stored only as <digest>.gz (TripleO's name; a server-wide AddEncoding breaks it under TripleO's vhost)"
	case LegacyHeaders:
		return "TripleO's headers, with an unquoted ETag line that never matches"
	case LegacyRepoHeaders:
		return "TripleO's per-repository .htaccess (MultiviewsMatch Handlers: phantom tags under MultiViews)"
	case LegacyTypeMap:
		return "a multi-arch type map without qs: Apache serves the smaller variant, so arm64 nodes may get the amd64 image"
	case LegacySymlinkTag:
		return "a TripleO symlink tag: no server serves it and tags/list does not list it, but gc keeps what it names"
	case LegacyTagsList:
		return "TripleO's tags/list: unsorted, or listing symlink tags"
	case LegacyCatalog:
		return "TripleO's _catalog: unsorted, or of two-level names only"
	case LegacyMode:
		return "mode left by a umask of 077: a web server running as another user cannot read it"
	}
	return string(k)
}

// legacyConventions lists the legacy conventions Migrate would rewrite in
// repos (all of the tree, _catalog and modes included, when empty), by
// path. It changes nothing and takes no lock: the caller holds the tree
// lock (verify holds it shared).
func (r *Root) legacyConventions(repos []string) ([]LegacyFinding, error) {
	p, err := r.planMigration(repos)
	if err != nil {
		return nil, err
	}
	return p.findings, nil
}

// catalogTripleO reports whether a _catalog listing listed, when the
// repositories with tags are repos, is TripleO's: the same repositories
// unsorted, or only (and all) those of two-level names.
func catalogTripleO(listed, repos []string) bool {
	if slices.Equal(sortedCopy(listed), repos) {
		return true
	}
	var twoLevel []string
	for _, repo := range repos {
		if TwoLevel(repo) {
			twoLevel = append(twoLevel, repo)
		}
	}
	return slices.Equal(sortedCopy(listed), twoLevel)
}

// TwoLevel reports whether repo is a name TripleO's _catalog listed
// before 2022-03: <namespace>/<name>.
func TwoLevel(repo string) bool { return strings.Count(repo, "/") == 1 }
