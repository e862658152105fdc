package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// manifestDigests lists the digest directories of repo's manifests, sorted.
// A directory is listed even without its index.json: an interrupted write
// or removal leaves such a directory, and only a collector can tell it
// from a complete one (ManifestComplete).
func (r *Root) manifestDigests(repo string) ([]digest.Digest, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	return r.digestsIn(r.manifestsDir(repo), fs.DirEntry.IsDir)
}

// digestsIn lists the entries of dir that keep accepts and whose name is
// a digest, in directory order (ReadDir sorts); a missing dir has none,
// one leading outside the tree is an error.
func (r *Root) digestsIn(dir string, keep func(fs.DirEntry) bool) ([]digest.Digest, error) {
	return r.digestsNamed(dir, func(e fs.DirEntry) digest.Digest {
		if !keep(e) {
			return ""
		}
		return digest.Digest(e.Name())
	})
}

// digestsNamed lists the valid digests name derives from the entries of
// dir.
func (r *Root) digestsNamed(dir string, name func(fs.DirEntry) digest.Digest) ([]digest.Digest, error) {
	entries, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ds []digest.Digest
	for _, e := range entries {
		if d := name(e); d != "" && distribution.ValidateDigest(d) == nil {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// manifestComplete reports whether manifest d of repo has its bytes: a
// directory without index.json is never served (every server resolves a
// digest to that file) and only remains of a crashed writer or remover.
func (r *Root) manifestComplete(repo string, d digest.Digest) bool {
	return r.isFile(r.manifestPath(repo, d))
}

// readManifest returns the bytes of manifest d of repo, refusing more than
// MaxManifestSize.
func (r *Root) readManifest(repo string, d digest.Digest) ([]byte, error) {
	return r.readSmall(r.manifestPath(repo, d), MaxManifestSize)
}

// manifestChanged is the status-change time (ctime) of manifest d's
// index.json: when it was last written, renamed or linked into the tree.
// Collectors measure an untagged manifest's age with it, never with the
// modification time, because link(2) and rename(2) update ctime but not
// mtime: a manifest hard-linked into place just now keeps the mtime of
// its first copy and would look old (serving-notes §3.15, zot#117).
func (r *Root) manifestChanged(repo string, d digest.Digest) (time.Time, error) {
	st, err := r.statT(r.manifestPath(repo, d), true)
	if err != nil {
		return time.Time{}, err
	}
	sec, nsec := st.Ctim.Unix()
	return time.Unix(sec, nsec), nil
}

// Headers are what a manifest's .htaccess tells Apache to send.
type Headers struct {
	ContentType string
	Digest      digest.Digest
	// Extra are the lines image-serve never writes there — any other
	// directive, another header, a second Content-Type — which Apache
	// would obey all the same (TripleO's ETag line is not one: migrate
	// rewrites it). A tree's .htaccess holding any is tampered with.
	Extra []string
}

// readHeaders parses the .htaccess of manifest d of repo.
func (r *Root) readHeaders(repo string, d digest.Digest) (Headers, error) {
	b, err := r.readSmall(r.headersPath(repo, d), maxHeadersSize)
	if err != nil {
		return Headers{}, err
	}
	var h Headers
	for line := range strings.SplitSeq(string(b), "\n") {
		var v string
		switch {
		case strings.TrimSpace(line) == "":
		case h.ContentType == "" && exactHeader(line, "Content-Type", &v):
			h.ContentType = v
		case h.Digest == "" && exactHeader(line, "Docker-Content-Digest", &v):
			h.Digest = digest.Digest(v)
		case isLegacyETagLine(line):
		default:
			h.Extra = append(h.Extra, line)
		}
	}
	return h, nil
}

// isLegacyETagLine reports whether line is the ETag line TripleO's
// exporter wrote next to the two headers: `Header set ETag DIGEST`, the
// digest quoted or not, and nothing else.
func isLegacyETagLine(line string) bool {
	rest, ok := strings.CutPrefix(line, "Header set ETag ")
	if unq, err := strconv.Unquote(rest); err == nil {
		rest = unq
	}
	return ok && distribution.ValidateDigest(digest.Digest(rest)) == nil
}

// exactHeader reports whether line is exactly `Header set NAME "VALUE"`,
// as headers writes it, and sets *value. No expression, condition or
// second value gets through.
func exactHeader(line, name string, value *string) bool {
	rest, ok := strings.CutPrefix(line, "Header set "+name+" ")
	if !ok {
		return false
	}
	v, err := strconv.Unquote(rest)
	if err != nil || strconv.Quote(v) != rest || strings.ContainsAny(v, "%\\") {
		return false
	}
	*value = v
	return true
}

// removeManifest removes manifest d from repo. The files servers resolve a
// digest to go first — nginx's typed links, then index.json (Apache and
// the embedded server) — so from then on the manifest is gone for every
// client, and a crash leaves only a directory no request can reach, which
// the next collection removes. .htaccess goes with the directory.
func (r *Root) removeManifest(repo string, d digest.Digest) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return err
	}
	dir := r.manifestDir(repo, d)
	h, err := r.holdDir(dir)
	if err == nil {
		defer h.close()
		if err := h.removeManifest(); err != nil {
			return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
		}
		return nil
	}
	// Missing, a link, outside the tree, no openat2: step by path, which
	// says what each of these means.
	if err := r.unlinkTypedManifests(repo, d); err != nil {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if err := r.unlink(r.manifestPath(repo, d)); err != nil {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if err := r.syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if err := r.removeTree(dir); err != nil {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	return nil
}

// removeManifest is Root.removeManifest of the manifest directory h
// holds, in the same steps: each of its files resolved in h (the steps
// by path resolve the directory from the root again for each, and a
// collection removes thousands).
func (h *heldDir) removeManifest() error {
	for _, t := range nginxTypes {
		if err := h.unlink(typedLinkPrefix + t.Ext); err != nil {
			return err
		}
	}
	if err := h.unlink(manifestFile); err != nil {
		return err
	}
	if err := h.sync(); err != nil {
		return err
	}
	return h.removeAll()
}

// maxHeadersSize bounds what ReadHeaders reads: two lines are written,
// and TripleO's were no longer.
const maxHeadersSize = 1 << 20

// manifestDir is the directory of manifest d in repo.
func (r *Root) manifestDir(repo string, d digest.Digest) string {
	return filepath.Join(r.manifestsDir(repo), d.String())
}

// manifestPath holds the exact bytes of manifest d.
func (r *Root) manifestPath(repo string, d digest.Digest) string {
	return filepath.Join(r.manifestDir(repo, d), manifestFile)
}

// headersPath holds the Apache headers of manifest d.
func (r *Root) headersPath(repo string, d digest.Digest) string {
	return filepath.Join(r.manifestDir(repo, d), headersFile)
}

func (r *Root) manifestsDir(repo string) string {
	return filepath.Join(r.repoDir(repo), manifestsDir)
}

// MaxManifestSize is the largest manifest we store, as distribution and
// containerd cap it.
const MaxManifestSize = 4 << 20

// validMediaType reports whether mt is RFC 6838's type/subtype, each name
// [A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}: nothing that could break out of
// the quotes of an .htaccess line or a type map, the one rule for what the
// tree stores and what a journal may name. Matched by hand: the regular expression's
// counted repetitions compiled into 254 copies at every process start.
func validMediaType(mt string) bool {
	typ, sub, ok := strings.Cut(mt, "/")
	return ok && validMediaTypeName(typ) && validMediaTypeName(sub)
}

func validMediaTypeName(s string) bool {
	if len(s) == 0 || len(s) > 127 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isAlnum(s[i]) && !strings.ContainsRune("!#$&^_.+-", rune(s[i])) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// putManifest stores manifest raw, whose digest must be d, in repo with its
// media type, headers first so that the manifest is never served without
// them. The headers' rename is synced before index.json's: no index.json
// may outlast a power cut that loses them. index.json and its typed link
// then go into the same directory, synced once after both: the link is
// another name of index.json's inode, whose bytes are synced before the
// rename, not a reference to the name index.json, so it is complete
// whichever of the two a power cut keeps, and nothing names the manifest
// before putManifest returns (docs/crash-safety.md).
func (r *Root) putManifest(repo string, d digest.Digest, mediaType string, raw []byte) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return err
	}
	if !validMediaType(mediaType) {
		return fmt.Errorf("manifest %s: invalid media type %q", d, mediaType)
	}
	if len(raw) > MaxManifestSize {
		return fmt.Errorf("manifest %s: %d bytes, over the %d byte limit", d, len(raw), MaxManifestSize)
	}
	if got := d.Algorithm().FromBytes(raw); got != d {
		return fmt.Errorf("manifest %s: content does not match its digest (got %s)", d, got)
	}
	if err := r.writeIfChanged(r.headersPath(repo, d), headers(d, mediaType)); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	ds := newDirSyncs()
	if err := r.writeIfChangedTo(r.manifestPath(repo, d), raw, ds); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	if err := r.linkTypedManifestTo(repo, d, mediaType, ds); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	if err := ds.flush(r); err != nil {
		return fmt.Errorf("manifest %s: %w", d, err)
	}
	return nil
}

// headers is the .htaccess Apache reads next to a manifest. No ETag line:
// Apache compares If-None-Match with its own ETag before mod_headers runs,
// so a digest ETag never matches (serving-notes §3.10).
func headers(d digest.Digest, mediaType string) []byte {
	return fmt.Appendf(nil, "Header set Content-Type %q\nHeader set Docker-Content-Digest %q\n", mediaType, d)
}

// ManifestMediaType reads the media type recorded for manifest d of repo.
func (r *Root) ManifestMediaType(repo string, d digest.Digest) (string, error) {
	h, err := r.readHeaders(repo, d)
	if err != nil {
		return "", err
	}
	if h.ContentType == "" {
		return "", fmt.Errorf("%s: no Content-Type header", r.headersPath(repo, d))
	}
	return h.ContentType, nil
}

// storedManifest is a manifest of the tree, read and checked against its
// name, with its media type.
type storedManifest struct {
	mediaType string
	manifest  *distribution.Manifest
}

// readStoredManifest reads manifest d of repo, checks its bytes against
// its name, and tells its media type. This is the one rule for a stored
// manifest's media type, which migrate and verify --repair write its
// headers with: the mediaType its bytes state, else schema 1's (signed or
// not), else what the tree recorded for it — its .htaccess, then a type
// map offering it, then its nginx typed link, each as the writer that
// wrote it was told by the source.
func (r *Root) readStoredManifest(repo string, d digest.Digest) (*storedManifest, error) {
	raw, err := r.readManifest(repo, d)
	if err != nil {
		return nil, err
	}
	if got := d.Algorithm().FromBytes(raw); got != d {
		return nil, fmt.Errorf("content is %s, not the manifest its directory names: left as it is", got)
	}
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("%v: left as it is", err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = m.Schema1Type()
	}
	if mt == "" {
		mt = r.recordedMediaType(repo, d)
	}
	if mt == "" {
		return nil, errors.New("states no media type, and neither its headers, a type map nor its typed link records one: left as it is")
	}
	if !validMediaType(mt) {
		return nil, fmt.Errorf("invalid media type %q: left as it is", mt)
	}
	return &storedManifest{mediaType: mt, manifest: m}, nil
}

// recordedMediaType is the media type the tree records for manifest d of
// repo outside its bytes, "" for none: its headers' Content-Type, else
// the type the first type map offering it (in tag order) gives it, else
// the type its nginx typed link names.
func (r *Root) recordedMediaType(repo string, d digest.Digest) string {
	if h, err := r.readHeaders(repo, d); err == nil && h.ContentType != "" {
		return h.ContentType
	}
	if tags, err := r.tags(repo); err == nil {
		for _, tag := range tags {
			vs, _ := r.TagVariants(repo, tag)
			for _, v := range vs {
				if v.Digest == d && v.MediaType != "" {
					return v.MediaType
				}
			}
		}
	}
	for _, t := range nginxTypes {
		if p, _ := r.typedManifestPath(repo, d, t.MediaType); r.sameInode(r.manifestPath(repo, d), p) {
			return t.MediaType
		}
	}
	return ""
}

// strayHeaderFiles lists, sorted, the .htaccess files image-serve never
// writes in the parts of the tree repos use (every repository when repos
// is empty): in the root, v2, the namespace directories above a
// repository, the repository's own directory, its blobs/, tags/ and
// referrers/, and nginx's link directories. Only a manifest's digest
// directory holds one of ours; TripleO's per-repository
// manifests/.htaccess is a legacy convention migrate removes, not listed
// here. The vhost reads none of them, but an Apache configured otherwise
// would obey whatever they say — encodings on layers, cookies, handlers.
func (r *Root) strayHeaderFiles(repos []string) ([]string, error) {
	if len(repos) == 0 {
		var err error
		if repos, err = r.storedRepositories(); err != nil {
			return nil, err
		}
	}
	dirs := map[string]bool{r.dir: true, r.v2Dir(): true}
	for _, repo := range repos {
		if err := ValidateRepo(repo); err != nil {
			return nil, err
		}
		for dir := r.repoDir(repo); dir != r.v2Dir(); dir = filepath.Dir(dir) {
			dirs[dir] = true
		}
		for _, sub := range []string{blobsDir, tagsDir, referrersDir, filepath.Join(manifestsDir, tagLinksDir), filepath.Join(manifestsDir, fallbackLinksDir)} {
			dirs[filepath.Join(r.repoDir(repo), sub)] = true
		}
	}
	var stray []string
	for dir := range dirs {
		path := filepath.Join(dir, headersFile)
		_, err := r.lstat(path)
		switch {
		case err == nil:
			stray = append(stray, path)
		case errors.Is(err, ErrOutsideRoot):
			// A directory linking out of the tree: verify names the link,
			// and nothing is removed through it.
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	slices.Sort(stray)
	return stray, nil
}

// removeStrayHeaderFiles removes StrayHeaderFiles(repos), each with a
// directory sync, and returns what it removed.
func (r *Root) removeStrayHeaderFiles(repos []string) ([]string, error) {
	stray, err := r.strayHeaderFiles(repos)
	if err != nil {
		return nil, err
	}
	for i, path := range stray {
		if err := r.unlink(path); err != nil {
			return stray[:i], err
		}
		if err := r.syncDir(filepath.Dir(path)); err != nil {
			return stray[:i+1], err
		}
	}
	return stray, nil
}
