package tree

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
// means unknown. It reads at most size+1 bytes: a source that sends more
// than it declared is cut off at the first byte too many, so it cannot
// fill the disk. The bytes are hashed once, here, on their way to the
// file.
//
// The bytes go to a temporary file in the incoming directory, ours and on
// the same file system, and path's directory is made only once they are
// verified: a failed or killed transfer leaves nothing in the served
// tree, not even an empty directory.
func (r *Root) publishVerified(path string, want digest.Digest, size int64, rd io.Reader) (int64, error) {
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
	if size >= 0 {
		rd = io.LimitReader(rd, size+1)
	}
	h := want.Algorithm().Hash()
	n, err := io.Copy(io.MultiWriter(f, h), rd)
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
	return n, r.syncDir(filepath.Dir(path))
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

// Truncated reports a stream that ended before its declared size: worth
// another try, unlike bytes that are wrong.
func (e *MismatchError) Truncated() bool { return e.Size >= 0 && e.Got < e.Size }
