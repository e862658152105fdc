package server

import (
	"io"
	"io/fs"
	"net/http"
	"sync"

	"github.com/image-serve/image-serve/tree"
)

// Every file the server sends is found by the route table and opened
// through the tree's FS: a route's Files, expanded with what its URL
// captured, then its Fallbacks, the first that is a regular file
// answering, as Apache's "-f" conditions take them in the table's order.
// The FS resolves every name inside the root and opens regular files
// only, without blocking; what it refuses — a name leading out of the
// root, a FIFO, a directory — is a missing file (missing, errors.go).

// file is what the tree's FS opens: an *os.File, which http.ServeContent
// hands to sendfile(2) through its io.ReadSeeker.
type file interface {
	fs.File
	io.ReadSeeker
}

// The routes whose files a handler of another route serves or names,
// looked up at the first request: the table is compiled when first read,
// and a command that serves nothing should not pay for it at start-up.
var manifestByDigestRoute = sync.OnceValue(func() *tree.Route { return route(tree.RouteManifestByDigest) })

// route is the route of the table named name.
func route(name string) *tree.Route {
	rt, ok := tree.LookupRoute(name)
	if !ok {
		panic("server: no route " + name)
	}
	return &rt
}

// openRoute opens the file rt serves for m: the first of its Files, then
// of its Fallbacks, expanded with m, that is a regular file of the tree.
// When none is, the error is the last candidate's, which missing reports.
func (h *handler) openRoute(fsys tree.FS, rt *tree.Route, m tree.Match) (file, fs.FileInfo, error) {
	err := error(&fs.PathError{Op: "open", Path: rt.Name, Err: fs.ErrNotExist}) // a route without files
	for _, candidates := range [][]string{rt.Files, rt.Fallbacks} {
		for _, t := range candidates {
			var f file
			var fi fs.FileInfo
			if f, fi, err = openFile(fsys, m.Expand(t)); !missing(err) {
				return f, fi, err
			}
		}
	}
	return nil, nil, err
}

// openFile opens name through fsys, and describes it as the open found
// it.
func openFile(fsys tree.FS, name string) (file, fs.FileInfo, error) {
	f, fi, err := fsys.OpenStat(name)
	if err != nil {
		return nil, nil, err
	}
	return f, fi, nil
}

// setCache sets the Cache-Control of rt's answers: none for
// tree.CacheValidators.
func setCache(hd http.Header, rt *tree.Route) {
	if rt.Cache != tree.CacheValidators {
		hd.Set("Cache-Control", string(rt.Cache))
	}
}
