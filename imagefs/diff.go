package imagefs

import (
	"strings"
)

// The aspects in which a path can differ between two file systems, as a
// Change names them.
const (
	ChangedType    = "type"
	ChangedLink    = "link"
	ChangedContent = "content"
	ChangedSize    = "size"
	ChangedMode    = "mode"
	ChangedOwner   = "owner"
	ChangedDevice  = "device"
	ChangedMTime   = "mtime"
)

// Change is a path that differs between two file systems: added (Old
// nil), deleted (New nil) or changed (What says how).
type Change struct {
	Path string
	Old  *Node
	New  *Node
	What []string
}

// Diff compares two lists of paths sorted by path (as Files gives them)
// and returns their differences, sorted by path. With semantic, mtimes
// are no difference: a rebuilt image is compared by what it holds.
func Diff(a, b []*Node, semantic bool) []Change {
	var out []Change
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || i < len(a) && a[i].Path < b[j].Path:
			out = append(out, Change{Path: a[i].Path, Old: a[i]})
			i++
		case i == len(a) || b[j].Path < a[i].Path:
			out = append(out, Change{Path: b[j].Path, New: b[j]})
			j++
		default:
			if what := differ(a[i], b[j], semantic); len(what) > 0 {
				out = append(out, Change{Path: a[i].Path, Old: a[i], New: b[j], What: what})
			}
			i, j = i+1, j+1
		}
	}
	return out
}

// differ says in what x and y differ. A hard link and the file it is one
// inode with hold the same bytes: between them, only the type differs.
func differ(x, y *Node, semantic bool) []string {
	var what []string
	if x.Type != y.Type {
		what = append(what, ChangedType)
	}
	if x.Link != y.Link && (x.Type == Symlink || y.Type == Symlink || x.Type == y.Type) {
		what = append(what, ChangedLink)
	}
	if x.Digest != y.Digest {
		what = append(what, ChangedContent)
	}
	if x.Size != y.Size {
		what = append(what, ChangedSize)
	}
	if x.Mode != y.Mode {
		what = append(what, ChangedMode)
	}
	if x.UID != y.UID || x.GID != y.GID {
		what = append(what, ChangedOwner)
	}
	if x.Major != y.Major || x.Minor != y.Minor {
		what = append(what, ChangedDevice)
	}
	if !semantic && !x.MTime.Equal(y.MTime) {
		what = append(what, ChangedMTime)
	}
	return what
}

// Kind is the letter podman's diff prints for c: A added, C changed,
// D deleted.
func (c Change) Kind() string {
	switch {
	case c.Old == nil:
		return "A"
	case c.New == nil:
		return "D"
	}
	return "C"
}

// String is c as one line of podman's diff, with what changed.
func (c Change) String() string {
	s := c.Kind() + " /" + c.Path
	if len(c.What) > 0 {
		s += " (" + strings.Join(c.What, ", ") + ")"
	}
	return s
}
