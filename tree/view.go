package tree

import (
	"os"
	"time"

	"github.com/opencontainers/go-digest"
)

// View is the tree as read by verify, the catalog views, delete's tag
// phase and gc's marking: what each repository holds — tags (type maps,
// TripleO's symlink tags, moves a crashed batch left pending), manifests
// and what they reference, blobs, referrers indexes — and whether the
// files derived from them are in step. A View exists only inside Inspect
// (the tree lock held shared: collections and prunes wait, exports and
// tag deletes go on) or inside Maintain (Maint.View, the lock held
// exclusively); it is not valid after its function returns.
//
// Nothing in a View changes the tree — but for WriteLayerIndex, which
// stores a cache under .image-serve that no server reads — and no method of it answers with a
// path to open: where it reports a problem or a file checked, it names the
// file by its path (as verify prints it), for people to read; every read
// goes through the View.
type View struct{ r *Root }

// Inspect runs do with a View of the tree, holding the tree lock shared
// for the whole of do. It fails with ErrNoTree where there is no tree.
func (r *Root) Inspect(do func(*View) error) error {
	if err := r.RequireTree(); err != nil {
		return err
	}
	l, err := r.lockShared()
	if err != nil {
		return err
	}
	defer l.Unlock()
	return do(&View{r})
}

// View is the tree as the Maint holds it, to read what to remove.
func (m *Maint) View() *View { return &View{m.r} }

// StoredRepositories lists every repository directory with a valid name,
// tagged or not, sorted. Unlike Repositories it includes repositories whose
// last tag is gone: a collector must find those to empty them.
func (v *View) StoredRepositories() ([]string, error) { return v.r.storedRepositories() }

// Repositories lists the published repositories, those with a tags/list,
// sorted: the content of _catalog.
func (v *View) Repositories() ([]string, error) { return v.r.repositories() }

// Tags lists the tags of repo, sorted ASCIIbetically as the spec demands:
// one per type map on disk, the source of truth tags/list is built from.
// TripleO's symlink tags are not among them: no server serves them (LegacyTags
// lists them).
func (v *View) Tags(repo string) ([]string, error) { return v.r.tags(repo) }

// ListableTags lists, sorted, the tags of repo that tags/list names:
// those whose type map parses and offers a manifest. A type map that does
// not (garbage, emptied, truncated) is a tag no client can pull — every
// request for it would answer 500 — so it is left out of tags/list, and out of
// _catalog when it is the repository's only one; verify names it.
func (v *View) ListableTags(repo string) ([]string, error) { return v.r.listableTags(repo) }

// LegacyTags lists the tags of repo that are TripleO symlink tags, sorted:
// what verify reports as legacy, and what an export of the tag rewrites.
func (v *View) LegacyTags(repo string) ([]string, error) { return v.r.legacyTags(repo) }

// LegacyTagTarget is the manifest the TripleO symlink tag of repo names,
// and false when tag is no such tag.
func (v *View) LegacyTagTarget(repo, tag string) (digest.Digest, bool) {
	return v.r.legacyTagTarget(repo, tag)
}

// PendingTags returns, for the tags of repo that finishing a tag move a crash
// interrupted will move, the variants each will name then — nil for a tag
// that will not exist. A tag changed since the crash is not pending: it stays
// as it is. It changes nothing: it is for a reader, such as a dry-run gc,
// that must see the tree as the next writer will leave it.
func (v *View) PendingTags(repo string) (map[string][]TagVariant, error) {
	return v.r.pendingTags(repo)
}

// TagVariants reads the manifests tag of repo offers.
func (v *View) TagVariants(repo, tag string) ([]TagVariant, error) { return v.r.TagVariants(repo, tag) }

// TagChanged is when tag of repo was last set: the modification time of its
// type map, which every retag replaces.
//
// A TripleO symlink tag was last set when its symlink was made.
func (v *View) TagChanged(repo, tag string) (time.Time, error) { return v.r.tagChanged(repo, tag) }

// ManifestDigests lists the digest directories of repo's manifests, sorted.
// A directory is listed even without its index.json: an interrupted write or
// removal leaves such a directory, and only a collector can tell it from a
// complete one (ManifestComplete).
func (v *View) ManifestDigests(repo string) ([]digest.Digest, error) {
	return v.r.manifestDigests(repo)
}

