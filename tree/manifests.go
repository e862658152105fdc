package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// The primitives a collector needs: what a repository stores, and how to
// take it away again in the order that keeps every remaining tag
// servable. Removal is only safe holding the tree lock exclusively, so
// that no export is between writing a blob and naming it in a manifest.

// RequireTree reports an error unless the root holds a tree: commands that
// change an existing tree must not create one where --root is mistyped.
func (r *Root) RequireTree() error {
	fi, err := r.stat(r.V2Dir())
	switch {
	case errors.Is(err, ErrOutsideRoot):
		return fmt.Errorf("root %s: %w", r.Dir(), err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("root %s: no registry tree here", r.Dir())
	case err != nil:
		return fmt.Errorf("root %s: %w", r.Dir(), err)
	case !fi.IsDir():
		return fmt.Errorf("root %s: %s is not a directory", r.Dir(), r.V2Dir())
	}
	return nil
}

// StoredRepositories lists every repository directory with a valid name,
// tagged or not, sorted. Unlike Repositories it includes repositories
// whose last tag is gone: a collector must find those to empty them.
func (r *Root) StoredRepositories() ([]string, error) {
	dirs, err := r.repoDirs()
	if err != nil {
		return nil, err
	}
	repos := dirs[:0]
	for _, repo := range dirs {
		if ValidateRepo(repo) == nil {
			repos = append(repos, repo)
		}
	}
	sort.Strings(repos)
	return repos, nil
}

// ManifestDigests lists the digest directories of repo's manifests, sorted.
// A directory is listed even without its index.json: an interrupted write
// or removal leaves such a directory, and only a collector can tell it
// from a complete one (ManifestComplete).
func (r *Root) ManifestDigests(repo string) ([]digest.Digest, error) {
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
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ds []digest.Digest
	for _, e := range entries {
		if d := name(e); d != "" && ValidateDigest(d) == nil {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// ManifestComplete reports whether manifest d of repo has its bytes: a
// directory without index.json is never served (every server resolves a
// digest to that file) and only remains of a crashed writer or remover.
func (r *Root) ManifestComplete(repo string, d digest.Digest) bool {
	return r.isFile(r.ManifestPath(repo, d))
}

// ReadManifest returns the bytes of manifest d of repo, refusing more than
// MaxManifestSize.
func (r *Root) ReadManifest(repo string, d digest.Digest) ([]byte, error) {
	return r.readSmall(r.ManifestPath(repo, d), MaxManifestSize)
}

// ManifestChanged is the status-change time (ctime) of manifest d's
// index.json: when it was last written, renamed or linked into the tree.
// Collectors measure an untagged manifest's age with it, never with the
// modification time, because link(2) and rename(2) update ctime but not
// mtime: a manifest hard-linked into place just now keeps the mtime of
// its first copy and would look old (serving-notes §3.15, zot#117).
func (r *Root) ManifestChanged(repo string, d digest.Digest) (time.Time, error) {
	st, err := r.statT(r.ManifestPath(repo, d), true)
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
}

// ReadHeaders parses the .htaccess of manifest d of repo.
func (r *Root) ReadHeaders(repo string, d digest.Digest) (Headers, error) {
	b, err := r.readSmall(r.HeadersPath(repo, d), maxHeadersSize)
	if err != nil {
		return Headers{}, err
	}
	var h Headers
	for line := range strings.SplitSeq(string(b), "\n") {
		var v string
		if _, err := fmt.Sscanf(line, "Header set Content-Type %q", &v); err == nil {
			h.ContentType = v
		} else if _, err := fmt.Sscanf(line, "Header set Docker-Content-Digest %q", &v); err == nil {
			h.Digest = digest.Digest(v)
		}
	}
	return h, nil
}

// RemoveManifest removes manifest d from repo. The files servers resolve a
// digest to go first — nginx's typed links, then index.json (Apache and
// the embedded server) — so from then on the manifest is gone for every
// client, and a crash leaves only a directory no request can reach, which
// the next collection removes. .htaccess goes with the directory.
func (r *Root) RemoveManifest(repo string, d digest.Digest) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := ValidateDigest(d); err != nil {
		return err
	}
	dir := r.ManifestDir(repo, d)
	if err := r.unlinkTypedManifests(repo, d); err != nil {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if err := r.unlink(r.ManifestPath(repo, d)); err != nil {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if err := r.syncDir(dir); err != nil && (!errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrOutsideRoot)) {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	if err := r.removeTree(dir); err != nil {
		return fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	return nil
}

// StoredBlob is a blob file of a repository.
type StoredBlob struct {
	Digest digest.Digest
	Legacy bool // stored as "<digest>.gz", as TripleO named layers
}

// Blobs lists the blob files of repo, legacy ".gz" names included, sorted.
// Dot files (temporary files of writers) and names that are no digest are
// left out.
func (r *Root) Blobs(repo string) ([]StoredBlob, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	entries, err := r.readDir(filepath.Join(r.RepoDir(repo), "blobs"))
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var bs []StoredBlob
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name, legacy := strings.CutSuffix(e.Name(), ".gz")
		if d := digest.Digest(name); ValidateDigest(d) == nil {
			bs = append(bs, StoredBlob{Digest: d, Legacy: legacy})
		}
	}
	return bs, nil
}

// BlobFilePath is where b lives in repo.
func (r *Root) BlobFilePath(repo string, b StoredBlob) string {
	if b.Legacy {
		return r.LegacyBlobPath(repo, b.Digest)
	}
	return r.BlobPath(repo, b.Digest)
}

// OpenBlobFile opens blob b of repo and says which inode it is.
func (r *Root) OpenBlobFile(repo string, b StoredBlob) (*os.File, Inode, error) {
	f, err := r.open(r.BlobFilePath(repo, b))
	if err != nil {
		return nil, Inode{}, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, Inode{}, &fs.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	return f, inodeFromStat(&st), nil
}

// Inode identifies a file's data: hard links share one.
type Inode struct {
	Dev, Ino uint64
	Links    uint64 // st_nlink: names the data has, in and out of the tree
	Size     int64
}

// BlobInodes returns the inodes of blob d in repo, one per name present
// (plain and legacy).
func (r *Root) BlobInodes(repo string, d digest.Digest) ([]Inode, error) {
	var out []Inode
	for _, p := range []string{r.BlobPath(repo, d), r.LegacyBlobPath(repo, d)} {
		in, err := r.inodeOf(p)
		if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

func (r *Root) inodeOf(path string) (Inode, error) {
	st, err := r.statT(path, false)
	if err != nil {
		return Inode{}, err
	}
	return inodeFromStat(st), nil
}

func inodeFromStat(st *syscall.Stat_t) Inode {
	return Inode{Dev: uint64(st.Dev), Ino: st.Ino, Links: uint64(st.Nlink), Size: st.Size}
}

// RemoveBlob unlinks blob d from repo under both names and returns the
// bytes freed: the size of each inode whose last link this was. A blob
// hard-linked into other repositories frees nothing until its last
// repository lets go of it. The count is exact only while nobody else
// links or unlinks the blob, that is holding the tree lock exclusively.
func (r *Root) RemoveBlob(repo string, d digest.Digest) (int64, error) {
	if err := ValidateRepo(repo); err != nil {
		return 0, err
	}
	if err := ValidateDigest(d); err != nil {
		return 0, err
	}
	var freed int64
	for _, p := range []string{r.BlobPath(repo, d), r.LegacyBlobPath(repo, d)} {
		in, err := r.inodeOf(p)
		if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
			continue
		}
		if err != nil {
			return freed, fmt.Errorf("blob %s of %s: %w", d, repo, err)
		}
		if err := r.unlink(p); err != nil {
			return freed, fmt.Errorf("blob %s of %s: %w", d, repo, err)
		}
		if in.Links == 1 {
			freed += in.Size
		}
	}
	return freed, nil
}

// RefreshTags rewrites repo's tags/list from its type maps, as every tag
// update does. A writer killed between the two leaves them disagreeing
// until this runs again.
func (r *Root) RefreshTags(repo string) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	return r.updateRepo(repo, func() error { return nil })
}

// TagsInStep reports whether what is derived from repo's type maps agrees
// with tags, their names: tags/list lists exactly them, and nginx's tag
// link directories hold a link for each and for no other. A writer killed
// between its steps leaves them out of step; RefreshTags sets them right.
// Checking first lets a collection of an unchanged repository write
// nothing. Links are compared by name only: one naming the wrong manifest
// (an export killed between its links and its type map) is re-derived by
// the repository's next update, which a collection runs before it deletes
// any manifest of the repository.
func (r *Root) TagsInStep(repo string, tags []string) (bool, error) {
	listed, ok, err := r.ReadTagsList(repo)
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

// ReadTagsList returns the tags repo's tags/list names, and false when
// the repository has no tags/list.
func (r *Root) ReadTagsList(repo string) ([]string, bool, error) {
	b, err := r.readSmall(r.TagsListPath(repo), maxListSize)
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var l struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, true, fmt.Errorf("%s: %v", r.TagsListPath(repo), err)
	}
	if l.Name != repo {
		return nil, true, fmt.Errorf("%s: names repository %q", r.TagsListPath(repo), l.Name)
	}
	return l.Tags, true, nil
}

// maxHeadersSize bounds what ReadHeaders reads: two lines are written,
// and TripleO's were no longer.
const maxHeadersSize = 1 << 20

// maxListSize bounds what ReadTagsList reads: far more than any real
// tags/list, far less than memory.
const maxListSize = 64 << 20

// ReadCatalog returns the repositories _catalog names.
func (r *Root) ReadCatalog() ([]string, error) {
	b, err := r.readSmall(r.CatalogPath(), maxListSize)
	if err != nil {
		return nil, err
	}
	var c struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %v", r.CatalogPath(), err)
	}
	return c.Repositories, nil
}

// RemoveRepo removes repository repo from the tree if it holds nothing:
// no manifest directory or type map and no blob (dot files, such as a
// TripleO manifests/.htaccess or stale temporary files, do not count). It
// reports whether the repository is gone. Empty parent directories go
// too, up to v2, unless they are repositories themselves. Only call it
// holding the tree lock exclusively: an export may be about to fill it.
func (r *Root) RemoveRepo(repo string) (bool, error) {
	if err := ValidateRepo(repo); err != nil {
		return false, err
	}
	dir := r.RepoDir(repo)
	for _, sub := range []string{"manifests", "blobs"} {
		if empty, err := r.onlyDotEntries(filepath.Join(dir, sub)); err != nil || !empty {
			return false, err
		}
	}
	// tags/ first: without tags/list nobody lists the repository, and a
	// crash part way leaves a repository the next collection finds again.
	// referrers/ next: with no manifest left, its indexes list nothing
	// that exists.
	for _, sub := range []string{"tags", referrersDir, "manifests", "blobs"} {
		if err := r.removeTree(filepath.Join(dir, sub)); err != nil {
			return false, fmt.Errorf("repository %s: %w", repo, err)
		}
	}
	_ = r.unlink(r.repoLockPath(repo)) // nobody holds it under the exclusive tree lock
	d := dir
	for ; d != r.V2Dir() && !r.isRepoDir(d); d = filepath.Dir(d) {
		if err := r.removeDir(d); err != nil {
			break // not empty: a nested repository, or something of the admin's
		}
	}
	for ; ; d = filepath.Dir(d) {
		// A nested repository removed meanwhile may have taken d along.
		err := r.syncDir(d)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrOutsideRoot) || d == r.V2Dir() {
			return true, fmt.Errorf("repository %s: %w", repo, err)
		}
	}
}

// onlyDotEntries reports whether dir is missing or holds nothing but dot
// files. A dir that is a symlink holds nothing of the tree: removing the
// repository removes the link.
func (r *Root) onlyDotEntries(dir string) (bool, error) {
	if fi, err := r.lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return true, nil
	}
	entries, err := r.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOutsideRoot) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			return false, nil
		}
	}
	return true, nil
}

// TryLockGC takes locks/gc.lock, which only collectors take, if nobody holds
// it; otherwise it returns nil. It keeps two collections from queueing
// behind each other on the tree lock: cron may start the next one while
// the last still runs.
func (r *Root) TryLockGC() (*Lock, error) {
	return r.lockFile(filepath.Join(r.locksDir(), "gc.lock"), syscall.LOCK_EX|syscall.LOCK_NB, "")
}

// BlobLocks lists the digests that have a blob lock file.
func (r *Root) BlobLocks() ([]digest.Digest, error) {
	return r.digestsNamed(r.locksDir(), func(e fs.DirEntry) digest.Digest {
		name, ok := strings.CutPrefix(e.Name(), "blob-")
		alg, hex, ok2 := strings.Cut(name, "-")
		if !ok || !ok2 {
			return ""
		}
		return digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	})
}

// RemoveBlobLock removes the lock file of blob d. Only call it holding
// the tree lock exclusively: blob locks are taken only under the shared
// tree lock, so nobody holds or waits for it then, and removing a lock
// file someone waits on would let two writers lock different files.
func (r *Root) RemoveBlobLock(d digest.Digest) error {
	return r.unlink(r.blobLockPath(d))
}
