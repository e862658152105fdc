package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// nginx reads neither type maps nor .htaccess files, cannot negotiate, and
// cannot set Content-Type from a variable; it can only type a file by its
// extension and follow symlinks (serving-notes §5.1, §5.3). So the tree
// carries three more kinds of entry for it, each derived from what Apache
// reads and written by the same writers, so that a change is visible to
// nginx on the next request with no reload:
//
//	manifests/<digest>/manifest.<ext>   hard link of index.json; <ext> names its media type
//	manifests/.tags/<tag>               -> ../<digest>: the variant clients that take indexes get
//	manifests/.tags-fallback/<tag>      -> ../<digest>: the variant for clients that take none
//
// The symlink directories are dot directories, which no server serves.
// The type maps stay the truth: tags/list, the catalog and gc read them,
// and every repository update re-derives the symlinks from them, which
// repairs whatever a crashed writer left.

// NginxType is a manifest media type nginx can serve, and the extension of
// the typed link that tells it the type.
type NginxType struct {
	Ext       string // "oci-manifest": the link is manifest.oci-manifest
	MediaType string
	Index     bool // an index or a manifest list: never a fallback variant
}

// nginxTypes are the media types the exporter stores
// (distribution.ManifestTypes), commonest first: nginx tries the links in
// this order, one stat each. A manifest of any other type gets no typed
// link, so nginx answers 404 for it rather than serve it under a type its
// body contradicts.
var nginxTypes = func() []NginxType {
	var ts []NginxType
	for _, t := range distribution.ManifestTypes() {
		ts = append(ts, NginxType{Ext: t.NginxExt, MediaType: t.MediaType, Index: t.Index})
	}
	return ts
}()

// NginxTypes lists the media types nginx serves, in the order the nginx
// template tries their typed links.
func NginxTypes() []NginxType { return append([]NginxType(nil), nginxTypes...) }

// nginxType finds the entry of mediaType.
func nginxType(mediaType string) (NginxType, bool) {
	for _, t := range nginxTypes {
		if t.MediaType == mediaType {
			return t, true
		}
	}
	return NginxType{}, false
}

// typedManifestPath is the typed link of manifest d for mediaType, and
// false for a media type nginx has no extension for.
func (r *Root) typedManifestPath(repo string, d digest.Digest, mediaType string) (string, bool) {
	t, ok := nginxType(mediaType)
	if !ok {
		return "", false
	}
	return filepath.Join(r.manifestDir(repo, d), typedLinkPrefix+t.Ext), true
}

// tagLinkPath is the symlink nginx resolves tag through for clients that
// accept indexes (or anything).
func (r *Root) tagLinkPath(repo, tag string) string {
	return filepath.Join(r.manifestsDir(repo), tagLinksDir, tag)
}

// fallbackLinkPath is the symlink nginx resolves tag through for clients
// that accept no index type.
func (r *Root) fallbackLinkPath(repo, tag string) string {
	return filepath.Join(r.manifestsDir(repo), fallbackLinksDir, tag)
}

// linkTypedManifest gives manifest d its typed link, after index.json is
// in place: nginx serves only the typed link, so until it exists nginx
// answers 404, never the manifest without its type. A link left by an
// earlier, different media type goes after the new one is in place.
func (r *Root) linkTypedManifest(repo string, d digest.Digest, mediaType string) error {
	return r.linkTypedManifestTo(repo, d, mediaType, nil)
}

