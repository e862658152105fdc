package catalog

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// mkdirAll creates dir and its missing parents with dirMode, whatever the
// umask. Below the root it resolves dir inside the tree: a symlink on the
// way that leads outside is an error, never a directory made out there.
func (r *Root) mkdirAll(dir string) error {
	stat := os.Stat // the root and above: the administrator's path
	if r.inTree(dir) {
		stat = r.stat
	}
	fi, err := stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrOutsideRoot) {
		return err
	}
	if err := r.mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	return r.makeDir(dir)
}

// publish atomically replaces path with data.
func (r *Root) publish(path string, data []byte) error {
	f, err := r.pendingFile(path)
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return r.renamePending(f)
}

// publishVerified streams rd into path, checking that the bytes are
// exactly want (digest and size) before anything becomes visible. size < 0
// means unknown.
func (r *Root) publishVerified(path string, want digest.Digest, size int64, rd io.Reader) (int64, error) {
	f, err := r.pendingFile(path)
	if err != nil {
		return 0, err
	}
	defer f.Cleanup()
	v := want.Verifier()
	n, err := io.Copy(io.MultiWriter(f, v), rd)
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == f.Name() {
		// Name the file being published, not its random temporary name.
		return n, fmt.Errorf("writing %s: %w", path, pe.Err)
	}
	if err != nil {
		return n, err
	}
	if size >= 0 && n != size {
		return n, &MismatchError{Digest: want, Size: size, Got: n}
	}
	if !v.Verified() {
		return n, &MismatchError{Digest: want, Size: size, Got: n}
	}
	return n, r.renamePending(f)
}

// MismatchError reports content whose bytes are not those its digest or
// size names: a corrupt source or a truncated stream.
type MismatchError struct {
	Digest digest.Digest
	Size   int64 // expected, -1 when unknown
	Got    int64 // bytes received
}

// Error leaves the digest out: callers name the blob.
func (e *MismatchError) Error() string {
	if e.Size >= 0 && e.Got != e.Size {
		return fmt.Sprintf("got %d bytes, want %d (truncated or corrupt)", e.Got, e.Size)
	}
	return "content does not match its digest"
}

// link makes dst another name of src's inode. Hard links share one inode,
// so a blob shared by many repositories costs its bytes once and is freed
// with its last link. link(2) is atomic: dst is whole or absent.
func (r *Root) link(src, dst string) error {
	if err := r.mkdirAll(filepath.Dir(dst)); err != nil {
		return err
	}
	err := r.hardLink(src, dst)
	if errors.Is(err, fs.ErrExist) {
		return nil // another writer got there first with the same content
	}
	if err != nil {
		return err
	}
	return r.syncDir(filepath.Dir(dst))
}
