package imagefs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Type is what an entry is.
type Type string

// The types of entries. A layer's own list has whiteouts and opaque
// markers too; an image's final file system has neither.
const (
	File     Type = "file"
	Dir      Type = "dir"
	Symlink  Type = "symlink"
	Hardlink Type = "hardlink"
	Char     Type = "char"
	Block    Type = "block"
	FIFO     Type = "fifo"
	// Whiteout is a deletion: the layer removes Path from the layers below.
	Whiteout Type = "whiteout"
	// Opaque is an opaque directory marker: the layer hides what the
	// layers below hold in directory Path.
	Opaque Type = "opaque"
)

// UnmarshalText makes a known type the package's own constant: an entry
// list decoded from a cache holds no copy of "file" per entry. An unknown
// one is kept as spelled, for valid to refuse.
func (t *Type) UnmarshalText(b []byte) error {
	switch Type(b) {
	case File:
		*t = File
	case Dir:
		*t = Dir
	case Symlink:
		*t = Symlink
	case Hardlink:
		*t = Hardlink
	case Char:
		*t = Char
	case Block:
		*t = Block
	case FIFO:
		*t = FIFO
	case Whiteout:
		*t = Whiteout
	case Opaque:
		*t = Opaque
	default:
		*t = Type(b)
	}
	return nil
}

func (t Type) valid() bool {
	switch t {
	case File, Dir, Symlink, Hardlink, Char, Block, FIFO, Whiteout, Opaque:
		return true
	}
	return false
}

// Entry is one entry of a layer, as its tar header says, its path made
// relative to the image's root ("etc/passwd"; never "." or absolute, no
// ".." component, and "" only for an opaque marker of the root itself).
type Entry struct {
	Path string `json:"path"`
	Type Type   `json:"type"`
	// Size is the byte count of a regular file's content; 0 for the rest.
	Size int64 `json:"size,omitempty"`
	// Mode holds the permission bits with setuid, setgid and sticky
	// (07777), as the tar header's mode.
	Mode  uint32    `json:"mode,omitempty"`
	UID   int       `json:"uid,omitempty"`
	GID   int       `json:"gid,omitempty"`
	MTime time.Time `json:"mtime,omitzero"`
	// Link is a symlink's target as written, or the path a hard link
	// names, relative to the image's root as Path is.
	Link string `json:"link,omitempty"`
	// Major and Minor are a device's numbers.
	Major int64 `json:"major,omitempty"`
	Minor int64 `json:"minor,omitempty"`
	// Digest is the sha256 of a regular file's content.
	Digest digest.Digest `json:"digest,omitempty"`
	// Seq is the entry's position among the layer's tar headers, from 0:
	// where Extract finds its content again.
	Seq int `json:"seq"`
}

// EntryError is an entry a layer cannot hold: its name (as the tar
// header spells it) and what is wrong with it.
type EntryError struct {
	Name string
	Err  error
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %q: %v", e.Name, e.Err) }
func (e *EntryError) Unwrap() error { return e.Err }

// Errors an entry's name or link can have.
var (
	ErrAbsolute = errors.New("absolute path")
	ErrDotDot   = errors.New("path with a \"..\" component")
	ErrEmpty    = errors.New("empty path")
)

// cleanPath makes a tar name relative to the image's root: "./" prefixes
// and trailing slashes go, "" and "." are the root itself (returned as
// ""). A name starting with "/" or holding a ".." component is refused:
// a layer that spells one is malformed or hostile, and no path of it is
// ever resolved outside the image.
func cleanPath(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", ErrAbsolute
	}
	if p, ok := cleanAlready(name); ok {
		return p, nil
	}
	var parts []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
		case "..":
			return "", ErrDotDot
		default:
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/"), nil
}

// cleanAlready is what cleanPath makes of name, as a substring of name,
// when name is what almost every tar header holds: plain components,
// perhaps after "./" and before a trailing "/". Such a name then costs no
// allocation; false sends the rest (".", "..", "//" and "/./" inside) the
// long way.
func cleanAlready(name string) (string, bool) {
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	name = strings.TrimSuffix(name, "/")
	if name == "" || name == "." {
		return "", false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		switch name[start:i] {
		case "", ".", "..":
			return "", false
		}
		start = i + 1
	}
	return name, true
}

// EncodeList is the bytes of a layer's entry list, as DecodeList reads
// them back: what a cache stores.
// They are json.Marshal's bytes, made entry by entry into one buffer of
// about their size, not in a buffer grown by doubling and then copied:
// for a large layer those copies were the peak of a cold listing's
// memory.
func EncodeList(es []Entry) ([]byte, error) {
	if es == nil {
		return []byte("null"), nil
	}
	// About what an entry takes past its strings: keys, type, numbers, an
	// mtime with no fraction of a second.
	const perEntry = 128
	n := 2
	for _, e := range es {
		n += perEntry + len(e.Path) + len(e.Link) + len(e.Digest)
	}
	var buf bytes.Buffer
	buf.Grow(n)
	buf.WriteByte('[')
	enc := json.NewEncoder(&buf)
	for i := range es {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := enc.Encode(&es[i]); err != nil {
			return nil, err
		}
		buf.Truncate(buf.Len() - 1) // Encode's newline
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// DecodeList reads an entry list EncodeList wrote, checking every entry
// as a layer's own would be: a list that does not hold is an error, never
// a file system built from it.
func DecodeList(b []byte) ([]Entry, error) {
	// Every entry has a "seq" key, and the string can be nothing else
	// (a quote inside a string value is escaped): the list is made its
	// size up front, not grown by doubling, each copy garbage of a
	// list the size of the layer's.
	es := make([]Entry, 0, bytes.Count(b, []byte(`"seq":`)))
	if err := json.Unmarshal(b, &es); err != nil {
		return nil, err
	}
	for i, e := range es {
		if p, err := cleanPath(e.Path); err != nil || p != e.Path || p == "" && e.Type != Opaque {
			return nil, fmt.Errorf("entry %d: bad path %q", i, e.Path)
		}
		if !e.Type.valid() || e.Size < 0 || e.Mode > 07777 || e.Seq < 0 {
			return nil, fmt.Errorf("entry %d (%s): bad type, size, mode or position", i, e.Path)
		}
		if e.Type == Hardlink {
			if p, err := cleanPath(e.Link); err != nil || p != e.Link || p == "" {
				return nil, fmt.Errorf("entry %d (%s): bad hard link %q", i, e.Path, e.Link)
			}
		}
		if e.Type == File && e.Digest.Validate() != nil {
			return nil, fmt.Errorf("entry %d (%s): bad digest", i, e.Path)
		}
	}
	return es, nil
}
