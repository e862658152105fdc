package tree

import (
	"errors"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// What a watcher of the tree (package watch) needs: which entries feed
// which derived files, and how to re-derive those when someone other than
// image-serve — an rsync, an operator's rm -r — changed the tree. The type
// maps and manifests are the truth; tags/list, _catalog, nginx's links,
// the referrers indexes and the manifests' headers are derived from them, and re-deriving an
// unchanged repository writes nothing, so a watcher never loops on its
// own writes.

// Change says what a changed entry of the tree feeds.
type Change struct {
	// Repo is the repository whose derived files may follow from the
	// entry, "" for none. It may name a repository that no longer exists
	// or never did (a namespace directory): DeriveRepo finds nothing then.
	Repo string
	// Catalog reports that _catalog and the catalog page may follow: a
	// repository directory appeared or went, or one of the two itself
	// changed.
	Catalog bool
	// Watch reports that the entry, if it is a directory, holds entries
	// that feed derived files: a watcher must watch it.
	Watch bool
	// Tree reports that the entry is the root or its v2 directory: when it
	// is replaced, everything below may have changed.
	Tree bool
}

// Classify says what the entry at path, an absolute path at or below the
// root, feeds. It reads nothing. Entries that feed nothing — blobs, the
// state directory, temporary files, nginx's tag link directories (derived
// themselves), anything outside the root — get the zero Change.
func (r *Root) Classify(p string) Change {
	rel, err := r.name(p)
	if err != nil {
		return Change{}
	}
	if rel == "." {
		return Change{Watch: true, Tree: true}
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) == 1 && parts[0] == pageFile {
		return Change{Catalog: true} // the catalog page, derived with _catalog
	}
	if parts[0] != v2Dir {
		return Change{} // the state directory, or something of the admin's
	}
	parts = parts[1:]
	switch {
	case len(parts) == 0:
		return Change{Watch: true, Tree: true}
	case len(parts) == 1 && parts[0] == catalogFile:
		return Change{Catalog: true}
	case len(parts) == 1 && parts[0] == manifestFile:
		return Change{} // v2/index.json, /v2/'s answer: no repository
	}
	for _, c := range parts {
		if strings.HasPrefix(c, ".") && c != headersFile {
			return Change{} // temporary files, nginx's link directories
		}
	}
	i := slices.IndexFunc(parts, func(c string) bool { return layoutDirs[c] })
	if i < 0 {
		// A repository directory, or a namespace above some.
		c := Change{Catalog: true, Watch: true}
		if repo := path.Join(parts...); ValidateRepo(repo) == nil {
			c.Repo = repo
		}
		return c
	}
	repo, sub := path.Join(parts[:i]...), parts[i:]
	if i == 0 || ValidateRepo(repo) != nil {
		return Change{}
	}
	c := Change{Repo: repo}
	switch sub[0] {
	case blobsDir:
		// Blobs feed nothing derived; the directory itself makes a
		// repository a repository.
		if len(sub) == 1 {
			c.Catalog = true
		}
		return c
	case manifestsDir:
		switch len(sub) {
		case 1:
			c.Catalog, c.Watch = true, true
		case 2:
			// A type map, a TripleO symlink tag, or a manifest's directory.
			c.Watch = distribution.ValidateDigest(digest.Digest(sub[1])) == nil
		case 3:
		default:
			return Change{}
		}
		return c
	case tagsDir, referrersDir:
		switch len(sub) {
		case 1:
			c.Catalog, c.Watch = true, true
		case 2:
		default:
			return Change{}
		}
		return c
	}
	return Change{}
}

// WatchDirs lists the subdirectories of dir, a directory of the tree,
// that a watcher must watch (Classify says Watch). Symlinks are never
// among them: nothing below one is the tree's. A dir that is gone has
// none.
func (r *Root) WatchDirs(dir string) ([]string, error) {
	entries, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() && r.Classify(p).Watch {
			dirs = append(dirs, p)
		}
	}
	return dirs, nil
}

