package imagefs

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// maxHops is how many symbolic links one path's resolution follows before
// it is taken for a loop, as Linux's 40 would be too few for nothing and
// a loop must end.
const maxHops = 255

// Errors of a path's resolution in an image.
var (
	ErrNotFound = errors.New("no such file in the image")
	ErrNotDir   = errors.New("not a directory")
	ErrLoop     = errors.New("too many levels of symbolic links")
)

// Node is a path of an image's final file system: the entry that last
// wrote it, with its real path (the one reached with every symbolic
// link of its parents followed inside the image), and where it came
// from.
type Node struct {
	Entry
	// Layer is the index (from 0, the bottom layer) of the layer that last
	// wrote the path: its entry, or a parent it implied.
	Layer int `json:"layer"`
	// DataLayer and DataSeq say where a regular file's bytes are (for a
	// hard link, those of the file it names): the index of the layer and
	// the entry's position among its tar headers. DataLayer is -1 where
	// there are no bytes.
	DataLayer int `json:"-"`
	DataSeq   int `json:"-"`

	children map[string]*Node
}

// FS is an image's file system as its layers build it, one Apply each,
// bottom first. Paths are resolved in it as the kernel would inside the
// image's root: an absolute symbolic link starts again at the image's
// root, ".." at the root stays there — nothing is ever followed out.
type FS struct {
	root    *Node
	layer   int
	deleted map[string]int // real path → the layer whose whiteout removed it
}

// New is an empty file system, before the first layer.
func New() *FS {
	return &FS{root: &Node{Entry: Entry{Type: Dir, Mode: 0o755}, DataLayer: -1, children: map[string]*Node{}}, layer: -1, deleted: map[string]int{}}
}

