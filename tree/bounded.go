package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// readSmall returns the content of the regular file at path, at most
// limit bytes (more is an error that matches errOverLimit), resolving
// path inside the tree; anything but a regular file there is
// ErrNotRegular (openRegular). It makes the four system calls reading a
// small file needs — openat2, fstat, one read, close — where os.ReadFile
// makes about eight (an os.File tries the runtime poller and sets the
// descriptor back to blocking): a collection reads every manifest and
// every type map of the tree, tens of thousands of small files, and
// spends its time in those calls. The fstat that refuses what is not a
// regular file also gives the size: a file over the limit is refused
// unread, and any other is read with one read.
func (r *Root) readSmall(path string, limit int) ([]byte, error) {
	var b []byte
	err := r.at("open", path, func(t *dirHandle, name string) error {
		fd, st, err := t.openRegular(name)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if st.Size() > int64(limit) {
			return &limitError{path, limit}
		}
		b, err = readLimited(func(p []byte) (int, error) {
			for {
				n, err := syscall.Read(fd, p)
				if err != syscall.EINTR {
					return max(n, 0), err
				}
			}
		}, path, limit, int(st.Size()))
		return err
	})
	var le *limitError
	var re *readError
	switch {
	case errors.As(err, &le):
		return nil, le
	case errors.As(err, &re):
		return nil, &fs.PathError{Op: "read", Path: path, Err: re.err}
	}
	return b, err
}

// readLimited reads with read until it returns 0 bytes, or fewer than it
// asked for, at most limit; size is what the file held when opened, the
// first read asks for one byte more. A short read of a file is its end:
// the tree's files are replaced by rename, never appended to, and a read
// of a regular file returns all it asked for unless the file ends — so
// the read that would only say so, one system call of the few a small
// file costs, is left out.
func readLimited(read func([]byte) (int, error), path string, limit, size int) ([]byte, error) {
	buf := make([]byte, 0, min(max(size, 0)+1, limit+1))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		want := cap(buf) - len(buf)
		n, err := read(buf[len(buf):cap(buf)])
		if err != nil {
			return nil, &readError{cause(err)}
		}
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, &limitError{path, limit}
		}
		if n < want {
			return buf, nil
		}
	}
}

// readError is a failed read, told apart from a failed open.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// errOverLimit matches the error of a file longer than readSmall's limit.
var errOverLimit = errors.New("over the limit")

type limitError struct {
	path  string
	limit int
}

func (e *limitError) Error() string {
	return fmt.Sprintf("%s: over the %d byte limit", e.path, e.limit)
}

func (e *limitError) Is(target error) bool { return target == errOverLimit }
