package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// layoutDirs are the directories of a repository; anything else below a
// repository directory is a nested repository.
var layoutDirs = map[string]bool{"blobs": true, "manifests": true, "tags": true, referrersDir: true}

// repoDirs lists every repository directory of the tree: a directory with
// any of blobs/, manifests/, tags/ or referrers/, published or still being
// written. Each directory is read once, and what its entries are tells a
// repository: no stat of its layout directories, no symlink descended.
func (r *Root) repoDirs() ([]string, error) {
	var repos []string
	var visit func(dir, repo string) error
	visit = func(dir, repo string) error {
		entries, err := r.readDir(dir)
		if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
			return nil // removed while we walked
		}
		if err != nil {
			return err
		}
		if repo != "" && slices.ContainsFunc(entries, func(e fs.DirEntry) bool {
			return layoutDirs[e.Name()] && (e.IsDir() || e.Type()&fs.ModeSymlink != 0 && r.isDir(filepath.Join(dir, e.Name())))
		}) {
			repos = append(repos, repo)
		}
		for _, e := range entries {
			name := e.Name()
			if !e.IsDir() || layoutDirs[name] || strings.HasPrefix(name, ".") {
				continue // a symlink to a directory is no repository: never followed
			}
			if err := visit(filepath.Join(dir, name), path.Join(repo, name)); err != nil {
				return err
			}
		}
		return nil
	}
	err := visit(r.V2Dir(), "")
	return repos, err
}

// isRepoDir reports whether dir is a repository's directory.
func (r *Root) isRepoDir(dir string) bool {
	for d := range layoutDirs {
		if r.isDir(filepath.Join(dir, d)) {
			return true
		}
	}
	return false
}

// Repositories lists the published repositories, those with a tags/list,
// sorted: the content of _catalog.
func (r *Root) Repositories() ([]string, error) {
	dirs, err := r.repoDirs()
	if err != nil {
		return nil, err
	}
	repos := []string{}
	for _, repo := range dirs {
		if ValidateRepo(repo) == nil && r.isFile(r.TagsListPath(repo)) {
			repos = append(repos, repo)
		}
	}
	sort.Strings(repos)
	return repos, nil
}

// Tags lists the tags of repo, sorted ASCIIbetically as the spec demands:
// one per type map on disk, the source of truth tags/list is built from.
// TripleO's symlink tags are not among them: no server serves them
// (LegacyTags lists them).
func (r *Root) Tags(repo string) ([]string, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	entries, err := r.readDir(r.manifestsDir(repo))
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	tags := []string{}
	for _, e := range entries {
		tag, ok := strings.CutSuffix(e.Name(), typeMapExt)
		if ok && e.Type().IsRegular() && ValidateTag(tag) == nil {
			tags = append(tags, tag)
		}
	}
	sort.Strings(tags)
	return tags, nil
}

// TagVariants reads the manifests tag of repo offers.
func (r *Root) TagVariants(repo, tag string) ([]TagVariant, error) {
	if err := ValidateTag(tag); err != nil {
		return nil, err
	}
	b, err := r.readSmall(r.TypeMapPath(repo, tag), MaxManifestSize)
	if err != nil {
		return nil, err
	}
	m, err := typemap.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	vs := make([]TagVariant, 0, len(m.Variants))
	for _, v := range m.Variants {
		d, err := digestFromTypeMapURI(v.URI)
		if err != nil {
			return nil, fmt.Errorf("tag %s:%s: %w", repo, tag, err)
		}
		vs = append(vs, TagVariant{Digest: d, MediaType: v.ContentType, QS: v.QS})
	}
	return vs, nil
}

// TypeMapVariant converts a TagVariant to the type-map record Apache reads.
func TypeMapVariant(v TagVariant) typemap.Variant {
	return typemap.Variant{URI: typeMapURI(v.Digest), ContentType: v.MediaType, QS: v.QS}
}

// VariantDigest inverts TypeMapVariant's URI.
func VariantDigest(v typemap.Variant) (digest.Digest, error) { return digestFromTypeMapURI(v.URI) }

// SweepTemps removes temporary files left by writers that crashed before
// their rename. Only call it holding the tree lock exclusively: a live
// writer's temporary file looks the same.
func (r *Root) SweepTemps() (int, error) {
	n, err := r.SweepIncoming()
	if err != nil {
		return n, err
	}
	err = r.walkDir(r.V2Dir(), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		// regular files, and the symlinks of nginx's tag links
		if (e.Type().IsRegular() || e.Type()&fs.ModeSymlink != 0) && isTempName(e.Name()) {
			if err := r.unlink(path); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// isTempName matches renameio's temporary names: "." + target + digits.
func isTempName(name string) bool {
	if !strings.HasPrefix(name, ".") || name == ".htaccess" {
		return false
	}
	trimmed := strings.TrimRight(name, "0123456789")
	return len(trimmed) < len(name) && len(trimmed) > 1
}
