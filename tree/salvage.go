package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Salvage. A damaged tree — a file removed by hand, a disk that lost
// some — often still records what it lost somewhere else: a manifest's
// .htaccess follows from the manifest's bytes, and a tag whose type map
// is gone is still named by nginx's links, tags/list or the journal of an
// interrupted tag move. Every rewrite of a repository's derived files
// starts from its type maps (updateRepo), so the first one after the
// damage — any export, delete or collection of the repository, or
// finishing an interrupted tag move — removes such a tag's last record.
// verify --repair therefore salvages first (MaintainOptions.Salvage) and
// names each tag it could not salvage; watch rewrites headers the same
// way but takes a type map removed for a tag deleted (DeriveRepo).

// RestoreHeaders rewrites the .htaccess of every complete manifest of
// repo whose headers are missing or disagree with it — no Content-Type,
// another Docker-Content-Digest, another Content-Type than the mediaType
// its bytes state — with the media type readStoredManifest tells, then
// gives the manifest its nginx typed link if it lacks that one. It
// returns the digests of the manifests whose headers it rewrote. A
// manifest whose bytes do not match its name, or whose media type
// nothing records, is left as it is (verify reports it); so are TripleO's
// headers with an ETag line, which are no damage (migrate rewrites them).
// Each file is published by a rename: a crash leaves the old headers or
// the new ones.
//
// Only call it holding the tree lock exclusively (inside Maintain).
func (r *Root) restoreRepoHeaders(repo string) ([]digest.Digest, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	return r.restoreHeaders(repo, true)
}

// restoreHeaders is RestoreHeaders; without thorough, only headers that
// are missing, name no Content-Type or another digest are rewritten, so
// that no manifest is read whose headers are whole.
func (r *Root) restoreHeaders(repo string, thorough bool) ([]digest.Digest, error) {
	ds, err := r.manifestDigests(repo)
	if err != nil {
		return nil, err
	}
	var fixed []digest.Digest
	for _, d := range ds {
		if !r.manifestComplete(repo, d) {
			continue
		}
		h, err := r.readHeaders(repo, d)
		var off bool
		switch {
		case errors.Is(err, ErrOutsideRoot):
			continue // verify names the link; nothing is written through it
		case errors.Is(err, fs.ErrNotExist):
			off = true
		case err != nil:
			continue
		default:
			off = h.ContentType == "" || h.Digest != d || len(h.Extra) > 0
		}
		if !off && !thorough {
			continue
		}
		m, err := r.readStoredManifest(repo, d)
		if err != nil {
			continue
		}
		if stated := m.manifest.MediaType; !off && (stated == "" || stated == h.ContentType) {
			continue
		}
		fix := manifestFix{repoDigest: repoDigest{repo, d}, mediaType: m.mediaType, headers: true}
		if link, ok := r.typedManifestPath(repo, d, m.mediaType); ok && !r.sameInode(r.manifestPath(repo, d), link) {
			fix.typed = true
		}
		if err := r.migrateManifest(fix); err != nil {
			return fixed, err
		}
		fixed = append(fixed, d)
	}
	return fixed, nil
}

// RestoredTag is a tag whose lost type map SalvageTags wrote again, or
// left for the journal that writes it.
type RestoredTag struct {
	Tag string
	// From says what recorded the tag: FromLinks or FromJournal.
	From string
}

// What recorded a restored tag.
const (
	FromLinks   = "nginx's links"
	FromJournal = "the journal of an interrupted tag move"
)

// LostTag is a tag the tree still records — tags/list lists it, or nginx
// has a link of its name — whose type map is gone and that SalvageTags
// could not write again. The next rewrite of the repository's derived
// files drops those records: only an export brings the tag back.
type LostTag struct {
	Tag string
	// Digest is the manifest nginx's link named, "" when no link did.
	Digest digest.Digest
	// Why says what recorded the tag and why that was not enough, a
	// phrase in the past tense: the records go with the next rewrite.
	Why string
}

