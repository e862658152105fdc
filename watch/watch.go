// Package watch keeps the derived files of a registry tree — tags/list,
// _catalog, nginx's links, the referrers indexes, the manifests' headers —
// in step with the tree
// when something other than image-serve changes it: an rsync from another
// host, an operator's rm -r of a repository, an older exporter still
// writing. It watches the tree with inotify (fsnotify) and re-derives
// what changed, a burst of changes at a time. A type map removed is a tag
// deleted (tree.Maint.DeriveRepo says why), logged at WARN with the digest
// nginx served for it: the tag's last record.
//
// inotify is not recursive: the watcher adds a watch for every directory
// whose entries feed derived files (tree.Root.Classify), as they appear,
// and forgets removed ones. When the kernel cannot keep up — the watch
// limit is reached or its event queue overflows — it says so once and
// falls back to full rescans at an interval.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/image-serve/image-serve/tree"
)

// Defaults of Options.
const (
	DefaultDebounce = 200 * time.Millisecond
	DefaultMaxDelay = 2 * time.Second
	DefaultRescan   = time.Minute
)

// Options tune a watch. Zero values take the defaults.
type Options struct {
	// Debounce is the quiet period: changes are re-derived once no event
	// has come for this long, so a burst (an rsync of a thousand files)
	// is one rebuild.
	Debounce time.Duration
	// MaxDelay bounds how long changes wait for a quiet period: a
	// continuous stream of events is re-derived at least this often.
	MaxDelay time.Duration
	// Rescan is the interval of full rescans once inotify cannot cover
	// the tree (the watch limit reached, events lost).
	Rescan time.Duration
	// Log receives one record per repository re-derived, what changed in
	// it, and the watcher's own state changes. Nil discards them.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxDelay < o.Debounce {
		o.MaxDelay = o.Debounce
	}
	if o.Rescan <= 0 {
		o.Rescan = DefaultRescan
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Run watches root until ctx is done, and returns ctx's cause then. It
// first re-derives the whole tree, which may have changed while nobody
// watched; after that, what changes.
//
// Each repository is re-derived holding the tree lock exclusively, a few
// milliseconds each: an export, delete or collection in flight is waited
// for (as root's lock waits say) and finishes its own derived files
// itself, so what image-serve writes is never re-derived — the watcher
// sees the events, finds everything in step and writes nothing. Exports
// starting meanwhile wait for it. Run does not create a tree: while root
// holds none (an empty directory before the first export, a tree removed
// or being replaced), it waits for one to appear, writing nothing.
func Run(ctx context.Context, root *tree.Root, o Options) error {
	w := &watcher{root: root, o: o.withDefaults(), kick: make(chan struct{}, 1), said: map[string]bool{}, damaged: map[string]bool{}}
	w.log = w.o.Log
	w.pending.full = true
	if err := w.start(); err != nil {
		return err
	}
	defer w.stop()
	return w.loop(ctx)
}

// watcher is one Run.
type watcher struct {
	root *tree.Root
	o    Options
	log  *slog.Logger

	// Set by the event goroutine (and the rescans), taken by the loop.
	mu      sync.Mutex
	pending batch
	first   time.Time // first event of pending
	last    time.Time // last event of pending
	rescans bool      // fallen back to periodic full rescans
	said    map[string]bool
	// damaged are the files the loop warned about as damage, once each.
	damaged map[string]bool
	kick    chan struct{}

	// The watches: only the event goroutine and a rescan change them,
	// under wmu.
	wmu      sync.Mutex
	fs       *fsnotify.Watcher
	dirs     map[string]bool            // watched directories
	children map[string]map[string]bool // watched directory -> its watched subdirectories
	capped   bool                       // the watch limit was reached: add no more
	done     chan struct{}              // the event goroutine has ended

	noTree bool // the loop said the tree is gone
}

// batch is what to re-derive.
type batch struct {
	repos   map[string]bool
	catalog bool
	full    bool // every repository: at start, when the tree was replaced, after lost events
}

func (b *batch) empty() bool { return len(b.repos) == 0 && !b.catalog && !b.full }

func (b *batch) addRepo(repo string) {
	if b.repos == nil {
		b.repos = map[string]bool{}
	}
	b.repos[repo] = true
}

// start opens inotify and watches the tree. A system that gives no
// inotify instance is a fallback, not an error.
func (w *watcher) start() error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOSYS) {
			w.fallBack("instances", "")
			return nil
		}
		return fmt.Errorf("watch: %w", err)
	}
	w.fs, w.done = fw, make(chan struct{})
	w.wmu.Lock()
	w.rewatch()
	n := len(w.dirs)
	w.wmu.Unlock()
	go w.events()
	w.log.Info("watching", "root", w.root.Dir(), "directories", n, "debounce", w.o.Debounce, "max_delay", w.o.MaxDelay)
	return nil
}

