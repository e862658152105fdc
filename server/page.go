package server

import (
	"net/http"

	"github.com/image-serve/image-serve/tree"
)

// serveCatalogPage serves the catalog page the writers keep beside _catalog
// (tree.RouteCatalogPage): a static file, with the route's Content-Type
// and cache class and Apache's validators, as the static servers send
// it. A tree without one (a root awaiting its first export) answers the
// route's NotFound, as they do.
func (h *handler) serveCatalogPage(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	f, fi, err := h.openRoute(fsys, rt, m)
	if err != nil {
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", rt.ContentType)
	setCache(w.Header(), rt)
	serveFile(w, r, f, fi)
}
