package tree

import (
	"io/fs"
	"path/filepath"
)

// FS is the files of the tree a server serves, as an fs.FS and an
// fs.StatFS. Names are relative to the root, with "/" separators, as the
// route table's file templates expand them (Match.Expand):
// "v2/<repo>/manifests/<digest>/index.json", "v2/<repo>/blobs/<digest>".
//
// Every name is resolved inside the root, as OpenInTree resolves a path
// (confine.go): a symlink on the way that leads out of the root is
// ErrOutsideRoot, which is fs.ErrNotExist. Open opens regular files
// only, without blocking (regular.go): anything else there is
// ErrNotRegular, closed unread. Errors are *fs.PathError naming the name
// asked for; a name fs.ValidPath refuses is fs.ErrInvalid.
type FS struct{ r *Root }

// FS returns the files of the tree a server serves.
func (r *Root) FS() FS { return FS{r} }

var _ fs.StatFS = FS{}

// Open opens the regular file name for reading. The file is an *os.File,
// so that a server can send it with sendfile(2); it is a blocking one,
// as os.Open's.
func (f FS) Open(name string) (fs.File, error) {
	path, err := f.path("open", name)
	if err != nil {
		return nil, err
	}
	file, err := f.r.open(path)
	if err != nil {
		return nil, renamed(err, name)
	}
	return file, nil
}

// Stat describes what is at name, symlinks inside the tree followed,
// whatever its type: a directory too (a route's Requires is one). It
// opens nothing for reading.
func (f FS) Stat(name string) (fs.FileInfo, error) {
	path, err := f.path("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := f.r.stat(path)
	if err != nil {
		return nil, renamed(err, name)
	}
	return fi, nil
}

// path is name's path in the tree, or op's error for a name that is no
// valid fs.FS name.
func (f FS) path(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return filepath.Join(f.r.dir, filepath.FromSlash(name)), nil
}

// renamed is err, a *fs.PathError of a path in the tree, naming name
// instead, as an fs.FS's errors do.
func renamed(err error, name string) error {
	if pe, ok := err.(*fs.PathError); ok {
		return &fs.PathError{Op: pe.Op, Path: name, Err: pe.Err}
	}
	return &fs.PathError{Op: "open", Path: name, Err: err}
}