func split(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// resolveDir walks p from the root, following every symbolic link on the
// way inside the image, to the directory it names. With create, missing
// directories are made (mode 0755, root's), as a layer's entry implies
// its parents; a dangling link leads to where its target would be.
func (f *FS) resolveDir(p string, create bool) (*Node, error) {
	todo := split(p)
	stack := []*Node{f.root}
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == ".." {
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		dir := stack[len(stack)-1]
		n := dir.children[c]
		if n == nil {
			if !create {
				return nil, ErrNotFound
			}
			n = &Node{Entry: Entry{Path: path.Join(dir.Path, c), Type: Dir, Mode: 0o755}, Layer: f.layer, DataLayer: -1, children: map[string]*Node{}}
			dir.children[c] = n
			delete(f.deleted, n.Path)
		}
		switch n.Type {
		case Dir:
			stack = append(stack, n)
		case Symlink:
			if hops++; hops > maxHops {
				return nil, ErrLoop
			}
			if strings.HasPrefix(n.Link, "/") {
				stack = stack[:1]
			}
			todo = append(split(n.Link), todo...)
		default:
			return nil, fmt.Errorf("%s: %w", n.Path, ErrNotDir)
		}
	}
	return stack[len(stack)-1], nil
}

// Apply applies the next layer's entries, in the order of its tar: each
// entry's parent is resolved by its real path (a directory reached
// through a symbolic link included); a whiteout removes the entry it
// names from the layers below, an opaque marker what the layers below
// hold in its directory, and any other entry replaces what was at its
// path — a directory over a directory keeps the directory's contents. A
// hard link must name a file of the image, of this layer or a lower one.
// An entry that cannot apply is an *EntryError; the file system is then
// part-way through the layer.
func (f *FS) Apply(es []Entry) error {
	f.layer++
	for _, e := range es {
		if err := f.apply(e); err != nil {
			return &EntryError{Name: e.Path, Err: err}
		}
	}
	return nil
}

func (f *FS) apply(e Entry) error {
	dir, base := path.Split(e.Path)
	switch e.Type {
	case Whiteout:
		parent, err := f.resolveDir(dir, false)
		if err != nil {
			return nil // nothing below to remove
		}
		if n := parent.children[base]; n != nil && !f.touched(n) {
			delete(parent.children, base)
			f.deleted[n.Path] = f.layer
		}
		return nil
	case Opaque:
		d, err := f.resolveDir(e.Path, false)
		if err != nil {
			return nil // no directory below to hide
		}
		f.hide(d)
		return nil
	}
	parent, err := f.resolveDir(dir, true)
	if err != nil {
		return err
	}
	old := parent.children[base]
	if e.Type == Dir && old != nil && old.Type == Dir {
		real := old.Path
		old.Entry, old.Path, old.Layer = e, real, f.layer
		return nil
	}
	n := &Node{Entry: e, Layer: f.layer, DataLayer: -1}
	if p := parent.Path; !(p == "" && dir == "" || len(dir) == len(p)+1 && dir[:len(p)] == p) {
		// A parent reached through a symbolic link: the real path differs
		// from the entry's. Otherwise the entry's string is kept, not a
		// copy of it.
		n.Path = path.Join(p, base)
	}
	switch e.Type {
	case Dir:
		n.children = map[string]*Node{}
	case File:
		n.DataLayer, n.DataSeq = f.layer, e.Seq
	case Hardlink:
		tdir, tbase := path.Split(e.Link)
		tparent, err := f.resolveDir(tdir, false)
		var t *Node
		if err == nil {
			t = tparent.children[tbase]
		}
		if t == nil {
			return fmt.Errorf("hard link to %s: %w", e.Link, ErrNotFound)
		}
		if t.Type == Dir {
			return fmt.Errorf("hard link to %s: a directory", e.Link)
		}
		// One inode: the file named gives its metadata and bytes.
		n.Size, n.Digest, n.Mode, n.UID, n.GID, n.MTime = t.Size, t.Digest, t.Mode, t.UID, t.GID, t.MTime
		n.Major, n.Minor = t.Major, t.Minor
		n.DataLayer, n.DataSeq = t.DataLayer, t.DataSeq
	}
	parent.children[base] = n
	delete(f.deleted, n.Path)
	return nil
}

// touched reports whether the current layer wrote n or something below it.
func (f *FS) touched(n *Node) bool {
	if n.Layer == f.layer {
		return true
	}
	for _, c := range n.children {
		if f.touched(c) {
			return true
		}
	}
	return false
}

// hide removes from d what the layers below the current one put there,
// keeping what the current layer wrote, whatever the order of its
// entries.
func (f *FS) hide(d *Node) {
	for name, c := range d.children {
		if !f.touched(c) {
			delete(d.children, name)
			f.deleted[c.Path] = f.layer
			continue
		}
		if c.Type == Dir {
			f.hide(c)
		}
	}
}

// Files lists every path of the file system but its root, sorted.
func (f *FS) Files() []*Node {
	var out []*Node
	var walk func(n *Node)
	walk = func(n *Node) {
		for _, c := range n.children {
			out = append(out, c)
			walk(c)
		}
	}
	walk(f.root)
	slices.SortFunc(out, func(a, b *Node) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// DeletedError is a path a whiteout removed.
type DeletedError struct {
	Path  string
	Layer int
}

func (e *DeletedError) Error() string {
	return fmt.Sprintf("%s: deleted in layer %d", e.Path, e.Layer)
}

// Lookup resolves p as a process inside the image would, every symbolic
// link followed and ".." taken, inside the image: from its root, which
// ".." does not leave. A path that is not there is
// ErrNotFound or, when a whiteout removed it or a parent of it, a
// *DeletedError naming the layer.
func (f *FS) Lookup(p string) (*Node, error) {
	clean := strings.Join(split(p), "/")
	hops := 0
	for {
		if clean == "" || clean == ".." || strings.HasSuffix(clean, "/..") {
			d, err := f.resolveDir(clean, false)
			if err != nil {
				return nil, f.whyMissing(clean, err)
			}
			return d, nil
		}
		dir, base := path.Split(clean)
		parent, err := f.resolveDir(dir, false)
		if err != nil {
			return nil, f.whyMissing(clean, err)
		}
		n := parent.children[base]
		if n == nil {
			return nil, f.whyMissing(path.Join(parent.Path, base), ErrNotFound)
		}
		if n.Type != Symlink {
			return n, nil
		}
		if hops++; hops > maxHops {
			return nil, ErrLoop
		}
		t := n.Link
		if !strings.HasPrefix(t, "/") {
			t = path.Join(parent.Path, t)
		}
		// ".." past the root stays at the root, as resolveDir does.
		clean = strings.Join(inside(split(t)), "/")
	}
}

// inside drops the ".." components of cs that would climb above the root.
func inside(cs []string) []string {
	var out []string
	for _, c := range cs {
		if c == ".." {
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// whyMissing is err for the missing path p, or a *DeletedError when a
// whiteout removed p or one of its parents.
func (f *FS) whyMissing(p string, err error) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	for q := p; q != "." && q != ""; q = path.Dir(q) {
		if l, ok := f.deleted[q]; ok {
			return &DeletedError{Path: p, Layer: l}
		}
	}
	return fmt.Errorf("%s: %w", p, ErrNotFound)
}
