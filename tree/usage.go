package tree

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
)

// What the read-only views (list, inspect, du) need of the tree, beyond
// what servers and collectors read.

// TagChanged is when tag of repo was last set: the modification time of
// its type map, which every retag replaces.
func (r *Root) TagChanged(repo, tag string) (time.Time, error) {
	if err := ValidateTag(tag); err != nil {
		return time.Time{}, err
	}
	fi, err := r.lstat(r.TypeMapPath(repo, tag))
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

// ReadBlob returns the bytes of blob d of repo, at most limit of them:
// for small blobs a view shows, such as image configs.
func (r *Root) ReadBlob(repo string, d digest.Digest, limit int64) ([]byte, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	if err := ValidateDigest(d); err != nil {
		return nil, err
	}
	f, err := r.OpenBlob(repo, d)
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

// RepoFiles lists the inode of every regular file of repo — blobs,
// manifests, headers, type maps, listings — not those of repositories
// nested below it. Hard links share an inode: a blob linked into three
// repositories appears, with the same Dev and Ino, in the files of each.
func (r *Root) RepoFiles(repo string) ([]Inode, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	var out []Inode
	for sub := range layoutDirs {
		err := r.walkFiles(filepath.Join(r.RepoDir(repo), sub), func(in Inode) { out = append(out, in) })
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// TreeFiles lists the inode of every regular file under v2, each once:
// what the tree costs the file system.
func (r *Root) TreeFiles() ([]Inode, error) {
	seen := map[[2]uint64]bool{}
	var out []Inode
	err := r.walkFiles(r.V2Dir(), func(in Inode) {
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
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
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