// SalvageTags writes again the type map of every tag of repo that lost
// it while tags/list or nginx's links still record it, or whose type map
// cannot be read as one, as an export writes it (exportVariants): the
// manifest nginx's main link names — or, when only the fallback link is
// left, the manifest it names if that is an index, or an image that no
// index of the repository lists — with its media type, and for an index
// its linux/amd64 image at a low qs. A tag that the journal of an
// interrupted tag move names is left to the journal, which Maintain
// finishes next. It returns the tags restored and those it could not
// restore, each sorted; a tag whose unreadable type map it could not
// restore is neither: the type map stays, and verify names the tag.
//
// It writes, in PutTag's order, each restored tag's nginx links and type
// map, then tags/list, then _catalog, and nothing when it restores no
// tag. A crash in between loses nothing: the links of the tags not yet
// restored are still there.
//
// Only call it holding the tree lock exclusively (MaintainOptions.Salvage),
// before anything rewrites the repository's derived files.
func (r *Root) salvageRepoTags(repo string) ([]RestoredTag, []LostTag, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, nil, err
	}
	if !r.isRepoDir(r.repoDir(repo)) {
		return nil, nil, nil
	}
	l, err := r.lockRepo(repo)
	if err != nil {
		return nil, nil, err
	}
	restored, lost, err := r.salvageTags(repo)
	l.Unlock()
	if err != nil || !slices.ContainsFunc(restored, func(t RestoredTag) bool { return t.From == FromLinks }) {
		return restored, lost, err
	}
	return restored, lost, r.refreshCatalogFor(repo)
}

// salvageTags is SalvageTags under the repository lock.
func (r *Root) salvageTags(repo string) ([]RestoredTag, []LostTag, error) {
	missing, corrupt, err := r.tagsWithoutTypeMap(repo)
	if err != nil || len(missing)+len(corrupt) == 0 {
		return nil, nil, err
	}
	pending, err := r.pendingTags(repo)
	if err != nil {
		return nil, nil, err
	}
	var (
		restored []RestoredTag
		lost     []LostTag
		write    []string
		variants = map[string][]TagVariant{}
		ms       map[digest.Digest]*storedManifest
		unread   map[digest.Digest]error
	)
	lose := func(t LostTag) {
		// A corrupt type map is a record still: verify --repair names its
		// tag as one to export again, and nothing drops it.
		if !slices.Contains(corrupt, t.Tag) {
			lost = append(lost, t)
		}
	}
	for _, tag := range slices.Sorted(slices.Values(append(missing, corrupt...))) {
		if vs, ok := pending[tag]; ok {
			if vs != nil {
				restored = append(restored, RestoredTag{Tag: tag, From: FromJournal})
			}
			continue // the journal moves it, forward or back
		}
		main := r.tagLinkDigest(r.tagLinkPath(repo, tag))
		fallback := r.tagLinkDigest(r.fallbackLinkPath(repo, tag))
		if main == "" && fallback == "" {
			lose(LostTag{Tag: tag, Why: "tags/list listed it, but no nginx link named its manifest"})
			continue
		}
		if ms == nil {
			ms, unread = r.storedManifests(repo)
		}
		top := main
		if top == "" {
			var why string
			if top, why = fallbackTop(fallback, ms); top == "" {
				lose(LostTag{Tag: tag, Digest: fallback, Why: why})
				continue
			}
		}
		vs, ok := exportVariants(top, ms)
		if !ok {
			why := fmt.Sprintf("nginx's link named manifest %s, which is not in the repository", top)
			if err := unread[top]; err != nil {
				why = fmt.Sprintf("nginx's link named manifest %s: %v", top, err)
			}
			lose(LostTag{Tag: tag, Digest: top, Why: why})
			continue
		}
		variants[tag] = vs
		write = append(write, tag)
		restored = append(restored, RestoredTag{Tag: tag, From: FromLinks})
	}
	if len(write) == 0 {
		return restored, lost, nil
	}
	for _, tag := range write {
		m, err := r.tagTypeMap(repo, tag, variants[tag])
		if err != nil {
			return restored, lost, err
		}
		if err := r.writeTag(repo, tag, variants[tag], m); err != nil {
			return restored, lost, fmt.Errorf("tag %s:%s: %w", repo, tag, err)
		}
	}
	return restored, lost, r.rederiveTags(repo)
}