func (w *watcher) stop() {
	if w.fs != nil {
		w.fs.Close()
		<-w.done
	}
}

// rewatch drops every watch and watches the tree afresh, from the
// directory holding the root: the root replaced, or v2, leaves watches on
// directories that are no longer the tree's. Holding wmu.
func (w *watcher) rewatch() {
	for dir := range w.dirs {
		_ = w.fs.Remove(dir)
	}
	w.dirs, w.children = map[string]bool{}, map[string]map[string]bool{}
	// The parent only tells when the root itself comes or goes: a
	// non-recursive watch, its other entries ignored.
	w.add(filepath.Dir(w.root.Dir()))
	w.addTree(w.root.Dir(), false) // a rewatch re-derives everything anyway
}

// addTree watches dir and every directory below it that feeds derived
// files and, with mark, marks the repositories it finds for re-deriving:
// a directory copied in with its content already there (cp -a) has no
// events of its own. The watch comes before the listing, so an entry
// made meanwhile is listed or reported. Holding wmu.
func (w *watcher) addTree(dir string, mark bool) {
	if !w.add(dir) {
		return
	}
	if c := w.root.Classify(dir); mark && c.Repo != "" {
		w.mark(c)
	}
	subs, err := w.root.WatchDirs(dir)
	if err != nil {
		w.log.Debug("listing a directory to watch", "dir", dir, "err", err)
		return
	}
	for _, sub := range subs {
		w.addTree(sub, mark)
	}
}

// add watches dir, and reports whether it is watched.
func (w *watcher) add(dir string) bool {
	if w.dirs[dir] {
		return true
	}
	if w.capped {
		return false
	}
	if err := w.fs.Add(dir); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			w.capped = true
			w.fallBack("watches", dir)
		} else if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ENOTDIR) {
			w.log.Warn("cannot watch a directory; full rescans cover it", "dir", dir, "err", err)
			w.fallBack("error", dir)
		}
		return false
	}
	w.dirs[dir] = true
	parent := filepath.Dir(dir)
	if w.children[parent] == nil {
		w.children[parent] = map[string]bool{}
	}
	w.children[parent][dir] = true
	return true
}

// forget drops the watches of dir and of every directory below it: dir
// was removed or moved away, and inotify keeps watching a moved
// directory under its old name. Holding wmu.
func (w *watcher) forget(dir string) {
	for sub := range w.children[dir] {
		w.forget(sub)
	}
	delete(w.children, dir)
	if w.dirs[dir] {
		_ = w.fs.Remove(dir) // gone already when the directory was removed
		delete(w.dirs, dir)
		delete(w.children[filepath.Dir(dir)], dir)
	}
}

// events reads inotify until the watcher is closed.
func (w *watcher) events() {
	defer close(w.done)
	for {
		select {
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			w.wmu.Lock()
			w.handle(ev)
			w.wmu.Unlock()
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				w.fallBack("queue", "")
				w.mark(tree.Change{Tree: true})
				continue
			}
			w.log.Warn("inotify", "err", err)
		}
	}
}