// ManifestMediaType reads the media type recorded for manifest d of repo.
func (v *View) ManifestMediaType(repo string, d digest.Digest) (string, error) {
	return v.r.ManifestMediaType(repo, d)
}

// ManifestComplete reports whether manifest d of repo has its bytes:
// a directory without index.json is never served (every server resolves a
// digest to that file) and only remains of a crashed writer or remover.
func (v *View) ManifestComplete(repo string, d digest.Digest) bool {
	return v.r.manifestComplete(repo, d)
}

// ManifestChanged is the status-change time (ctime) of manifest d's
// index.json: when it was last written, renamed or linked into the tree.
// Collectors measure an untagged manifest's age with it, never with the
// modification time, because link(2) and rename(2) update ctime but not mtime:
// a manifest hard-linked into place just now keeps the mtime of its first copy
// and would look old (serving-notes §3.15, zot#117).
func (v *View) ManifestChanged(repo string, d digest.Digest) (time.Time, error) {
	return v.r.manifestChanged(repo, d)
}

// ReadManifest returns the bytes of manifest d of repo, refusing more than
// MaxManifestSize.
func (v *View) ReadManifest(repo string, d digest.Digest) ([]byte, error) {
	return v.r.readManifest(repo, d)
}

// ReadHeaders parses the .htaccess of manifest d of repo.
func (v *View) ReadHeaders(repo string, d digest.Digest) (Headers, error) {
	return v.r.readHeaders(repo, d)
}

// Blobs lists the blob files of repo, legacy ".gz" names included, sorted.
// Dot files (temporary files of writers) and names that are no digest are left
// out.
func (v *View) Blobs(repo string) ([]StoredBlob, error) { return v.r.blobs(repo) }

// BlobInodes returns the inodes of blob d in repo, one per name present (plain
// and legacy).
func (v *View) BlobInodes(repo string, d digest.Digest) ([]Inode, error) {
	return v.r.blobInodes(repo, d)
}

// ReadBlob returns the bytes of blob d of repo, at most limit of them:
// for small blobs a view shows, such as image configs.
func (v *View) ReadBlob(repo string, d digest.Digest, limit int64) ([]byte, error) {
	return v.r.readBlob(repo, d, limit)
}

// OpenBlobFile opens blob b of repo and says which inode it is.
func (v *View) OpenBlobFile(repo string, b StoredBlob) (*os.File, Inode, error) {
	return v.r.openBlobFile(repo, b)
}

// BlobLocks lists the digests that have a blob lock file.
func (v *View) BlobLocks() ([]digest.Digest, error) { return v.r.blobLocks() }

// ReferrerSubjects lists the subjects repo has a referrers index for, sorted.
// Dot files (temporary files of writers) are left out.
func (v *View) ReferrerSubjects(repo string) ([]digest.Digest, error) {
	return v.r.referrerSubjects(repo)
}

// ReadReferrers returns the stored referrers index of subject in repo.
func (v *View) ReadReferrers(repo string, subject digest.Digest) ([]byte, error) {
	return v.r.readReferrers(repo, subject)
}

// GeneratedReferrers returns, per subject, the index UpdateReferrers would
// write for repo as it is now: what a checker compares the files with.
func (v *View) GeneratedReferrers(repo string) (map[digest.Digest][]byte, error) {
	return v.r.generatedReferrers(repo)
}

// ReadTagsList returns the tags repo's tags/list names, and false when the
// repository has no tags/list.
func (v *View) ReadTagsList(repo string) ([]string, bool, error) { return v.r.readTagsList(repo) }

// ReadCatalog returns the repositories _catalog names.
func (v *View) ReadCatalog() ([]string, error) { return v.r.readCatalog() }

// TagsInStep reports whether what is derived from repo's type maps agrees
// with tags, the names of those that parse (ListableTags): tags/list lists
// exactly them, and nginx's tag link directories hold a link for each and
// for no other. A writer killed between its steps leaves them out of step;
// RefreshTags sets them right. Checking first lets a collection of an
// unchanged repository write nothing. Links are compared by name only:
// one naming the wrong manifest (an export killed between its links and its
// type map) is re-derived by the repository's next update, which a collection
// runs before it deletes any manifest of the repository.
func (v *View) TagsInStep(repo string, tags []string) (bool, error) {
	return v.r.tagsInStep(repo, tags)
}