// tagsWithoutTypeMap lists, sorted, the tags of repo that tags/list or
// nginx's link directories name but that have no type map, nor a TripleO
// symlink tag (a tag still, which migrate converts); and the tags whose
// type map is there but cannot be read as one (bit rot, a truncation),
// which nginx's links may name too. A tags/list or link directory that
// cannot be read records nothing.
func (r *Root) tagsWithoutTypeMap(repo string) (missing, corrupt []string, err error) {
	have, err := r.tags(repo)
	if err != nil {
		return nil, nil, err
	}
	legacy, err := r.legacyTags(repo)
	if err != nil {
		return nil, nil, err
	}
	for _, tag := range have {
		vs, err := r.TagVariants(repo, tag)
		if (err == nil && len(vs) == 0) || (err != nil && !absentOrOutside(err)) {
			corrupt = append(corrupt, tag)
		}
	}
	recorded, _, _ := r.readTagsList(repo)
	for _, dir := range []string{tagLinksDir, fallbackLinksDir} {
		entries, _ := r.readDir(filepath.Join(r.manifestsDir(repo), dir))
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink != 0 && distribution.ValidateTag(e.Name()) == nil {
				recorded = append(recorded, e.Name())
			}
		}
	}
	for _, tag := range recorded {
		if distribution.ValidateTag(tag) == nil && !slices.Contains(have, tag) && !slices.Contains(legacy, tag) {
			missing = append(missing, tag)
		}
	}
	slices.Sort(missing)
	return slices.Compact(missing), corrupt, nil
}

// tagLinkDigest is the manifest the nginx tag link at path names, "" when
// there is no such link or it names none.
func (r *Root) tagLinkDigest(path string) digest.Digest {
	target, err := r.readlink(path)
	if err != nil {
		return ""
	}
	d, ok := strings.CutPrefix(target, "../")
	if !ok || distribution.ValidateDigest(digest.Digest(d)) != nil {
		return ""
	}
	return digest.Digest(d)
}

// storedManifests reads every complete manifest of repo
// (readStoredManifest), and says why for those it cannot read.
func (r *Root) storedManifests(repo string) (map[digest.Digest]*storedManifest, map[digest.Digest]error) {
	ms, unread := map[digest.Digest]*storedManifest{}, map[digest.Digest]error{}
	ds, _ := r.manifestDigests(repo)
	for _, d := range ds {
		if !r.manifestComplete(repo, d) {
			continue
		}
		m, err := r.readStoredManifest(repo, d)
		if err != nil {
			unread[d] = err
			continue
		}
		ms[d] = m
	}
	return ms, unread
}

// fallbackTop is the manifest a tag named whose only link left is its
// fallback link, naming fallback: an index names itself there when it has
// no linux/amd64 image, and an image tag names the same image in both
// links, but a multi-arch tag names its index in one and its image in the
// other. So fallback is the tag's manifest when it is an index, or an
// image no index of ms lists; otherwise which the tag named is unknown,
// and it returns "" and why.
func fallbackTop(fallback digest.Digest, ms map[digest.Digest]*storedManifest) (digest.Digest, string) {
	m, ok := ms[fallback]
	if !ok {
		return "", fmt.Sprintf("only nginx's fallback link was left, naming manifest %s, which is not in the repository", fallback)
	}
	if distribution.IsIndex(m.mediaType) {
		return fallback, ""
	}
	for _, d := range sortedDigests(ms) {
		if idx := ms[d]; distribution.IsIndex(idx.mediaType) && slices.ContainsFunc(idx.manifest.Manifests, func(c distribution.Descriptor) bool { return c.Digest == fallback }) {
			return "", fmt.Sprintf("only nginx's fallback link was left, naming %s, which index %s lists: the tag named one of the two", fallback, d)
		}
	}
	return fallback, ""
}
