package tree

import (
	"io/fs"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
)

// Fixtures is the tests' one way to build, damage and look at a tree by
// hand: plant a manifest or a tag without an export,
// take a lock another process would hold, name the file a test breaks.
// It is for tests and test-support packages only; internal/archtest
// enforces it. Shipped code holds a role of the tree (a Reader, a
// Publisher) or calls its protocols (Publish, Inspect, Maintain).
//
// Its methods are of four kinds: paths below the root, for a test to
// read, write, stat or break what the tree keeps there; writers — the
// steps Publish and Maintain sequence, and whole maintenance operations —
// to build a tree, or a state between two steps, by hand; the tree's
// locks, for a test to stand for another process holding one; and reads
// without the tree lock Inspect takes, for a test that holds a lock
// itself, where Inspect would wait, or that reads a root which may hold
// no tree, which Inspect refuses.
//
// Every method forwards to the *Root it was made from: a Fixtures writes
// and names exactly what the tree itself writes and names, so a tree
// built through it is one the tree's own code could have left.
type Fixtures struct{ r *Root }

// Fixture returns the test fixtures of r. It is a function, not a method
// of Root, so that it adds nothing to Root's method set, which is to hold
// only the handles shipped code uses.
func Fixture(r *Root) *Fixtures { return &Fixtures{r} }

// V2Dir is the directory that answers /v2/.
func (f *Fixtures) V2Dir() string { return f.r.v2Dir() }

// PingPath answers GET /v2/.
func (f *Fixtures) PingPath() string { return f.r.pingPath() }

// CatalogPath answers GET /v2/_catalog.
func (f *Fixtures) CatalogPath() string { return f.r.catalogPath() }

// PagePath is the catalog page, answering GET /.
func (f *Fixtures) PagePath() string { return f.r.pagePath() }

// EmptyReferrersPath is the one empty referrers index the static servers
// answer for every subject without an index of its own.
func (f *Fixtures) EmptyReferrersPath() string { return f.r.emptyReferrersPath() }

// RepoDir is the directory of repository repo.
func (f *Fixtures) RepoDir(repo string) string { return f.r.repoDir(repo) }

// TagsListPath answers GET /v2/<repo>/tags/list.
func (f *Fixtures) TagsListPath(repo string) string { return f.r.tagsListPath(repo) }

// TypeMapPath is tag of repo: the Apache type map of the manifests it offers.
func (f *Fixtures) TypeMapPath(repo, tag string) string { return f.r.typeMapPath(repo, tag) }

// TagLinkPath is nginx's symlink for tag of repo, for clients that accept
// indexes (or anything).
func (f *Fixtures) TagLinkPath(repo, tag string) string { return f.r.tagLinkPath(repo, tag) }

// FallbackLinkPath is nginx's symlink for tag of repo, for clients that
// accept no index type.
func (f *Fixtures) FallbackLinkPath(repo, tag string) string { return f.r.fallbackLinkPath(repo, tag) }

// LegacyTagPath is the symlink of TripleO's tag of repo.
func (f *Fixtures) LegacyTagPath(repo, tag string) string { return f.r.legacyTagPath(repo, tag) }

// ManifestDir is the directory of manifest d in repo.
func (f *Fixtures) ManifestDir(repo string, d digest.Digest) string { return f.r.manifestDir(repo, d) }

// ManifestPath holds the exact bytes of manifest d of repo.
func (f *Fixtures) ManifestPath(repo string, d digest.Digest) string {
	return f.r.manifestPath(repo, d)
}

// HeadersPath holds the Apache headers of manifest d of repo.
func (f *Fixtures) HeadersPath(repo string, d digest.Digest) string {
	return f.r.headersPath(repo, d)
}

// TypedManifestPath is nginx's typed link of manifest d of repo for
// mediaType, and false for a media type nginx has no extension for.
func (f *Fixtures) TypedManifestPath(repo string, d digest.Digest, mediaType string) (string, bool) {
	return f.r.typedManifestPath(repo, d, mediaType)
}

// BlobPath is where blob d of repo lives.
func (f *Fixtures) BlobPath(repo string, d digest.Digest) string { return f.r.blobPath(repo, d) }

// LegacyBlobPath is TripleO's name of blob d of repo, "<digest>.gz".
func (f *Fixtures) LegacyBlobPath(repo string, d digest.Digest) string {
	return f.r.legacyBlobPath(repo, d)
}

// BlobFilePath is where the stored blob b of repo lives, under whichever
// of its names b is.
func (f *Fixtures) BlobFilePath(repo string, b StoredBlob) string { return f.r.blobFilePath(repo, b) }

// ReferrersPath is the referrers index of subject in repo.
func (f *Fixtures) ReferrersPath(repo string, subject digest.Digest) string {
	return f.r.referrersPath(repo, subject)
}

// PutBlob makes blob d (size bytes, -1 if unknown) available in repo,
// calling fetch only when the tree has no sound copy of it.
func (f *Fixtures) PutBlob(repo string, d digest.Digest, size int64, verify bool, fetch FetchFunc) (BlobOutcome, int64, error) {
	return f.r.putBlob(repo, d, size, verify, fetch, nil)
}