// NotRegularFiles lists every entry that is not a regular file, a directory
// or a symlink — a FIFO, a socket, a device — anywhere under v2/ and the state
// directory, or, for a repository, under its directory: what verify reports
// and verify --repair removes. It opens no file and follows no symlink.
// Lock files are left out: they are only ever locked, never read, and flock(2)
// holds on any file.
func (v *View) NotRegularFiles(repo string) ([]NotRegularFile, error) {
	return v.r.notRegularFiles(repo)
}

// NotRegularTags lists the entries of repo's manifests directory named as
// type maps that are FIFOs, sockets or devices. Tags leaves them out, as every
// server answers such a tag as missing, so that tags/list never lists them;
// but they are damage, not deleted tags: what the tag named is unknown,
// so a collector leaves the repository alone, and the views say so. It costs
// one directory read.
func (v *View) NotRegularTags(repo string) ([]NotRegularFile, error) { return v.r.notRegularTags(repo) }

// OutsideLinks lists every symlink that leads outside the root, anywhere under
// v2/ and the state directory, or, for a repository, under its directory and
// on the path to it: what verify reports. It reads no directory through a
// symlink.
func (v *View) OutsideLinks(repo string) ([]OutsideLink, error) { return v.r.outsideLinks(repo) }

// OutsideLayout lists the directories of repo's layout — the repository
// directory, blobs/, manifests/ and nginx's link directories in it, tags/
// and referrers/ — that are symlinks leading outside the root. A collector
// leaves such a repository alone: what it stores is not in the tree. Files
// that are such links (a blob, a type map, an index.json) are not listed here:
// reading them fails with ErrOutsideRoot, and listings skip them. It costs a
// directory read and two lstats.
func (v *View) OutsideLayout(repo string) ([]OutsideLink, error) { return v.r.outsideLayout(repo) }

// StrayHeaderFiles lists, sorted, the .htaccess files image-serve never writes
// in the parts of the tree repos use (every repository when repos is empty):
// in the root, v2, the namespace directories above a repository, the
// repository's own directory, its blobs/, tags/ and referrers/, and nginx's
// link directories. Only a manifest's digest directory holds one of ours;
// TripleO's per-repository manifests/.htaccess is a legacy convention migrate
// removes, not listed here. The vhost reads none of them, but an Apache
// configured otherwise would obey whatever they say — encodings on layers,
// cookies, handlers.
func (v *View) StrayHeaderFiles(repos []string) ([]string, error) { return v.r.strayHeaderFiles(repos) }

// UnreadableDirs lists the directories below v2 that cannot be read
// (isUnreadableDir), which every walk of the tree skips: verify names each,
// since what they hold is unknown to every command.
func (v *View) UnreadableDirs() ([]string, error) { return v.r.unreadableDirs() }

// LegacyConventions lists the legacy conventions Migrate would rewrite in
// repos (all of the tree, _catalog and modes included, when empty), by path.
// It changes nothing and takes no lock: the caller holds the tree lock (verify
// holds it shared).
func (v *View) LegacyConventions(repos []string) ([]LegacyFinding, error) {
	return v.r.legacyConventions(repos)
}

// RepoFiles lists the inode of every regular file of repo — blobs, manifests,
// headers, type maps, listings — not those of repositories nested below it.
// Hard links share an inode: a blob linked into three repositories appears,
// with the same Dev and Ino, in the files of each.
func (v *View) RepoFiles(repo string) ([]Inode, error) { return v.r.repoFiles(repo) }

// TreeFiles lists the inode of every regular file under v2, each once:
// what the tree costs the file system.
func (v *View) TreeFiles() ([]Inode, error) { return v.r.treeFiles() }

// HasManifests reports whether repo has a manifests directory: the test
// the static servers make (Apache "-d", nginx "if (-d …)") before they
// answer a referrers request with the empty index rather than NAME_UNKNOWN.
// A repository exists for the referrers API as long as it may serve a manifest
// by digest.
func (v *View) HasManifests(repo string) bool { return v.r.hasManifests(repo) }
