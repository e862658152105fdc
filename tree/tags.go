package tree

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// ErrTagUnknown reports a tag that is not in the tree.
var ErrTagUnknown = errors.New("tag unknown")

// deleteTag removes tag from repo, then rewrites tags/list and the
// catalog. A repository left without tags loses its tags/list, so it
// leaves the catalog; its manifests and blobs stay for gc (or a prune) to
// reclaim. Tags go first, so a crash never leaves a tag naming something
// already removed.
//
// The order within: tags/list stops listing the tag, then nginx's links
// go, then the type map. A crash in between leaves a tag that some server
// still serves but no listing names — never a listed tag that answers 404.
func (r *Root) deleteTag(repo, tag string) error { return r.deleteTagIf(repo, tag, nil) }

// deleteTagIf is deleteTag, with check run once the repository's lock is
// held and the tag found: a tag writer cannot move the tag between what
// check reads and the removal, and an error from check leaves the tag
// as it was.
func (r *Root) deleteTagIf(repo, tag string, check func() error) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := distribution.ValidateTag(tag); err != nil {
		return err
	}
	err := r.updateRepo(repo, func() error {
		_, err := r.lstat(r.typeMapPath(repo, tag))
		_, legacy := r.legacyTag(repo, tag)
		switch {
		case errors.Is(err, ErrOutsideRoot):
			return err
		case errors.Is(err, fs.ErrNotExist) && !legacy:
			return fmt.Errorf("%s:%s: %w", repo, tag, ErrTagUnknown)
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		if err := r.writeTagsList(repo, tag); err != nil {
			return err
		}
		if err := r.removeTagLinks(repo, tag); err != nil {
			return err
		}
		// The type map, and a TripleO symlink tag of the same name.
		if err := r.unlink(r.typeMapPath(repo, tag)); err != nil {
			return err
		}
		if err := r.unlinkLegacyTag(repo, tag); err != nil {
			return err
		}
		return r.syncDir(r.manifestsDir(repo))
	})
	if err != nil {
		return err
	}
	return r.refreshCatalogFor(repo)
}

// refreshTags rewrites repo's tags/list from its type maps, as every tag
// update does. A writer killed between the two leaves them disagreeing
// until this runs again.
func (r *Root) refreshTags(repo string) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	return r.updateRepo(repo, func() error { return nil })
}

// tagsInStep reports whether what is derived from repo's type maps agrees
// with tags, the names of those that parse (ListableTags): tags/list lists
// exactly them, and nginx's tag
// link directories hold a link for each and for no other. A writer killed
// between its steps leaves them out of step; RefreshTags sets them right.
// Checking first lets a collection of an unchanged repository write
// nothing. Links are compared by name only: one naming the wrong manifest
// (an export killed between its links and its type map) is re-derived by
// the repository's next update, which a collection runs before it deletes
// any manifest of the repository.
func (r *Root) tagsInStep(repo string, tags []string) (bool, error) {
	listed, ok, err := r.readTagsList(repo)
	if err != nil || ok != (len(tags) > 0) || !slices.Equal(listed, tags) {
		return false, nil // a broken tags/list is out of step too
	}
	for _, dir := range []string{tagLinksDir, fallbackLinksDir} {
		entries, err := r.readDir(filepath.Join(r.manifestsDir(repo), dir))
		if errors.Is(err, ErrOutsideRoot) {
			return false, nil // out of step: the update that sets it right refuses the link
		}
		if errors.Is(err, fs.ErrNotExist) {
			if len(tags) == 0 {
				continue
			}
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var names []string
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, tags) {
			return false, nil
		}
	}
	return true, nil
}