// PutManifest stores manifest raw, whose digest must be d, in repo with
// its media type and headers.
func (f *Fixtures) PutManifest(repo string, d digest.Digest, mediaType string, raw []byte) error {
	return f.r.putManifest(repo, d, mediaType, raw)
}

// PutTag points tag of repo at variants, then rewrites tags/list and
// _catalog.
func (f *Fixtures) PutTag(repo, tag string, variants []TagVariant) error {
	return f.r.putTag(repo, tag, variants)
}

// PutPin pins manifest d of repo (pins.go), as a publication with a pin
// does once its manifests are in.
func (f *Fixtures) PutPin(repo string, d digest.Digest) error { return f.r.putPin(repo, d) }

// PinPath is the file that pins manifest d of repo.
func (f *Fixtures) PinPath(repo string, d digest.Digest) string { return f.r.pinPath(repo, d) }

// Pins lists the pinned manifests of repo, sorted.
func (f *Fixtures) Pins(repo string) ([]digest.Digest, error) { return f.r.pins(repo) }

// UpdateReferrers regenerates the referrers index of subject in repo from
// the manifests repo holds.
func (f *Fixtures) UpdateReferrers(repo string, subject digest.Digest) error {
	return f.r.updateReferrers(repo, subject)
}

// RefreshTags rewrites repo's tags/list from its type maps.
func (f *Fixtures) RefreshTags(repo string) error { return f.r.refreshTags(repo) }

// RefreshReferrers regenerates every referrers index of repo, leaving out
// the manifests in leaving.
func (f *Fixtures) RefreshReferrers(repo string, leaving ...digest.Digest) error {
	return f.r.refreshReferrers(repo, leaving...)
}

// RefreshCatalog rewrites _catalog from the repositories on disk.
func (f *Fixtures) RefreshCatalog() error { return f.r.refreshCatalog() }

// DeleteTag removes tag from repo, then rewrites tags/list and _catalog.
func (f *Fixtures) DeleteTag(repo, tag string) error { return f.r.deleteTag(repo, tag) }

// RemoveManifest removes manifest d from repo, the files servers resolve
// it by first.
func (f *Fixtures) RemoveManifest(repo string, d digest.Digest) error {
	return f.r.removeManifest(repo, d)
}

// RemoveBlob unlinks blob d from repo under both its names and returns the
// bytes freed.
func (f *Fixtures) RemoveBlob(repo string, d digest.Digest) (int64, error) {
	return f.r.removeBlob(repo, d)
}

// Migrate rewrites the tree from TripleO's conventions to the current
// layout, or with dryRun only reports what it would change.
func (f *Fixtures) Migrate(dryRun bool) (*MigrateReport, error) { return f.r.migrateTree(dryRun) }

// LinkForNginx gives a tree written without them the typed manifest links
// and tag symlinks nginx needs.
func (f *Fixtures) LinkForNginx() (NginxLinks, error) { return f.r.linkForNginxShared() }

// LockExclusive takes the tree lock exclusively, as gc does.
func (f *Fixtures) LockExclusive() (*Lock, error) { return f.r.lockExclusive() }

// LockShared takes the tree lock shared, as an export does.
func (f *Fixtures) LockShared() (*Lock, error) { return f.r.lockShared() }

// TryLockGC takes the collectors' lock if nobody holds it; otherwise it
// returns nil.
func (f *Fixtures) TryLockGC() (*Lock, error) { return f.r.tryLockGC() }

// Tags lists the tags of repo, one per type map, sorted.
func (f *Fixtures) Tags(repo string) ([]string, error) { return f.r.tags(repo) }

// TagVariants reads the manifests tag of repo offers.
func (f *Fixtures) TagVariants(repo, tag string) ([]TagVariant, error) {
	return f.r.TagVariants(repo, tag)
}

// ReadTagsList returns the tags repo's tags/list names, and false when
// repo has no tags/list.
func (f *Fixtures) ReadTagsList(repo string) ([]string, bool, error) { return f.r.readTagsList(repo) }

// ReadCatalog returns the repositories _catalog names.
func (f *Fixtures) ReadCatalog() ([]string, error) { return f.r.readCatalog() }

// Repositories lists the repositories with a tags/list, sorted.
func (f *Fixtures) Repositories() ([]string, error) { return f.r.repositories() }

// StoredRepositories lists every repository directory with a valid name,
// tagged or not, sorted.
func (f *Fixtures) StoredRepositories() ([]string, error) { return f.r.storedRepositories() }

// ManifestDigests lists the digest directories of repo's manifests, sorted.
func (f *Fixtures) ManifestDigests(repo string) ([]digest.Digest, error) {
	return f.r.manifestDigests(repo)
}

// ManifestMediaType reads the media type recorded for manifest d of repo.
func (f *Fixtures) ManifestMediaType(repo string, d digest.Digest) (string, error) {
	return f.r.ManifestMediaType(repo, d)
}