// Derived reports what DeriveRepo changed in a repository. The zero value
// is a repository whose derived files were all in step.
type Derived struct {
	Repo      string
	Headers   int  // manifest .htaccess files written
	TagsList  bool // tags/list rewritten, or removed with the last tag
	TagLinks  int  // nginx tag links (both kinds) added, re-pointed or removed
	Typed     int  // typed manifest links made for nginx
	Referrers int  // referrers indexes written or removed
	// Removed are the tags whose type map is gone and that tags/list or
	// nginx's links still named: DeriveRepo took each for deleted and
	// removed those records, and this is the last that names them.
	Removed []RemovedTag
}

// RemovedTag is a tag DeriveRepo removed from tags/list and nginx's links
// because its type map was gone.
type RemovedTag struct {
	Tag string
	// Digest is the manifest nginx's main link named, "" when there was
	// no such link.
	Digest digest.Digest
}

// Changed reports whether DeriveRepo wrote anything.
func (d Derived) Changed() bool {
	return d.Headers > 0 || d.TagsList || d.TagLinks > 0 || d.Typed > 0 || d.Referrers > 0 || len(d.Removed) > 0
}

// deriveRepo re-derives every derived file of repo from its manifests and
// type maps, in publish order: the headers of manifests whose .htaccess
// is missing or names no Content-Type or another digest (from the
// manifest's bytes, as verify --repair writes them: RestoreHeaders),
// nginx's typed links, the referrers indexes, then tags/list and nginx's
// tag links, and last the catalog page, which shows the repository's tags
// (_catalog, which names repositories only, is DeriveCatalog's). It
// writes only what is out of step, and reports what it changed of the
// repository (the page, the whole tree's, is not reported). A repository
// whose directory is gone (or never was one) has nothing to derive:
// DeriveRepo writes nothing for it, not even a lock file; DeriveCatalog
// drops it from _catalog and the page. Nor has a path through a
// symlink in the tree: writing there would rewrite the link target's
// tags/list under the link's name.
//
// The type maps are the truth here: a tag whose type map is gone is a tag
// deleted, by an operator's rm or by an rsync --delete that has not yet
// reached tags/list and nginx's links, so its entry in tags/list and its
// links go, and Removed names it with the manifest nginx served for it.
// Restoring it, as verify --repair does after damage, would fight such
// an rsync: the tag would come back between its runs.
//
// Only call it holding the tree lock exclusively: no export, delete or
// collection is then part way through its own steps, whose intermediate
// states look exactly like an rsync's and which that writer completes
// itself. It takes the repository lock, as every updater does.
func (r *Root) deriveRepo(repo string) (Derived, error) {
	d := Derived{Repo: repo}
	if err := ValidateRepo(repo); err != nil {
		return d, err
	}
	if !r.isRepoDir(r.repoDir(repo)) || errors.Is(r.checkRepoPath(repo), ErrRepoThroughLink) {
		return d, nil // no repository here (a link to one is none)
	}
	l, err := r.lockRepo(repo)
	if err != nil {
		return d, err
	}
	defer l.Unlock()
	before, err := r.derivedState(repo)
	if err != nil {
		return d, err
	}
	headers, err := r.restoreHeaders(repo, false)
	d.Headers = len(headers)
	if err != nil {
		return d, err
	}
	if d.Typed, err = r.linkManifests(repo); err != nil {
		return d, err
	}
	if err := r.rewriteReferrers(repo, nil); err != nil {
		return d, err
	}
	if err := r.rederiveTags(repo); err != nil {
		return d, err
	}
	after, err := r.derivedState(repo)
	if err != nil {
		return d, err
	}
	d.TagsList = before.tagsList != after.tagsList
	d.TagLinks = countDiff(before.links, after.links)
	d.Referrers = countDiff(before.referrers, after.referrers)
	if d.Removed, err = r.removedTags(repo, before); err != nil {
		return d, err
	}
	cl, err := r.lockCatalog() // lock order: repository, then catalog
	if err != nil {
		return d, err
	}
	defer cl.Unlock()
	return d, r.writePageFor([]string{repo}, false)
}