// handle is one event: mark what it feeds, and follow directories as
// they come and go. Holding wmu.
func (w *watcher) handle(ev fsnotify.Event) {
	if ev.Op == fsnotify.Chmod {
		return // a mode, or a link count (a hard link made): nothing derived
	}
	if filepath.Dir(ev.Name) == filepath.Dir(w.root.Dir()) && ev.Name != w.root.Dir() {
		return // the parent's other entries
	}
	c := w.root.Classify(ev.Name)
	if c.Tree {
		// The root or v2 came, went or was replaced: start afresh.
		w.rewatch()
		w.mark(c)
		return
	}
	if c.Watch {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.forget(ev.Name)
		}
		if ev.Has(fsnotify.Create) {
			if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
				w.addTree(ev.Name, true)
			}
		}
	}
	w.mark(c)
}

// mark adds what c feeds to the pending batch and wakes the loop.
func (w *watcher) mark(c tree.Change) {
	if c.Repo == "" && !c.Catalog && !c.Tree {
		return
	}
	w.mu.Lock()
	if c.Repo != "" {
		w.pending.addRepo(c.Repo)
	}
	w.pending.catalog = w.pending.catalog || c.Catalog
	w.pending.full = w.pending.full || c.Tree
	now := time.Now()
	if w.first.IsZero() {
		w.first = now
	}
	w.last = now
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// take returns the pending batch if it is due at now — quiet for the
// debounce period, or waiting for the maximum delay — and how long until
// it is due otherwise (-1: nothing pending).
func (w *watcher) take(now time.Time) (batch, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending.empty() {
		return batch{}, -1
	}
	wait := min(w.last.Add(w.o.Debounce).Sub(now), w.first.Add(w.o.MaxDelay).Sub(now))
	if wait > 0 {
		return batch{}, wait
	}
	b := w.pending
	w.pending, w.first, w.last = batch{}, time.Time{}, time.Time{}
	return b, 0
}

// loop re-derives batches as they fall due, and the whole tree at the
// fallback's interval, until ctx is done.
func (w *watcher) loop(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var retry batch // failed repositories, tried again after a backoff
	var retryAt, rescanAt time.Time
	backoff := w.o.MaxDelay
	for {
		now := time.Now()
		b, wait := w.take(now)
		if wait == 0 {
			if !retry.empty() {
				b.merge(retry)
				retry = batch{}
			}
		} else if !retry.empty() && !now.Before(retryAt) {
			b, retry = retry, batch{}
		}
		if w.fallenBack() {
			if rescanAt.IsZero() {
				rescanAt = now.Add(w.o.Rescan)
			}
			if !now.Before(rescanAt) {
				b.full, rescanAt = true, now.Add(w.o.Rescan)
			}
		}
		if !b.empty() {
			failed, err := w.rebuild(ctx, b)
			if err != nil {
				return err
			}
			if failed.empty() {
				backoff = w.o.MaxDelay
			} else {
				retry.merge(failed)
				retryAt = time.Now().Add(backoff)
				backoff = min(2*backoff, 5*time.Minute)
			}
			continue
		}
		next := time.Duration(-1)
		for _, d := range []time.Duration{wait, until(retryAt, now, !retry.empty()), until(rescanAt, now, w.fallenBack())} {
			if d >= 0 && (next < 0 || d < next) {
				next = d
			}
		}
		var fire <-chan time.Time
		if next >= 0 {
			timer.Reset(next)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-w.kick:
		case <-fire:
		}
	}
}

// until is how long from now to t, when on; -1 when not.
func until(t, now time.Time, on bool) time.Duration {
	if !on {
		return -1
	}
	return max(t.Sub(now), 0)
}

func (b *batch) merge(o batch) {
	for repo := range o.repos {
		b.addRepo(repo)
	}
	b.catalog = b.catalog || o.catalog
	b.full = b.full || o.full
}

// rebuild re-derives b: each repository under the tree lock held
// exclusively, then _catalog. It returns what failed, to try again later;
// only ctx ending is an error.
func (w *watcher) rebuild(ctx context.Context, b batch) (batch, error) {
	var failed batch
	listed := map[string]bool{} // found by a full pass, not marked by an event
	if err := w.root.RequireTree(); err != nil {
		if !w.noTree {
			w.noTree = true
			if st, _ := w.root.State(); st == tree.AwaitsTree {
				// Installed before the first export: the normal course.
				w.log.Info("no tree at the root yet; waiting for the first export", "root", w.root.Dir())
			} else {
				w.log.Warn("no tree at the root; waiting for one", "root", w.root.Dir(), "err", err)
			}
		}
		return failed, nil // its coming is an event (or a rescan)
	}
	if w.noTree {
		w.noTree = false
		w.log.Info("a tree is at the root", "root", w.root.Dir())
		b.full = true
	}
	if b.full {
		if err := w.root.Init(); err != nil {
			w.log.Warn("restoring the tree's skeleton", "err", err)
		}
		var repos []string
		err := w.root.Inspect(func(v *tree.View) (err error) {
			repos, err = v.StoredRepositories()
			return err
		})
		if err != nil {
			w.log.Warn("listing repositories", "err", err)
			failed.full = true
		}
		for _, repo := range repos {
			if !b.repos[repo] {
				listed[repo] = true
				b.addRepo(repo)
			}
		}
		b.catalog = true
		if w.fs != nil {
			w.wmu.Lock()
			w.addTree(w.root.Dir(), false) // directories whose events were lost
			w.wmu.Unlock()
		}
	}
	start, changed := time.Now(), 0
	repos := make([]string, 0, len(b.repos))
	for repo := range b.repos {
		repos = append(repos, repo)
	}
	slices.Sort(repos)
	for _, repo := range repos {
		if err := ctx.Err(); err != nil {
			return failed, context.Cause(ctx)
		}
		if listed[repo] && w.changing(repo) {
			// Changing right now (an rm -r, an rsync): re-derived once
			// quiet, rather than written into while it changes.
			continue
		}
		d, damaged, lerr, err := w.deriveRepo(repo)
		if err != nil {
			if ctx.Err() != nil {
				return failed, context.Cause(ctx)
			}
			w.log.Warn("re-deriving a repository; trying again later", "repo", repo, "err", err)
			failed.addRepo(repo)
			continue
		}
		for _, t := range d.Removed {
			// The last record of the tag: said where an operator looks.
			w.log.Warn("removed tag: its type map is gone; export it again if that was no deletion",
				"repo", repo, "tag", t.Tag, "digest", string(t.Digest))
		}
		// A type map that is no regular file is left out of tags/list, as
		// servers answer it as missing; but it is damage, not a deletion.
		if lerr != nil {
			w.log.Warn("listing a repository's type maps", "repo", repo, "err", lerr)
		}
		for _, f := range damaged {
			if !w.damaged[f.Path] {
				w.damaged[f.Path] = true
				w.log.Warn("a tag's type map is no regular file: not served, left as it is (verify --repair removes it)", "repo", repo, "path", f.Path, "err", f.Message())
			}
		}
		if d.Changed() {
			changed++
			w.log.Info("re-derived repository", "repo", repo, "headers", d.Headers, "tags_list", d.TagsList,
				"tag_links", d.TagLinks, "typed_links", d.Typed, "referrers", d.Referrers)
			b.catalog = b.catalog || d.TagsList
		}
	}
	if b.catalog {
		c, err := w.deriveCatalog()
		switch {
		case err != nil && ctx.Err() != nil:
			return failed, context.Cause(ctx)
		case err != nil:
			w.log.Warn("re-deriving _catalog; trying again later", "err", err)
			failed.catalog = true
		case c.Rewritten:
			changed++
			w.log.Info("re-derived _catalog", "added", c.Added, "removed", c.Removed)
		}
	}
	w.log.Debug("checked", "repositories", len(repos), "catalog", b.catalog, "full", b.full, "changed", changed, "elapsed", time.Since(start))
	return failed, nil
}

// changing reports whether events have marked repo since its batch was
// taken.
func (w *watcher) changing(repo string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending.repos[repo]
}

// deriveRepo and deriveCatalog hold the tree exclusively (tree.Maintain),
// a few milliseconds each: an export's steps between its manifests and
// its tag are not under one repository lock, and a watcher that ran in
// between would do the exporter's step itself and report it as a repair.
// deriveRepo also lists, in the same hold, the repository's type maps that
// are no regular file (damaged; lerr when that listing fails).
func (w *watcher) deriveRepo(repo string) (d tree.Derived, damaged []tree.NotRegularFile, lerr, err error) {
	err = w.root.Maintain(tree.MaintainOptions{}, func(m *tree.Maint) (err error) {
		if d, err = m.DeriveRepo(repo); err != nil {
			return err
		}
		damaged, lerr = m.View().NotRegularTags(repo)
		return nil
	})
	return d, damaged, lerr, err
}

func (w *watcher) deriveCatalog() (c tree.CatalogChange, err error) {
	err = w.root.Maintain(tree.MaintainOptions{}, func(m *tree.Maint) (err error) {
		c, err = m.DeriveCatalog()
		return err
	})
	return c, err
}

func (w *watcher) fallenBack() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rescans
}

