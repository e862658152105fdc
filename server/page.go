package server

import (
	"net/http"
	"strconv"

	"github.com/image-serve/image-serve/tree"
)

// serveCatalogPage serves the catalog page the writers keep beside
// _catalog (tree.RouteCatalogPage): a static file, with the route's
// Content-Type and cache class and Apache's validators, as the static
// servers send it. A tree without one answers the route's NotFound, as
// they do; but a root that awaits its first export answers the page of no
// tag (tree.EmptyPage), which Apache and nginx serve from the skeleton
// config writes there.
func (h *handler) serveCatalogPage(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	f, fi, err := h.openRoute(fsys, rt, m)
	if missing(err) {
		if st, serr := h.root.State(); serr == nil && st == tree.AwaitsTree {
			page := tree.EmptyPage()
			w.Header().Set("Content-Type", rt.ContentType)
			setCache(w.Header(), rt)
			w.Header().Set("Content-Length", strconv.Itoa(len(page)))
			if r.Method != http.MethodHead {
				_, _ = w.Write(page)
			}
			return
		}
	}
	if err != nil {
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", rt.ContentType)
	setCache(w.Header(), rt)
	serveFile(w, r, f, fi)
}