// removedTags lists, sorted, the tags that before recorded — in tags/list
// or as nginx links — and that have no type map now, leaving out TripleO
// symlink tags, which are tags still.
func (r *Root) removedTags(repo string, before derivedState) ([]RemovedTag, error) {
	recorded := slices.Clone(before.listed)
	for k := range before.links {
		_, tag, _ := strings.Cut(k, "/")
		recorded = append(recorded, tag)
	}
	slices.Sort(recorded)
	have, err := r.tags(repo)
	if err != nil {
		return nil, err
	}
	legacy, err := r.legacyTags(repo)
	if err != nil {
		return nil, err
	}
	var removed []RemovedTag
	for _, tag := range slices.Compact(recorded) {
		if slices.Contains(have, tag) || slices.Contains(legacy, tag) || distribution.ValidateTag(tag) != nil {
			continue
		}
		d, _ := strings.CutPrefix(before.links[tagLinksDir+"/"+tag], "../")
		if distribution.ValidateDigest(digest.Digest(d)) != nil {
			d = ""
		}
		removed = append(removed, RemovedTag{Tag: tag, Digest: digest.Digest(d)})
	}
	return removed, nil
}

// derivedState is what DeriveRepo may rewrite in a repository, to compare
// before and after: tags/list's bytes ("" for none) and the tags it lists,
// each tag link's target, each referrers index's bytes.
type derivedState struct {
	tagsList  string
	listed    []string
	links     map[string]string
	referrers map[string]string
}

func (r *Root) derivedState(repo string) (derivedState, error) {
	s := derivedState{links: map[string]string{}, referrers: map[string]string{}}
	b, err := r.readSmall(r.tagsListPath(repo), maxListSize)
	switch {
	case err == nil:
		s.tagsList = string(b)
		if l, err := distribution.ParseTagsList(b); err == nil && l.Name == repo {
			s.listed = l.Tags
		}
	case !errors.Is(err, fs.ErrNotExist):
		s.tagsList = "\x00unreadable" // replaced by any rewrite
	}
	for _, dir := range []string{tagLinksDir, fallbackLinksDir} {
		entries, err := r.readDir(filepath.Join(r.manifestsDir(repo), dir))
		if err != nil {
			continue // missing or unreadable: no links there
		}
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink == 0 || isTempName(e.Name()) {
				continue
			}
			target, _ := r.readlink(filepath.Join(r.manifestsDir(repo), dir, e.Name()))
			s.links[dir+"/"+e.Name()] = target
		}
	}
	subjects, err := r.referrerSubjects(repo)
	if err != nil {
		return s, nil // an unreadable directory: counted as changed if rewritten
	}
	for _, sub := range subjects {
		b, _ := r.readReferrers(repo, sub)
		s.referrers[sub.String()] = string(b)
	}
	return s, nil
}

// countDiff counts the keys whose values differ between a and b, or that
// only one has.
func countDiff(a, b map[string]string) int {
	n := 0
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			n++
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			n++
		}
	}
	return n
}

// CatalogChange reports what DeriveCatalog changed.
type CatalogChange struct {
	Added, Removed []string // repositories
	Rewritten      bool     // _catalog was rewritten (also when it was unreadable)
	Page           bool     // the catalog page was rewritten
}

// deriveCatalog rewrites _catalog and the catalog page from the
// repositories on disk if they are out of step, and reports what changed. Call it holding the tree lock
// exclusively, for the reason DeriveRepo says.
func (r *Root) deriveCatalog() (CatalogChange, error) {
	var c CatalogChange
	before, readErr := r.readCatalog()
	raw, _ := r.readSmall(r.catalogPath(), maxListSize)
	page, _ := r.readSmall(r.pagePath(), maxListSize)
	if err := r.refreshCatalog(); err != nil {
		return c, err
	}
	newPage, _ := r.readSmall(r.pagePath(), maxListSize)
	c.Page = string(page) != string(newPage)
	after, err := r.readCatalog()
	if err != nil {
		return c, err
	}
	now, _ := r.readSmall(r.catalogPath(), maxListSize)
	c.Rewritten = readErr != nil || string(raw) != string(now)
	for _, repo := range after {
		if !slices.Contains(before, repo) {
			c.Added = append(c.Added, repo)
		}
	}
	for _, repo := range before {
		if !slices.Contains(after, repo) {
			c.Removed = append(c.Removed, repo)
		}
	}
	return c, nil
}
