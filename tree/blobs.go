package tree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// StoredBlob is a blob file of a repository.
type StoredBlob struct {
	Digest digest.Digest
	Legacy bool // stored as "<digest>.gz", as TripleO named layers
}

// blobs lists the blob files of repo, legacy ".gz" names included, sorted.
// Dot files (temporary files of writers) and names that are no digest are
// left out.
func (r *Root) blobs(repo string) ([]StoredBlob, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	entries, err := r.readDir(filepath.Join(r.repoDir(repo), blobsDir))
	if errors.Is(err, fs.ErrNotExist) {
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
		name, legacy := strings.CutSuffix(e.Name(), legacyBlobExt)
		if d := digest.Digest(name); distribution.ValidateDigest(d) == nil {
			bs = append(bs, StoredBlob{Digest: d, Legacy: legacy})
		}
	}
	return bs, nil
}

// blobFilePath is where b lives in repo.
func (r *Root) blobFilePath(repo string, b StoredBlob) string {
	if b.Legacy {
		return r.legacyBlobPath(repo, b.Digest)
	}
	return r.blobPath(repo, b.Digest)
}

// openBlobFile opens blob b of repo and says which inode it is.
func (r *Root) openBlobFile(repo string, b StoredBlob) (*os.File, Inode, error) {
	f, err := r.open(r.blobFilePath(repo, b))
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

// blobInodes returns the inodes of blob d in repo, one per name present
// (plain and legacy).
func (r *Root) blobInodes(repo string, d digest.Digest) ([]Inode, error) {
	var out []Inode
	for _, p := range []string{r.blobPath(repo, d), r.legacyBlobPath(repo, d)} {
		in, err := r.inodeOf(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// removeBlob unlinks blob d from repo under both names and returns the
// bytes freed: the size of each inode whose last link this was. A blob
// hard-linked into other repositories frees nothing until its last
// repository lets go of it. The count is exact only while nobody else
// links or unlinks the blob, that is holding the tree lock exclusively.
func (r *Root) removeBlob(repo string, d digest.Digest) (int64, error) {
	if err := ValidateRepo(repo); err != nil {
		return 0, err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return 0, err
	}
	var freed int64
	for _, p := range []string{r.blobPath(repo, d), r.legacyBlobPath(repo, d)} {
		in, err := r.inodeOf(p)
		if errors.Is(err, fs.ErrNotExist) {
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

// publishVerified streams rd into path, checking that the bytes are
// exactly want (digest and size) before anything becomes visible. size < 0
// means unknown. It reads at most size+1 bytes: a source that sends more
// than it declared is cut off at the first byte too many, so it cannot
// fill the disk. The bytes are hashed once, here, on their way to the
// file, or, from a FileCopier that put them there itself, in the file.
//
// The bytes go to a temporary file in the incoming directory, ours and on
// the same file system, and path's directory is made only once they are
// verified: a failed or killed transfer leaves nothing in the served
// tree, not even an empty directory.
func (r *Root) publishVerified(path string, want digest.Digest, size int64, rd io.Reader, ds *dirSyncs) (int64, error) {
	// Where it will go must be inside the tree before a byte is read.
	if _, err := r.stat(filepath.Dir(path)); errors.Is(err, ErrOutsideRoot) {
		return 0, err
	}
	stage := r.incomingDir()
	if err := r.mkdirAll(stage); err != nil {
		return 0, err
	}
	f, tmp, err := r.stageFile(filepath.Join(stage, filepath.Base(path)))
	if err != nil {
		return 0, err
	}
	published := false
	defer func() {
		if !published {
			r.discardTemp(tmp)
		}
	}()
	h := want.Algorithm().Hash()
	var (
		n      int64
		copied bool
	)
	if fc, ok := rd.(FileCopier); ok {
		limit := int64(-1)
		if size >= 0 {
			limit = size + 1
		}
		n, copied, err = copyFileHashing(f, h, fc, limit)
	}
	if !copied {
		if size >= 0 {
			rd = io.LimitReader(rd, size+1)
		}
		n, err = copyHashing(&writeBehind{f: f}, h, rd)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == f.Name() {
		// Name the file being published, not its random temporary name.
		err = fmt.Errorf("writing %s: %w", path, pe.Err)
	}
	if cerr := syncAndClose(f); err == nil && cerr != nil {
		err = fmt.Errorf("writing %s: %w", path, cerr)
	}
	if err != nil {
		return n, err
	}
	if size >= 0 && n != size {
		return n, &MismatchError{Digest: want, Size: size, Got: n}
	}
	if got := digest.NewDigest(want.Algorithm(), h); got != want {
		return n, &MismatchError{Digest: want, Size: size, Got: n, GotDigest: got}
	}
	if err := r.mkdirAll(filepath.Dir(path)); err != nil {
		return n, err
	}
	if err := r.renameEntry(tmp, path); err != nil {
		return n, err
	}
	published = true
	return n, ds.sync(r, filepath.Dir(path))
}

// MismatchError reports content whose bytes are not those its digest or
// size names: a corrupt source, a truncated stream, or one that sent more
// than it declared.
type MismatchError struct {
	Digest    digest.Digest
	Size      int64         // expected, -1 when unknown
	Got       int64         // bytes received; Size+1 when the source sent more
	GotDigest digest.Digest // what the bytes hash to, when all arrived
}

// Error leaves the digest out: callers name the blob.
func (e *MismatchError) Error() string {
	switch {
	case e.Size >= 0 && e.Got > e.Size:
		return fmt.Sprintf("more than its declared %d bytes: cut off at byte %d", e.Size, e.Got)
	case e.Size >= 0 && e.Got != e.Size:
		return fmt.Sprintf("stream truncated after %d of %d bytes", e.Got, e.Size)
	case e.GotDigest != "":
		return fmt.Sprintf("content does not match its digest (got %s)", e.GotDigest)
	}
	return "content does not match its digest"
}

// incomingDir holds blobs being downloaded, as temporary files, until
// they are verified and renamed into their repository.
func (r *Root) incomingDir() string { return filepath.Join(r.dir, stateDir, incomingDir) }

// blobPath is where blob d of repo lives.
func (r *Root) blobPath(repo string, d digest.Digest) string {
	return filepath.Join(r.repoDir(repo), blobsDir, d.String())
}

// legacyBlobPath is where TripleO stored layers: "<digest>.gz", whatever
// their compression. Readers accept it as the blob d.
func (r *Root) legacyBlobPath(repo string, d digest.Digest) string {
	return r.blobPath(repo, d) + legacyBlobExt
}

// readBlob returns the bytes of blob d of repo, at most limit of them:
// for small blobs a view shows, such as image configs.
func (r *Root) readBlob(repo string, d digest.Digest, limit int64) ([]byte, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return nil, err
	}
	f, err := r.openBlob(repo, d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s of %s: over the %d byte limit", d, repo, limit)
	}
	return b, nil
}

// BlobOutcome says how a blob came to be in a repository.
type BlobOutcome int

const (
	BlobPresent BlobOutcome = iota // the repository had it already
	BlobLinked                     // hard-linked from another repository
	BlobFetched                    // fetched from the source
)

// FetchFunc opens a blob's bytes. PutBlob calls it only when no repository
// of the tree holds the blob.
type FetchFunc func() (io.ReadCloser, error)

// putBlob makes blob d (size bytes, -1 if unknown) available in repo. The
// blob is fetched only when the tree has no sound copy anywhere; a
// per-digest lock held across processes makes concurrent exports of
// images sharing layers fetch each shared blob once. Bytes are verified
// while streaming and published only when they match. The sync of the
// blob's directory is left to ds, which syncs each directory once for a
// whole batch (nil: at once).
//
// A copy already in the tree is sound when its size is the declared one
// (a truncated file is replaced, not reused) and, with verify, when its
// bytes hash to d: re-hashing every reused blob is slow, so only
// export --verify-existing asks for it.
func (r *Root) putBlob(repo string, d digest.Digest, size int64, verify bool, fetch FetchFunc, ds *dirSyncs) (BlobOutcome, int64, error) {
	if err := ValidateRepo(repo); err != nil {
		return 0, 0, err
	}
	if err := distribution.ValidateDigest(d); err != nil {
		return 0, 0, err
	}
	if r.hasSoundBlob(repo, d, size, verify) {
		return BlobPresent, 0, nil
	}
	l, err := r.lockBlob(d)
	if err != nil {
		return 0, 0, err
	}
	defer l.Unlock()
	if r.hasSoundBlob(repo, d, size, verify) {
		return BlobPresent, 0, nil
	}
	if src, ok := r.findBlob(d, size, verify); ok {
		// publishHardLink, not link: a broken copy of this repository's
		// is replaced, never kept because its name exists.
		if err := r.mkdirAll(filepath.Dir(r.blobPath(repo, d))); err != nil {
			return 0, 0, err
		}
		if err := r.linkInto(src, r.blobPath(repo, d), ds); err != nil {
			return 0, 0, fmt.Errorf("blob %s: link from %s: %w", d, src, err)
		}
		return BlobLinked, 0, nil
	}
	if err := r.checkSpace(d, size); err != nil {
		return 0, 0, err
	}
	rc, err := fetch()
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	n, err := r.publishVerified(r.blobPath(repo, d), d, size, rc, ds)
	if err != nil {
		return BlobFetched, n, fmt.Errorf("blob %s: %w", d, err)
	}
	return BlobFetched, n, nil
}

// hasSoundBlob reports whether repo holds a sound copy of blob d: under
// its plain name or, when it has none, its legacy one (readers prefer the
// plain name, so a broken plain copy is not made good by a legacy one).
func (r *Root) hasSoundBlob(repo string, d digest.Digest, size int64, verify bool) bool {
	p := r.blobPath(repo, d)
	if !r.isFile(p) {
		p = r.legacyBlobPath(repo, d)
	}
	return r.soundBlob(p, d, size, verify)
}

// soundBlob reports whether the file at path is blob d: a regular file of
// size bytes (when size is known) whose bytes, with verify, hash to d.
//
// Only a regular file counts, never a symlink: blobs are shared as hard
// links, and a link of a symlink would be a symlink.
func (r *Root) soundBlob(path string, d digest.Digest, size int64, verify bool) bool {
	fi, err := r.lstat(path)
	if err != nil || !fi.Mode().IsRegular() || (size >= 0 && fi.Size() != size) {
		return false
	}
	if !verify {
		return true
	}
	f, err := r.open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := d.Algorithm().Hash()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return digest.NewDigest(d.Algorithm(), h) == d
}

// findBlob looks for a sound copy of blob d in every repository of the
// tree. The list is read afresh each time: another process may have just
// added a repository.
func (r *Root) findBlob(d digest.Digest, size int64, verify bool) (string, bool) {
	repos, _, _ := r.repoDirs()
	for _, repo := range repos {
		for _, p := range []string{r.blobPath(repo, d), r.legacyBlobPath(repo, d)} {
			if r.soundBlob(p, d, size, verify) {
				return p, true
			}
		}
	}
	return "", false
}

// checkSpace refuses a blob of size bytes that the tree's file system has
// no room for, before the first byte is written: a source declaring a
// huge blob must not fill the disk the served tree lives on. An unknown
// size (-1) or free space passes; the write then finds out.
func (r *Root) checkSpace(d digest.Digest, size int64) error {
	if size < 0 {
		return nil
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(r.v2Dir(), &st); err != nil {
		return nil
	}
	if free := int64(st.Bavail) * st.Bsize; size > free {
		return fmt.Errorf("blob %s: %d bytes declared, but the file system of %s has only %d bytes free", d, size, r.Dir(), free)
	}
	return nil
}

// openBlob opens blob d of repo under its plain or legacy name.
// A blob whose path leads outside the tree is not found: the error says
// so (ErrOutsideRoot) unless the legacy name is found instead.
func (r *Root) openBlob(repo string, d digest.Digest) (*os.File, error) {
	f, err := r.open(r.blobPath(repo, d))
	if !absentOrOutside(err) {
		return f, err
	}
	f, lerr := r.open(r.legacyBlobPath(repo, d))
	if absentOrOutside(lerr) && errors.Is(err, ErrOutsideRoot) {
		return nil, err
	}
	return f, lerr
}
