package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/image-serve/image-serve/distribution"
)

// The primitives a collector needs: what a repository stores, and how to
// take it away again in the order that keeps every remaining tag
// servable. Removal is only safe holding the tree lock exclusively, so
// that no export is between writing a blob and naming it in a manifest.

// ErrNoTree is a root that holds no registry tree.
var ErrNoTree = errors.New("no registry tree here")

// RequireTree reports an error unless the root holds a tree: commands that
// change an existing tree must not create one where --root is mistyped.
// A root without one is an error wrapping ErrNoTree.
func (r *Root) RequireTree() error {
	fi, err := r.stat(r.v2Dir())
	switch {
	case errors.Is(err, ErrOutsideRoot):
		return fmt.Errorf("root %s: %w", r.Dir(), err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("root %s: %w", r.Dir(), ErrNoTree)
	case err != nil:
		return fmt.Errorf("root %s: %w", r.Dir(), err)
	case !fi.IsDir():
		return fmt.Errorf("root %s: %s is not a directory", r.Dir(), r.v2Dir())
	}
	return nil
}

// RootState is what a root directory holds.
type RootState int

const (
	// HoldsTree is a root holding a registry tree, whose v2 directory
	// this user can list.
	HoldsTree RootState = iota + 1
	// AwaitsTree is an existing directory this user can list with nothing
	// in it — a file system's lost+found aside: the place of a tree
	// before the first export creates one there. The servers answer it as
	// an empty registry, and a watcher waits on it.
	AwaitsTree
)

// State says whether the root holds a tree or awaits one, and changes
// nothing. Any other root is an error naming it and what is wrong,
// wrapping ErrNoTree when it is no tree: no such directory, not a
// directory, or a directory holding something else (a mistyped --root);
// or one this user cannot list.
func (r *Root) State() (RootState, error) {
	err := r.RequireTree()
	if err == nil {
		if _, err := r.readDir(r.v2Dir()); err != nil {
			return 0, fmt.Errorf("root %s: cannot read the tree: %w", r.Dir(), cause(err))
		}
		return HoldsTree, nil
	}
	var errno syscall.Errno
	if errors.Is(err, fs.ErrPermission) && errors.As(err, &errno) {
		// Whether a tree is there is not for this user to know.
		return 0, fmt.Errorf("root %s: cannot read the directory: %w", r.Dir(), errno)
	}
	if !errors.Is(err, ErrNoTree) {
		return 0, err
	}
	entries, lerr := r.readDir(r.dir)
	switch {
	case errors.Is(lerr, fs.ErrNotExist):
		return 0, fmt.Errorf("%w: no such directory", err)
	case errors.Is(lerr, syscall.ENOTDIR):
		return 0, fmt.Errorf("%w: not a directory", err)
	case lerr != nil:
		return 0, fmt.Errorf("root %s: cannot read the directory: %w", r.Dir(), cause(lerr))
	}
	for _, e := range entries {
		if e.Name() != lostFoundDir {
			return 0, fmt.Errorf("%w, and the directory is not empty (it holds %s)", err, e.Name())
		}
	}
	return AwaitsTree, nil
}

// DefaultRoot is where TripleO's undercloud kept its tree.
const DefaultRoot = "/var/lib/image-serve"

// Modes of everything we create, whatever the umask: the web server reads
// the tree as its own user (TripleO's 0600 files under umask 077 gave
// Apache 403s).
const (
	fileMode = 0o644
	dirMode  = 0o755
)

// stateDir holds our own files inside ROOT. It is a dot directory, so no
// server template ever serves it.

// Root is a static registry tree. It is safe for concurrent use.
type Root struct {
	dir   string
	state *rootState // the root directory, opened on first use (confine.go)
	waits Waits      // how lock waits end (locks.go)
	facts *pageFacts // what the catalog page read of manifests and configs (catalogpage.go)
}

// Open returns the tree rooted at dir. It does not touch the disk: the
// directory is opened on first use, and need not exist before Init.
func Open(dir string) (*Root, error) {
	if dir == "" {
		return nil, errors.New("empty --root")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", dir, err)
	}
	return &Root{dir: abs, state: &rootState{}, facts: newPageFacts()}, nil
}

// Dir is the absolute path of the tree: the web server's document root.
func (r *Root) Dir() string { return r.dir }

// v2Dir is the directory that answers /v2/.
func (r *Root) v2Dir() string { return filepath.Join(r.dir, v2Dir) }

// ErrorsDir holds the JSON error bodies a web server sends: the
// configurations Apache and nginx are given alias the errors URL to it.
func (r *Root) ErrorsDir() string { return filepath.Join(r.dir, stateDir, errorsDir) }

// ErrorFile is the name, in ErrorsDir, of the file holding e's body.
func ErrorFile(e distribution.Error) string { return e.Name + errorExt }

// errorPath is the file in ErrorsDir holding e's body, which Init writes.
func (r *Root) errorPath(e distribution.Error) string {
	return filepath.Join(r.ErrorsDir(), ErrorFile(e))
}

// pingPath answers GET /v2/.
func (r *Root) pingPath() string { return filepath.Join(r.v2Dir(), manifestFile) }

// Init creates the skeleton every server needs to answer as a registry,
// empty or not: v2/index.json, v2/_catalog and the catalog page index.html
// (each written from the disk when it is missing, never replaced when it
// is there), the error bodies and the empty referrers index, and the
// locks directory. It is idempotent and
// rewrites nothing that is already right.
func (r *Root) Init() error {
	if err := r.mkdirAll(r.v2Dir()); err != nil {
		return err
	}
	if err := r.writeIfChanged(r.pingPath(), []byte("{}")); err != nil {
		return err
	}
	if err := r.mkdirAll(r.ErrorsDir()); err != nil {
		return err
	}
	for _, e := range distribution.Errors() {
		if err := r.writeIfChanged(r.errorPath(e), e.Body()); err != nil {
			return err
		}
	}
	if err := r.writeIfChanged(r.emptyReferrersPath(), distribution.EmptyReferrers()); err != nil {
		return err
	}
	if err := r.mkdirAll(r.locksDir()); err != nil {
		return err
	}
	return r.initCatalog()
}

// initCatalog writes _catalog from the disk when there is none, so that a
// tree nothing was tagged in yet lists no repository rather than
// answering 404, and with it the catalog page; a tree that has a _catalog
// but no page (written before there was one) gets the page alone.
// Whatever is at either path already (a file, a link) is left to the
// writers and to verify.
func (r *Root) initCatalog() error {
	missing := func(p string) bool {
		_, err := r.lstat(p)
		return errors.Is(err, fs.ErrNotExist)
	}
	if !missing(r.catalogPath()) && !missing(r.pagePath()) {
		return nil
	}
	l, err := r.lockCatalog()
	if err != nil {
		return err
	}
	defer l.Unlock()
	switch { // a writer may have been first
	case missing(r.catalogPath()):
		return r.rewriteCatalog(nil, true)
	case missing(r.pagePath()):
		return r.writePage()
	}
	return nil
}
