package server

import (
	"io/fs"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// fileCache keeps what the server parsed from small files of the tree —
// a tag's type map, a manifest's headers — by their names in the tree's
// FS, under the file's identity (device, inode, size, ctime, mtime),
// which the FS's Stat gives, resolved inside the root as every read of
// the tree is. A request then costs that stat instead of an open, reads
// and a parse. No stale answer is ever served:
// every writer replaces these files by rename, which gives the path a new
// inode, and an edit in place changes size or times; either misses.
//
// File times have the kernel's coarse clock (a few milliseconds), so two
// writes in one tick can leave the same times: a file changed less than
// racyWindow ago is read but not kept, as git treats a racily clean
// index entry. Once older, any change gives it visibly newer times.
//
// The cache is bounded: when it holds maxCached entries it starts over.
type fileCache struct {
	mu      sync.Mutex
	entries map[string]cached
	loads   atomic.Int64 // files read and parsed: what tests count
}

const (
	maxCached  = 8192
	racyWindow = 2 * time.Second
)

type fileKey struct {
	dev, ino, size      uint64
	ctimeSec, ctimeNsec int64
	mtimeSec, mtimeNsec int64
}

type cached struct {
	key   fileKey
	value any
}

// changed is the later of the file's ctime and mtime.
func (k fileKey) changed() time.Time {
	c, m := time.Unix(k.ctimeSec, k.ctimeNsec), time.Unix(k.mtimeSec, k.mtimeNsec)
	if m.After(c) {
		return m
	}
	return c
}

// identityIn is the cache key of the file name of fsys, or false when it
// cannot be stat'ed (the caller then reads it as usual and reports the
// error).
func identityIn(fsys fs.StatFS, name string) (fileKey, bool) {
	fi, err := fsys.Stat(name)
	if err != nil {
		return fileKey{}, false
	}
	return identityOf(fi)
}

// identityOf is the cache key of the file fi describes, or false when
// fi carries no stat(2).
func identityOf(fi fs.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{
		dev: uint64(st.Dev), ino: st.Ino, size: uint64(st.Size),
		ctimeSec: st.Ctim.Sec, ctimeNsec: st.Ctim.Nsec,
		mtimeSec: st.Mtim.Sec, mtimeNsec: st.Mtim.Nsec,
	}, true
}

// get returns what load gives for the file name of fsys, from the cache
// when the file is the one it was loaded from. Errors are not cached.
func (c *fileCache) get(fsys fs.StatFS, name string, load func() (any, error)) (any, error) {
	key, ok := identityIn(fsys, name)
	if !ok {
		return load()
	}
	c.mu.Lock()
	e, hit := c.entries[name]
	c.mu.Unlock()
	if hit && e.key == key {
		return e.value, nil
	}
	c.loads.Add(1)
	v, err := load()
	if err != nil {
		return nil, err
	}
	// The file may have been replaced while it was read: keep the value
	// only under the identity it still has, or keep nothing; and nothing
	// changed within racyWindow.
	if after, ok := identityIn(fsys, name); !ok || after != key || time.Since(key.changed()) < racyWindow {
		return v, nil
	}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= maxCached {
		c.entries = make(map[string]cached)
	}
	c.entries[name] = cached{key, v}
	c.mu.Unlock()
	return v, nil
}
