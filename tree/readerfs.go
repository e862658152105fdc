package tree

import (
	"io/fs"
	"os"
)

// FS is the files of the tree a server serves, as an fs.FS and an
// fs.StatFS. Names are relative to the root, with "/" separators, as the
// route table's file templates expand them (Match.Expand):
// "v2/<repo>/manifests/<digest>/index.json", "v2/<repo>/blobs/<digest>".
//
// Every name is resolved inside the root, as OpenInTree resolves a path
// (confine.go): a symlink on the way that leads out of the root is
// ErrOutsideRoot, which is not fs.ErrNotExist (a server answers it as
// missing by name). Open opens regular files
// only, without blocking (regular.go): anything else there is
// ErrNotRegular, closed unread. Errors are *fs.PathError naming the name
// asked for; a name fs.ValidPath refuses is fs.ErrInvalid.
//
// The FS Root.FS returns opens the root directory for each Open and Stat
// and closes it again (unless the Root holds a lock of the tree, whose
// descriptor they share). One held for a request (Hold) opens it once,
// for all the operations of the request, until its Close.
type FS struct {
	r *Root
	p *pin // the root held open by Hold until Close; nil: not held
}

// FS returns the files of the tree a server serves. It holds nothing
// open: each Open and Stat opens the root directory as any read of the
// tree does (Hold spares that for the operations of one request).
func (r *Root) FS() FS { return FS{r: r} }

var _ fs.StatFS = FS{}

// Hold returns f holding the root directory open, for the operations of
// one request, until Close: they resolve their names beneath that one
// descriptor, where each would otherwise open the root by name (a path
// resolution and a descriptor) and close it again.
//
// Close must follow, and soon: the held descriptor keeps the file system
// busy (umount fails), and the held FS keeps reading the root directory
// it opened, even once another directory has been moved to the root's
// name (a restored tree); the next Hold opens the root by name again and
// sees the new one. When the root cannot be opened (a server started
// before the tree exists), nothing is held, and each operation opens the
// root itself and reports its error, as without Hold. After Close, each
// operation opens the root itself again, as Root.FS's do. A copy of a
// held FS shares its hold, which a Close of either ends; Hold of a held
// FS holds the root anew, with a Close of its own.
func (f FS) Hold() FS { return FS{r: f.r, p: f.r.pin()} }

// Close lets go of what Hold holds; the root's descriptor is closed once
// the operations in flight are done with it (files opened through the FS
// stay open: they outlive the descriptor they were opened through). It
// returns nil, and does nothing on an FS not held or already closed.
func (f FS) Close() error {
	f.p.close()
	return nil
}

// Open opens the regular file name for reading. The file is an *os.File,
// so that a server can send it with sendfile(2); it is a blocking one,
// as os.Open's.
func (f FS) Open(name string) (fs.File, error) {
	file, _, err := f.OpenStat(name)
	if err != nil {
		return nil, err
	}
	return file, nil
}

// OpenStat is Open, returning the *os.File itself and its description
// as the open found it: the fstat(2) that checked it is a regular file,
// which spares a server the second fstat of File.Stat.
func (f FS) OpenStat(name string) (*os.File, fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	file, fi, err := f.r.openName(f.p, f.r.dir+"/"+name, name)
	if err != nil {
		return nil, nil, renamed(err, name)
	}
	return file, fi, nil
}

// Stat describes what is at name, symlinks inside the tree followed,
// whatever its type: a directory too (a route's Requires is one). It
// opens nothing for reading.
func (f FS) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	fi, err := f.r.statName(f.p, "stat", name, name, true)
	if err != nil {
		return nil, renamed(err, name)
	}
	return fi, nil
}

// renamed is err, a *fs.PathError of a path in the tree, naming name
// instead, as an fs.FS's errors do.
func renamed(err error, name string) error {
	if pe, ok := err.(*fs.PathError); ok {
		return &fs.PathError{Op: pe.Op, Path: name, Err: pe.Err}
	}
	return &fs.PathError{Op: "open", Path: name, Err: err}
}