// ReadManifest returns the bytes of manifest d of repo.
func (f *Fixtures) ReadManifest(repo string, d digest.Digest) ([]byte, error) {
	return f.r.readManifest(repo, d)
}

// ReadReferrers returns the stored referrers index of subject in repo.
func (f *Fixtures) ReadReferrers(repo string, subject digest.Digest) ([]byte, error) {
	return f.r.readReferrers(repo, subject)
}

// ReferrerSubjects lists the subjects repo has a referrers index for,
// sorted.
func (f *Fixtures) ReferrerSubjects(repo string) ([]digest.Digest, error) {
	return f.r.referrerSubjects(repo)
}

// Blobs lists the blob files of repo, TripleO's ".gz" names included,
// sorted.
func (f *Fixtures) Blobs(repo string) ([]StoredBlob, error) { return f.r.blobs(repo) }

// NotRegularFiles lists every entry under repo's directory (or, for "",
// under v2/ and the state directory) that is not a regular file, a
// directory or a symlink, lock files aside.
func (f *Fixtures) NotRegularFiles(repo string) ([]NotRegularFile, error) {
	return f.r.notRegularFiles(repo)
}

// Reads and removals the tree's own tests reach past the handles.

// BlobInodes is the Root's blobInodes, for tests.
func (f *Fixtures) BlobInodes(repo string, d digest.Digest) ([]Inode, error) {
	return f.r.blobInodes(repo, d)
}

// HasManifests is the Root's hasManifests, for tests.
func (f *Fixtures) HasManifests(repo string) bool { return f.r.hasManifests(repo) }

// LegacyConventions is the Root's legacyConventions, for tests.
func (f *Fixtures) LegacyConventions(repos []string) ([]LegacyFinding, error) {
	return f.r.legacyConventions(repos)
}

// ManifestChanged is the Root's manifestChanged, for tests.
func (f *Fixtures) ManifestChanged(repo string, d digest.Digest) (time.Time, error) {
	return f.r.manifestChanged(repo, d)
}

// ManifestComplete is the Root's manifestComplete, for tests.
func (f *Fixtures) ManifestComplete(repo string, d digest.Digest) bool {
	return f.r.manifestComplete(repo, d)
}

// NotRegularTags is the Root's notRegularTags, for tests.
func (f *Fixtures) NotRegularTags(repo string) ([]NotRegularFile, error) {
	return f.r.notRegularTags(repo)
}

// OpenBlob is the Root's openBlob, for tests.
func (f *Fixtures) OpenBlob(repo string, d digest.Digest) (*os.File, error) {
	return f.r.openBlob(repo, d)
}

// OpenBlobFile is the Root's openBlobFile, for tests.
func (f *Fixtures) OpenBlobFile(repo string, b StoredBlob) (*os.File, Inode, error) {
	return f.r.openBlobFile(repo, b)
}

// OpenInTree is the Root's openInTree, for tests.
func (f *Fixtures) OpenInTree(path string) (*os.File, error) { return f.r.openInTree(path) }

// OutsideLayout is the Root's outsideLayout, for tests.
func (f *Fixtures) OutsideLayout(repo string) ([]OutsideLink, error) { return f.r.outsideLayout(repo) }

// OutsideLinks is the Root's outsideLinks, for tests.
func (f *Fixtures) OutsideLinks(repo string) ([]OutsideLink, error) { return f.r.outsideLinks(repo) }

// PendingTags is the Root's pendingTags, for tests.
func (f *Fixtures) PendingTags(repo string) (map[string][]TagVariant, error) {
	return f.r.pendingTags(repo)
}

// ReadBlob is the Root's readBlob, for tests.
func (f *Fixtures) ReadBlob(repo string, d digest.Digest, limit int64) ([]byte, error) {
	return f.r.readBlob(repo, d, limit)
}

// ReadHeaders is the Root's readHeaders, for tests.
func (f *Fixtures) ReadHeaders(repo string, d digest.Digest) (Headers, error) {
	return f.r.readHeaders(repo, d)
}

// RemoveNotRegular is the Root's removeNotRegular, for tests.
func (f *Fixtures) RemoveNotRegular(path string) error { return f.r.removeNotRegular(path) }

// RemoveRepo is the Root's removeRepo, for tests.
func (f *Fixtures) RemoveRepo(repo string) (bool, error) { return f.r.removeRepo(repo) }

// ResolveTag is the Root's resolveTag, for tests.
func (f *Fixtures) ResolveTag(repo, tag, accept string) (Resolution, error) {
	return f.r.resolveTag(repo, tag, accept)
}

// StatInTree is the Root's statInTree, for tests.
func (f *Fixtures) StatInTree(path string) (fs.FileInfo, error) { return f.r.statInTree(path) }

// SweepRepoTemps is the Root's sweepRepoTemps, for tests.
func (f *Fixtures) SweepRepoTemps(repo string) (int, error) { return f.r.sweepRepoTemps(repo) }

// TagsInStep is the Root's tagsInStep, for tests.
func (f *Fixtures) TagsInStep(repo string, tags []string) (bool, error) {
	return f.r.tagsInStep(repo, tags)
}
