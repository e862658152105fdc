package tree

import (
	"io/fs"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// Inode identifies a file's data: hard links share one.
type Inode struct {
	Dev, Ino uint64
	Links    uint64 // st_nlink: names the data has, in and out of the tree
	Size     int64
}

func (r *Root) inodeOf(path string) (Inode, error) {
	st, err := r.statT(path, false)
	if err != nil {
		return Inode{}, err
	}
	return inodeFromStat(st), nil
}

// inodeOf is Root.inodeOf of h's entry name: the entry itself, a link
// not followed.
func (h *heldDir) inodeOf(name string) (Inode, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(h.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return Inode{}, &fs.PathError{Op: "lstat", Path: filepath.Join(h.path, name), Err: err}
	}
	return Inode{Dev: uint64(st.Dev), Ino: uint64(st.Ino), Links: uint64(st.Nlink), Size: st.Size}, nil
}

func inodeFromStat(st *syscall.Stat_t) Inode {
	return Inode{Dev: uint64(st.Dev), Ino: st.Ino, Links: uint64(st.Nlink), Size: st.Size}
}

// repoFiles lists the inode of every regular file of repo — blobs,
// manifests, headers, type maps, listings — not those of repositories
// nested below it. Hard links share an inode: a blob linked into three
// repositories appears, with the same Dev and Ino, in the files of each.
func (r *Root) repoFiles(repo string) ([]Inode, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	var out []Inode
	for sub := range layoutDirs {
		err := r.walkFiles(filepath.Join(r.repoDir(repo), sub), func(in Inode) { out = append(out, in) })
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// treeFiles lists the inode of every regular file under v2, each once:
// what the tree costs the file system.
func (r *Root) treeFiles() ([]Inode, error) {
	seen := map[[2]uint64]bool{}
	var out []Inode
	err := r.walkFiles(r.v2Dir(), func(in Inode) {
		if k := [2]uint64{in.Dev, in.Ino}; !seen[k] {
			seen[k] = true
			out = append(out, in)
		}
	})
	return out, err
}

// walkFiles calls fn for every regular file under dir, following no
// symlink and never leaving the tree; a missing dir has none.
func (r *Root) walkFiles(dir string, fn func(Inode)) error {
	err := r.walkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if absentOrOutside(err) {
				return nil
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if absentOrOutside(err) {
				return nil
			}
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fn(inodeFromStat(st))
		}
		return nil
	})
	return err
}