// readTagsList returns the tags repo's tags/list names, and false when
// the repository has no tags/list.
func (r *Root) readTagsList(repo string) ([]string, bool, error) {
	b, err := r.readSmall(r.tagsListPath(repo), maxListSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	l, err := distribution.ParseTagsList(b)
	if err != nil {
		return nil, true, fmt.Errorf("%s: %v", r.tagsListPath(repo), err)
	}
	if l.Name != repo {
		return nil, true, fmt.Errorf("%s: names repository %q", r.tagsListPath(repo), l.Name)
	}
	return l.Tags, true, nil
}

// maxListSize bounds what ReadTagsList reads: far more than any real
// tags/list, far less than memory.
const maxListSize = 64 << 20

// tags lists the tags of repo, sorted ASCIIbetically as the spec demands:
// one per type map on disk, the source of truth tags/list is built from.
// TripleO's symlink tags are not among them: no server serves them
// (LegacyTags lists them).
func (r *Root) tags(repo string) ([]string, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	entries, err := r.readDir(r.manifestsDir(repo))
	if errors.Is(err, fs.ErrNotExist) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	tags := []string{}
	for _, e := range entries {
		tag, ok := strings.CutSuffix(e.Name(), typeMapExt)
		if ok && e.Type().IsRegular() && distribution.ValidateTag(tag) == nil {
			tags = append(tags, tag)
		}
	}
	sort.Strings(tags)
	return tags, nil
}

// TagVariants reads the manifests tag of repo offers.
func (r *Root) TagVariants(repo, tag string) ([]TagVariant, error) {
	if err := distribution.ValidateTag(tag); err != nil {
		return nil, err
	}
	b, err := r.readSmall(r.typeMapPath(repo, tag), MaxManifestSize)
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

// typeMapPath is the tag: an Apache type map naming the manifests it offers.
func (r *Root) typeMapPath(repo, tag string) string {
	return filepath.Join(r.manifestsDir(repo), tag+typeMapExt)
}

// tagsListPath answers GET /v2/<repo>/tags/list.
func (r *Root) tagsListPath(repo string) string {
	return filepath.Join(r.repoDir(repo), tagsDir, tagsListFile)
}

// typeMapURI is a type map's reference to manifest d, relative to the
// manifests directory as Apache resolves it.
func typeMapURI(d digest.Digest) string { return d.String() + "/index.json" }

// digestFromTypeMapURI inverts typeMapURI.
func digestFromTypeMapURI(uri string) (digest.Digest, error) {
	d := digest.Digest(strings.TrimSuffix(uri, "/index.json"))
	if err := distribution.ValidateDigest(d); err != nil || !strings.HasSuffix(uri, "/index.json") {
		return "", fmt.Errorf("type map URI %q does not name a manifest", uri)
	}
	return d, nil
}

// What the read-only views (list, inspect, du) need of the tree, beyond
// what servers and collectors read.

// tagChanged is when tag of repo was last set: the modification time of
// its type map, which every retag replaces.
//
// A TripleO symlink tag was last set when its symlink was made.
func (r *Root) tagChanged(repo, tag string) (time.Time, error) {
	if err := distribution.ValidateTag(tag); err != nil {
		return time.Time{}, err
	}
	fi, err := r.lstat(r.typeMapPath(repo, tag))
	if errors.Is(err, fs.ErrNotExist) {
		if _, ok := r.legacyTag(repo, tag); ok {
			fi, err = r.lstat(r.legacyTagPath(repo, tag))
		}
	}
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
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

// Preferred is the variant of a tag a client that states no preference
// gets: the highest quality, 0 standing for Apache's default 1, and the
// first of equals, as Apache keeps it. vs must not be empty.
func Preferred(vs []TagVariant) TagVariant {
	return slices.MaxFunc(vs, func(a, b TagVariant) int { return cmp.Compare(qsOf(a.QS), qsOf(b.QS)) })
}

// qsOf is a type map's quality, 0 standing for Apache's default 1.
func qsOf(qs float64) float64 {
	if qs == 0 {
		return 1
	}
	return qs
}

// putTag points tag of repo at variants, then rewrites the repository's
// tags/list and the catalog. Every variant's manifest must already be in
// the tree: a tag is the last thing published.
func (r *Root) putTag(repo, tag string, variants []TagVariant) error {
	if err := r.moveTag(repo, tag, variants); err != nil {
		return err
	}
	return r.refreshCatalogFor(repo)
}

// moveTag is putTag up to the catalog: the tag's links and type map,
// then the repository's tags/list, all under the repository lock. The
// caller refreshes the catalog for repo afterwards.
func (r *Root) moveTag(repo, tag string, variants []TagVariant) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := distribution.ValidateTag(tag); err != nil {
		return err
	}
	m, err := r.tagTypeMap(repo, tag, variants)
	if err != nil {
		return err
	}
	if err := r.updateRepo(repo, func() error { return r.writeTag(repo, tag, variants, m) }); err != nil {
		return fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	return nil
}

// tagTypeMap is the type map of tag offering variants, each of whose
// manifests must be in the tree.
func (r *Root) tagTypeMap(repo, tag string, variants []TagVariant) ([]byte, error) {
	m := typemap.Map{URI: tag}
	for _, v := range variants {
		if !r.isFile(r.manifestPath(repo, v.Digest)) {
			return nil, fmt.Errorf("tag %s:%s: manifest %s is not in the tree", repo, tag, v.Digest)
		}
		m.Variants = append(m.Variants, TypeMapVariant(v))
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("tag %s:%s: %w", repo, tag, err)
	}
	return m.Marshal(), nil
}

// writeTag points tag at variants, whose type map is typeMap: nginx's
// links, then the type map, then the removal of a TripleO symlink tag of
// the same name, which the type map now is. The caller holds the
// repository lock and rewrites tags/list afterwards.
func (r *Root) writeTag(repo, tag string, variants []TagVariant, typeMap []byte) error {
	if err := r.putTagLinks(repo, tag, variants); err != nil {
		return err
	}
	if err := r.writeIfChanged(r.typeMapPath(repo, tag), typeMap); err != nil {
		return err
	}
	return r.unlinkLegacyTag(repo, tag)
}

// IndexChild is an entry of an index as Variants weighs it: its digest,
// its platform, and the media type of the manifest it names as stored
// ("" when that manifest is not at hand).
type IndexChild struct {
	Digest           digest.Digest
	MediaType        string
	OS, Architecture string
}

// Variants is the one quality policy of a tag, for export and migrate
// alike: a tag naming an image offers it alone (no qs); a tag naming an
// index or a manifest list offers it at qs 1 and, when one of children
// is a linux/amd64 image at hand, that image at amd64FallbackQS, so that
// clients taking indexes get the index and those taking none the image,
// as from a distribution registry — never whichever Apache finds smaller.
func Variants(top TagVariant, children []IndexChild) []TagVariant {
	if !distribution.IsIndex(top.MediaType) {
		return []TagVariant{{Digest: top.Digest, MediaType: top.MediaType}}
	}
	vs := []TagVariant{{Digest: top.Digest, MediaType: top.MediaType, QS: 1}}
	for _, c := range children {
		if c.OS == "linux" && c.Architecture == "amd64" && c.MediaType != "" && !distribution.IsIndex(c.MediaType) {
			return append(vs, TagVariant{Digest: c.Digest, MediaType: c.MediaType, QS: amd64FallbackQS})
		}
	}
	return vs
}

// exportVariants is Variants of a stored manifest top: what an export of
// it writes, ms holding the repository's manifests (readStoredManifest);
// false when top is not among them.
func exportVariants(top digest.Digest, ms map[digest.Digest]*storedManifest) ([]TagVariant, bool) {
	m, ok := ms[top]
	if !ok {
		return nil, false
	}
	var children []IndexChild
	for _, c := range m.manifest.Manifests {
		child := IndexChild{Digest: c.Digest}
		if c.Platform != nil {
			child.OS, child.Architecture = c.Platform.OS, c.Platform.Architecture
		}
		if cm, ok := ms[c.Digest]; ok {
			child.MediaType = cm.mediaType
		}
		children = append(children, child)
	}
	return Variants(TagVariant{Digest: top, MediaType: m.mediaType}, children), true
}

// amd64FallbackQS is the quality of a multi-arch tag's linux/amd64 image
// next to its index: clients that accept the index get it (q × 1.0),
// those that take image manifests only get the image, as from a
// distribution registry.
const amd64FallbackQS = 0.001

// updateRepo runs change under the repository lock and then rewrites
// tags/list and nginx's tag links from the type maps on disk, so
// concurrent taggers never lose each other's tags.
func (r *Root) updateRepo(repo string, change func() error) error {
	if err := r.checkRepoPath(repo); err != nil {
		return err
	}
	l, err := r.lockRepo(repo)
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := change(); err != nil {
		return err
	}
	return r.rederiveTags(repo)
}

// rederiveTags rewrites repo's tags/list and nginx's tag links from its
// type maps, each read once for both.
func (r *Root) rederiveTags(repo string) error {
	tm, err := r.readTypeMaps(repo)
	if err != nil {
		return err
	}
	if err := r.writeTagsListOf(repo, tm.listable()); err != nil {
		return err
	}
	return r.syncTagLinksOf(repo, tm)
}

// typeMaps are a repository's type maps as read once: every tag that has
// one, and the variants of those whose type map parses and offers a
// manifest.
type typeMaps struct {
	tags     []string
	variants map[string][]TagVariant
}

func (r *Root) readTypeMaps(repo string) (typeMaps, error) {
	tags, err := r.tags(repo)
	if err != nil {
		return typeMaps{}, err
	}
	tm := typeMaps{tags: tags, variants: make(map[string][]TagVariant, len(tags))}
	for _, tag := range tags {
		if vs, err := r.TagVariants(repo, tag); err == nil && len(vs) > 0 {
			tm.variants[tag] = vs
		}
	}
	return tm, nil
}

// listable are the tags tags/list names, sorted (ListableTags).
func (tm typeMaps) listable() []string {
	return slices.DeleteFunc(slices.Clone(tm.tags), func(tag string) bool { return tm.variants[tag] == nil })
}

// listableTags lists, sorted, the tags of repo that tags/list names: those
// whose type map parses and offers a manifest. A type map that does not
// (garbage, emptied, truncated) is a tag no client can pull — every
// request for it would answer 500 — so it is left out of tags/list, and
// out of _catalog when it is the repository's only one; verify names it.
func (r *Root) listableTags(repo string) ([]string, error) {
	tm, err := r.readTypeMaps(repo)
	if err != nil {
		return nil, err
	}
	return tm.listable(), nil
}

// errNoVariants is the complaint about a type map that parses but offers
// no manifest.
var errNoVariants = errors.New("type map offers no manifest")

// writeTagsList rewrites repo's tags/list from its type maps that parse
// (ListableTags), leaving out the tag leaving ("" for none): a tag about
// to be deleted.
func (r *Root) writeTagsList(repo, leaving string) error {
	all, err := r.listableTags(repo)
	if err != nil {
		return err
	}
	return r.writeTagsListOf(repo, slices.DeleteFunc(all, func(t string) bool { return t == leaving }))
}

// writeTagsListOf writes tags as repo's tags/list, or removes it when
// there are none.
func (r *Root) writeTagsListOf(repo string, tags []string) error {
	if len(tags) == 0 {
		// No tags: no repository for clients (NAME_UNKNOWN) nor _catalog.
		if _, err := r.lstat(r.tagsListPath(repo)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err := r.unlink(r.tagsListPath(repo)); err != nil {
			return err
		}
		return r.syncDir(filepath.Dir(r.tagsListPath(repo)))
	}
	return r.writeIfChanged(r.tagsListPath(repo), distribution.TagsList{Name: repo, Tags: tags}.Marshal())
}
