package tree

import "github.com/opencontainers/go-digest"

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
func (f *Fixtures) V2Dir() string { return f.r.V2Dir() }

// PingPath answers GET /v2/.
func (f *Fixtures) PingPath() string { return f.r.PingPath() }

// CatalogPath answers GET /v2/_catalog.
func (f *Fixtures) CatalogPath() string { return f.r.CatalogPath() }

// EmptyReferrersPath is the one empty referrers index the static servers
// answer for every subject without an index of its own.
func (f *Fixtures) EmptyReferrersPath() string { return f.r.EmptyReferrersPath() }

// RepoDir is the directory of repository repo.
func (f *Fixtures) RepoDir(repo string) string { return f.r.RepoDir(repo) }

// TagsListPath answers GET /v2/<repo>/tags/list.
func (f *Fixtures) TagsListPath(repo string) string { return f.r.TagsListPath(repo) }

// TypeMapPath is tag of repo: the Apache type map of the manifests it offers.
func (f *Fixtures) TypeMapPath(repo, tag string) string { return f.r.TypeMapPath(repo, tag) }

// TagLinkPath is nginx's symlink for tag of repo, for clients that accept
// indexes (or anything).
func (f *Fixtures) TagLinkPath(repo, tag string) string { return f.r.TagLinkPath(repo, tag) }

// FallbackLinkPath is nginx's symlink for tag of repo, for clients that
// accept no index type.
func (f *Fixtures) FallbackLinkPath(repo, tag string) string { return f.r.FallbackLinkPath(repo, tag) }

// LegacyTagPath is the symlink of TripleO's tag of repo.
func (f *Fixtures) LegacyTagPath(repo, tag string) string { return f.r.LegacyTagPath(repo, tag) }

// ManifestDir is the directory of manifest d in repo.
func (f *Fixtures) ManifestDir(repo string, d digest.Digest) string { return f.r.ManifestDir(repo, d) }

// ManifestPath holds the exact bytes of manifest d of repo.
func (f *Fixtures) ManifestPath(repo string, d digest.Digest) string {
	return f.r.ManifestPath(repo, d)
}

// HeadersPath holds the Apache headers of manifest d of repo.
func (f *Fixtures) HeadersPath(repo string, d digest.Digest) string {
	return f.r.HeadersPath(repo, d)
}

// TypedManifestPath is nginx's typed link of manifest d of repo for
// mediaType, and false for a media type nginx has no extension for.
func (f *Fixtures) TypedManifestPath(repo string, d digest.Digest, mediaType string) (string, bool) {
	return f.r.TypedManifestPath(repo, d, mediaType)
}

// BlobPath is where blob d of repo lives.
func (f *Fixtures) BlobPath(repo string, d digest.Digest) string { return f.r.BlobPath(repo, d) }

// LegacyBlobPath is TripleO's name of blob d of repo, "<digest>.gz".
func (f *Fixtures) LegacyBlobPath(repo string, d digest.Digest) string {
	return f.r.LegacyBlobPath(repo, d)
}

// BlobFilePath is where the stored blob b of repo lives, under whichever
// of its names b is.
func (f *Fixtures) BlobFilePath(repo string, b StoredBlob) string { return f.r.BlobFilePath(repo, b) }

// ReferrersPath is the referrers index of subject in repo.
func (f *Fixtures) ReferrersPath(repo string, subject digest.Digest) string {
	return f.r.ReferrersPath(repo, subject)
}

// PutBlob makes blob d (size bytes, -1 if unknown) available in repo,
// calling fetch only when the tree has no sound copy of it.
func (f *Fixtures) PutBlob(repo string, d digest.Digest, size int64, verify bool, fetch FetchFunc) (BlobOutcome, int64, error) {
	return f.r.PutBlob(repo, d, size, verify, fetch)
}

// PutManifest stores manifest raw, whose digest must be d, in repo with
// its media type and headers.
func (f *Fixtures) PutManifest(repo string, d digest.Digest, mediaType string, raw []byte) error {
	return f.r.PutManifest(repo, d, mediaType, raw)
}

// PutTag points tag of repo at variants, then rewrites tags/list and
// _catalog.
func (f *Fixtures) PutTag(repo, tag string, variants []TagVariant) error {
	return f.r.PutTag(repo, tag, variants)
}

// UpdateReferrers regenerates the referrers index of subject in repo from
// the manifests repo holds.
func (f *Fixtures) UpdateReferrers(repo string, subject digest.Digest) error {
	return f.r.UpdateReferrers(repo, subject)
}

// RefreshTags rewrites repo's tags/list from its type maps.
func (f *Fixtures) RefreshTags(repo string) error { return f.r.RefreshTags(repo) }