// linkTypedManifestTo is linkTypedManifest with the sync of the
// manifest's directory after the link left to ds (nil: at once).
func (r *Root) linkTypedManifestTo(repo string, d digest.Digest, mediaType string, ds *dirSyncs) error {
	want, ok := r.typedManifestPath(repo, d, mediaType)
	if ok {
		if err := r.linkInto(r.manifestPath(repo, d), want, ds); err != nil {
			return fmt.Errorf("typed link: %w", err)
		}
	}
	entries, err := r.readDir(r.manifestDir(repo, d))
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(r.manifestDir(repo, d), e.Name())
		if strings.HasPrefix(e.Name(), typedLinkPrefix) && p != want {
			if err := r.unlink(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// unlinkTypedManifests removes every typed link of manifest d.
func (r *Root) unlinkTypedManifests(repo string, d digest.Digest) error {
	for _, t := range nginxTypes {
		if err := r.unlink(filepath.Join(r.manifestDir(repo, d), typedLinkPrefix+t.Ext)); err != nil {
			return err
		}
	}
	return nil
}

// publishHardLink makes dst a hard link of src. link(2) is atomic; a dst that is
// another file (index.json was republished since) is replaced by a rename,
// but never a dst that already is src: rename(2) between two links of one
// inode does nothing and would leave the temporary name behind
// (serving-notes §3.14).
func (r *Root) publishHardLink(src, dst string) error { return r.linkInto(src, dst, nil) }

// linkInto is publishHardLink with the sync of dst's directory left to
// ds (nil: at once).
func (r *Root) linkInto(src, dst string, ds *dirSyncs) error {
	if r.sameInode(src, dst) {
		return nil // nothing to do, and no step taken
	}
	err := r.hardLink(src, dst)
	if err == nil {
		return ds.sync(r, filepath.Dir(dst))
	}
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	if r.sameInode(src, dst) {
		return nil // another writer linked it meanwhile
	}
	tmp, err := createTemp(dst, func(tmp string) error { return r.hardLink(src, tmp) })
	if err != nil {
		return err
	}
	err = r.renameEntry(tmp, dst)
	// Another writer may have linked src at dst since the check, making the
	// rename a no-op that keeps tmp.
	if rmErr := r.unlink(tmp); err == nil {
		err = rmErr
	}
	if err != nil {
		return err
	}
	return ds.sync(r, filepath.Dir(dst))
}

func (r *Root) sameInode(a, b string) bool {
	sa, err := r.statT(a, true)
	if err != nil {
		return false
	}
	sb, err := r.statT(b, true)
	return err == nil && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// tagLinkTargets are the digests nginx serves tag as: the preferred variant
// (highest qs, the first on a tie, as the type map lists it first), and the
// best variant that is not an index, for clients that cannot read one; a
// tag without such a variant falls back to its preferred one.
func tagLinkTargets(variants []TagVariant) (main, fallback digest.Digest) {
	best, bestPlain := -1, -1
	qs := func(i int) float64 {
		if variants[i].QS == 0 {
			return 1 // left out of the type map: Apache's default
		}
		return variants[i].QS
	}
	for i, v := range variants {
		if best < 0 || qs(i) > qs(best) {
			best = i
		}
		t, known := nginxType(v.MediaType)
		if known && !t.Index && (bestPlain < 0 || qs(i) > qs(bestPlain)) {
			bestPlain = i
		}
	}
	if bestPlain < 0 {
		bestPlain = best
	}
	return variants[best].Digest, variants[bestPlain].Digest
}

// putTagLinks points tag's two symlinks at its variants, fallback first, so
// that the link nearly every client uses changes last. PutTag writes them
// before the type map: a crash in between leaves nginx serving a complete
// manifest that the type map does not name yet, which the next update of
// the repository sets right, and never a type map whose manifest nginx
// lacks.
func (r *Root) putTagLinks(repo, tag string, variants []TagVariant) error {
	if len(variants) == 0 {
		return fmt.Errorf("tag %s:%s: no variant", repo, tag)
	}
	main, fallback := tagLinkTargets(variants)
	if err := r.publishSymlink(linkTarget(fallback), r.fallbackLinkPath(repo, tag)); err != nil {
		return err
	}
	return r.publishSymlink(linkTarget(main), r.tagLinkPath(repo, tag))
}

// linkTarget is a tag symlink's content: relative, so the tree can move.
func linkTarget(d digest.Digest) string { return "../" + d.String() }

// removeTagLinks removes tag's symlinks. DeleteTag removes them before the
// type map: a crash in between leaves a tag nginx no longer serves but the
// type map still names, never one nginx serves after its manifest may have
// been collected.
func (r *Root) removeTagLinks(repo, tag string) error {
	for _, p := range []string{r.tagLinkPath(repo, tag), r.fallbackLinkPath(repo, tag)} {
		if _, err := r.lstat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := r.unlink(p); err != nil {
			return err
		}
		if err := r.syncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}

// publishSymlink atomically makes path a symlink to target, unless it already is
// one: a temporary symlink renamed over it, so nginx resolves the old
// target or the new one, never nothing.
func (r *Root) publishSymlink(target, path string) error {
	if cur, err := r.readlink(path); err == nil && cur == target {
		return nil
	}
	if err := r.mkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	tmp, err := createTemp(path, func(tmp string) error { return r.makeSymlink(target, tmp) })
	if err != nil {
		return err
	}
	if err := r.renameEntry(tmp, path); err != nil {
		_ = r.unlink(tmp)
		return err
	}
	return r.syncDir(filepath.Dir(path))
}

// syncTagLinks re-derives repo's tag symlinks from its type maps: every tag
// gets its links, and links of tags without a type map go. It runs under
// the repository lock after every change, so links a crashed writer left
// out of step (or a tree written before nginx support) are set right by
// the next update. A tag whose type map cannot be read keeps its links.
func (r *Root) syncTagLinks(repo string) error {
	tm, err := r.readTypeMaps(repo)
	if err != nil {
		return err
	}
	return r.syncTagLinksOf(repo, tm)
}

// syncTagLinksOf is syncTagLinks from the type maps tm, already read.
func (r *Root) syncTagLinksOf(repo string, tm typeMaps) error {
	known := make(map[string]bool, len(tm.tags))
	for _, tag := range tm.tags {
		known[tag] = true
		vs := tm.variants[tag]
		if vs == nil {
			continue
		}
		if err := r.putTagLinks(repo, tag, vs); err != nil {
			return fmt.Errorf("tag %s:%s: %w", repo, tag, err)
		}
	}
	for _, dir := range []string{tagLinksDir, fallbackLinksDir} {
		if err := r.removeStaleLinks(filepath.Join(r.manifestsDir(repo), dir), known); err != nil {
			return err
		}
	}
	return nil
}

// removeStaleLinks removes the symlinks in dir that name no tag in known.
// Temporary names are left to sweepTemps, which knows no writer is live.
func (r *Root) removeStaleLinks(dir string, known map[string]bool) error {
	entries, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	removed := false
	for _, e := range entries {
		if known[e.Name()] || e.Type()&fs.ModeSymlink == 0 || distribution.ValidateTag(e.Name()) != nil {
			continue
		}
		if err := r.unlink(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return r.syncDir(dir)
	}
	return nil
}

// NginxLinks reports what LinkForNginx did.
type NginxLinks struct {
	Manifests int // typed links created or replaced
	Repos     int // repositories whose tag links were synchronised
}

// linkForNginxShared gives a whole tree what nginx needs: a typed link for every
// manifest that has its media type recorded and lacks one, and tag
// symlinks from every type map. Exports keep both up to date; this is for
// trees written before (TripleO's, or image-serve's own before nginx
// support). It takes the tree lock shared, so gc never runs meanwhile.
func (r *Root) linkForNginxShared() (NginxLinks, error) {
	l, err := r.lockShared()
	if err != nil {
		return NginxLinks{}, err
	}
	defer l.Unlock()
	return r.linkForNginx()
}

// linkForNginx is linkForNginxShared for a caller that holds the tree lock.
func (r *Root) linkForNginx() (NginxLinks, error) {
	var n NginxLinks
	repos, _, err := r.repoDirs()
	if err != nil {
		return n, err
	}
	for _, repo := range repos {
		if ValidateRepo(repo) != nil {
			continue
		}
		made, err := r.linkManifests(repo)
		n.Manifests += made
		if err != nil {
			return n, err
		}
		if err := r.syncTagLinksLocked(repo); err != nil {
			return n, err
		}
		n.Repos++
	}
	return n, nil
}

// linkManifests adds the missing typed links of repo's manifests.
func (r *Root) linkManifests(repo string) (int, error) {
	entries, err := r.readDir(r.manifestsDir(repo))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	made := 0
	for _, e := range entries {
		d := digest.Digest(e.Name())
		if !e.IsDir() || distribution.ValidateDigest(d) != nil || !r.isFile(r.manifestPath(repo, d)) {
			continue
		}
		mt, err := r.ManifestMediaType(repo, d)
		if err != nil {
			continue // no recorded type: nothing right to link
		}
		if p, ok := r.typedManifestPath(repo, d, mt); !ok || r.sameInode(r.manifestPath(repo, d), p) {
			continue
		}
		if err := r.linkTypedManifest(repo, d, mt); err != nil {
			return made, fmt.Errorf("manifest %s/%s: %w", repo, d, err)
		}
		made++
	}
	return made, nil
}

// syncTagLinksLocked is syncTagLinks under the repository lock.
func (r *Root) syncTagLinksLocked(repo string) error {
	l, err := r.lockRepo(repo)
	if err != nil {
		return err
	}
	defer l.Unlock()
	return r.syncTagLinks(repo)
}

// tagLinksAvoid reports whether no tag link of repo names a manifest in
// gone: a collection about to remove those manifests need not re-derive
// the links first. A link it cannot read counts as naming one.
func (r *Root) tagLinksAvoid(repo string, gone map[digest.Digest]bool) (bool, error) {
	for _, dir := range []string{tagLinksDir, fallbackLinksDir} {
		dir = filepath.Join(r.manifestsDir(repo), dir)
		entries, targets, err := r.readDirLinks(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return false, err
		}
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			target, read := targets[e.Name()]
			d, ok := strings.CutPrefix(target, "../")
			if !read || !ok || gone[digest.Digest(d)] {
				return false, nil
			}
		}
	}
	return true, nil
}