// fallBack switches to periodic full rescans, saying why once per reason:
// "watches" (the watch limit reached at dir), "queue" (events lost),
// "instances" (no inotify instance to be had) or "error" (a directory
// that cannot be watched).
func (w *watcher) fallBack(reason, dir string) {
	w.mu.Lock()
	said := w.said[reason]
	w.said[reason], w.rescans = true, true
	w.mu.Unlock()
	if said {
		return
	}
	every := w.o.Rescan.String()
	switch reason {
	case "watches":
		n := inotifyLimit("fs/inotify/max_user_watches", "user/max_inotify_watches")
		w.log.Warn(fmt.Sprintf("inotify watch limit reached (fs.inotify.max_user_watches = %s): changes below directories not watched are found by a full rescan every %s; raise the limit with: sysctl -w fs.inotify.max_user_watches=%s (and a file in /etc/sysctl.d/ to keep it)", n, every, doubled(n)),
			"reason", "max_user_watches", "dir", dir, "limit", n, "rescan_interval", w.o.Rescan)
	case "queue":
		n := inotifyLimit("fs/inotify/max_queued_events")
		w.log.Warn(fmt.Sprintf("inotify event queue overflowed (fs.inotify.max_queued_events = %s): events were lost; rescanning the whole tree now and every %s; raise the limit with: sysctl -w fs.inotify.max_queued_events=%s (and a file in /etc/sysctl.d/ to keep it)", n, every, doubled(n)),
			"reason", "max_queued_events", "limit", n, "rescan_interval", w.o.Rescan)
	case "instances":
		n := inotifyLimit("fs/inotify/max_user_instances", "user/max_inotify_instances")
		w.log.Warn(fmt.Sprintf("no inotify instance (fs.inotify.max_user_instances = %s): rescanning the whole tree every %s instead; raise the limit with: sysctl -w fs.inotify.max_user_instances=%s", n, every, doubled(n)),
			"reason", "max_user_instances", "limit", n, "rescan_interval", w.o.Rescan)
	default:
		w.log.Warn("falling back to a full rescan every "+every, "reason", reason, "rescan_interval", w.o.Rescan)
	}
}

// inotifyLimit reads the lowest of the /proc/sys limits named: the
// system's and, in a user namespace, its own.
func inotifyLimit(names ...string) string {
	best := int64(-1)
	for _, name := range names {
		b, err := os.ReadFile("/proc/sys/" + name)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && (best < 0 || n < best) {
			best = n
		}
	}
	if best < 0 {
		return "unknown"
	}
	return strconv.FormatInt(best, 10)
}

// doubled is twice the limit n, a suggestion.
func doubled(n string) string {
	v, err := strconv.ParseInt(n, 10, 64)
	if err != nil || v <= 0 {
		return "524288"
	}
	return strconv.FormatInt(2*v, 10)
}