// RefreshReferrers regenerates every referrers index of repo, leaving out
// the manifests in leaving.
func (f *Fixtures) RefreshReferrers(repo string, leaving ...digest.Digest) error {
	return f.r.RefreshReferrers(repo, leaving...)
}

// RefreshCatalog rewrites _catalog from the repositories on disk.
func (f *Fixtures) RefreshCatalog() error { return f.r.RefreshCatalog() }

// DeleteTag removes tag from repo, then rewrites tags/list and _catalog.
func (f *Fixtures) DeleteTag(repo, tag string) error { return f.r.DeleteTag(repo, tag) }

// RemoveManifest removes manifest d from repo, the files servers resolve
// it by first.
func (f *Fixtures) RemoveManifest(repo string, d digest.Digest) error {
	return f.r.RemoveManifest(repo, d)
}

// RemoveBlob unlinks blob d from repo under both its names and returns the
// bytes freed.
func (f *Fixtures) RemoveBlob(repo string, d digest.Digest) (int64, error) {
	return f.r.RemoveBlob(repo, d)
}

// Migrate rewrites the tree from TripleO's conventions to the current
// layout, or with dryRun only reports what it would change.
func (f *Fixtures) Migrate(dryRun bool) (*MigrateReport, error) { return f.r.Migrate(dryRun) }

// LinkForNginx gives a tree written without them the typed manifest links
// and tag symlinks nginx needs.
func (f *Fixtures) LinkForNginx() (NginxLinks, error) { return f.r.LinkForNginx() }

// LockExclusive takes the tree lock exclusively, as gc does.
func (f *Fixtures) LockExclusive() (*Lock, error) { return f.r.LockExclusive() }

// LockShared takes the tree lock shared, as an export does.
func (f *Fixtures) LockShared() (*Lock, error) { return f.r.LockShared() }

// TryLockGC takes the collectors' lock if nobody holds it; otherwise it
// returns nil.
func (f *Fixtures) TryLockGC() (*Lock, error) { return f.r.TryLockGC() }

// Tags lists the tags of repo, one per type map, sorted.
func (f *Fixtures) Tags(repo string) ([]string, error) { return f.r.Tags(repo) }

// TagVariants reads the manifests tag of repo offers.
func (f *Fixtures) TagVariants(repo, tag string) ([]TagVariant, error) {
	return f.r.TagVariants(repo, tag)
}

// ReadTagsList returns the tags repo's tags/list names, and false when
// repo has no tags/list.
func (f *Fixtures) ReadTagsList(repo string) ([]string, bool, error) { return f.r.ReadTagsList(repo) }

// ReadCatalog returns the repositories _catalog names.
func (f *Fixtures) ReadCatalog() ([]string, error) { return f.r.ReadCatalog() }

// Repositories lists the repositories with a tags/list, sorted.
func (f *Fixtures) Repositories() ([]string, error) { return f.r.Repositories() }

// StoredRepositories lists every repository directory with a valid name,
// tagged or not, sorted.
func (f *Fixtures) StoredRepositories() ([]string, error) { return f.r.StoredRepositories() }

// ManifestDigests lists the digest directories of repo's manifests, sorted.
func (f *Fixtures) ManifestDigests(repo string) ([]digest.Digest, error) {
	return f.r.ManifestDigests(repo)
}

// ManifestMediaType reads the media type recorded for manifest d of repo.
func (f *Fixtures) ManifestMediaType(repo string, d digest.Digest) (string, error) {
	return f.r.ManifestMediaType(repo, d)
}

// ReadManifest returns the bytes of manifest d of repo.
func (f *Fixtures) ReadManifest(repo string, d digest.Digest) ([]byte, error) {
	return f.r.ReadManifest(repo, d)
}

// ReadReferrers returns the stored referrers index of subject in repo.
func (f *Fixtures) ReadReferrers(repo string, subject digest.Digest) ([]byte, error) {
	return f.r.ReadReferrers(repo, subject)
}

// ReferrerSubjects lists the subjects repo has a referrers index for,
// sorted.
func (f *Fixtures) ReferrerSubjects(repo string) ([]digest.Digest, error) {
	return f.r.ReferrerSubjects(repo)
}

// Blobs lists the blob files of repo, TripleO's ".gz" names included,
// sorted.
func (f *Fixtures) Blobs(repo string) ([]StoredBlob, error) { return f.r.Blobs(repo) }

// NotRegularFiles lists every entry under repo's directory (or, for "",
// under v2/ and the state directory) that is not a regular file, a
// directory or a symlink, lock files aside.
func (f *Fixtures) NotRegularFiles(repo string) ([]NotRegularFile, error) {
	return f.r.NotRegularFiles(repo)
}
