package server

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// servePing answers /v2/ with the route's file, the tree's v2/index.json,
// as Apache does, or with "{}" if the tree lacks it: containers/image
// refuses a registry whose /v2/ is not 200 or 401 (serving-notes §1.2).
func (h *handler) servePing(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	w.Header().Set("Content-Type", jsonType)
	setCache(w.Header(), rt)
	f, fi, err := h.openRoute(fsys, rt, m)
	if missing(err) {
		w.Header().Set("Content-Length", "2")
		if r.Method != http.MethodHead {
			_, _ = io.WriteString(w, "{}")
		}
		return
	}
	if err != nil {
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	defer f.Close()
	serveFile(w, r, f, fi)
}

// serveFile serves a tree file that changes in place of its name (by
// rename) with Apache's validators: Last-Modified and its default ETag,
// "<size>-<mtime in µs>" in hex. A republished file has a new mtime, so
// revalidation never keeps an old body.
func serveFile(w http.ResponseWriter, r *http.Request, f file, fi fs.FileInfo) {
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixMicro()))
	serveContent(w, r, fi.ModTime(), f)
}

// serveTagsList serves the repository's published tags/list: the file
// Apache serves, which the writers rebuild from the type maps after every
// change, so both servers list the same tags.
func (h *handler) serveTagsList(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	repo := m.Repo
	if tree.ValidateRepo(repo) != nil {
		h.fail(w, r, rt.NotFound)
		return
	}
	h.serveList(w, r, fsys, rt, m,
		func(data []byte) ([]string, error) {
			l, err := distribution.ParseTagsList(data)
			return l.Tags, err
		},
		func(tags []string) any { return distribution.TagsList{Name: repo, Tags: tags} }, nil)
}

// serveCatalog serves the published _catalog. A root that awaits its
// first export has none and lists no repository, as the _catalog that
// export's first step (tree.Root.Init) writes will.
func (h *handler) serveCatalog(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	h.serveList(w, r, fsys, rt, m,
		func(data []byte) ([]string, error) {
			c, err := distribution.ParseCatalog(data)
			return c.Repositories, err
		},
		func(repos []string) any { return distribution.Catalog{Repositories: repos} },
		func() bool {
			st, err := h.root.State()
			return err == nil && st == tree.AwaitsTree
		})
}

// serveList serves the listing file of rt, a listing route, for m.
// Without "n" or "last" it is the file, exactly as Apache sends it; with
// them, one page of its sorted entries (decoded by entries, encoded by
// page), as distribution pages: the entries after "last", at most n of
// them, and a Link to the next page (rt's URL for m) when more remain. A
// missing file is the route's NotFound unless empty (when not nil) says
// it stands for an empty list.
func (h *handler) serveList(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match,
	entries func([]byte) ([]string, error), page func([]string) any, empty func() bool) {
	f, fi, err := h.openRoute(fsys, rt, m)
	if missing(err) && empty != nil && empty() {
		h.servePage(w, r, rt, m, []string{}, page)
		return
	}
	if err != nil {
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	defer f.Close()
	q := r.URL.Query()
	if !q.Has("n") && !q.Has("last") {
		w.Header().Set("Content-Type", jsonType)
		setCache(w.Header(), rt)
		serveFile(w, r, f, fi)
		return
	}
	data, err := io.ReadAll(f)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	all, err := entries(data)
	if err != nil {
		h.internal(w, r, fmt.Errorf("%s: %w", m.Expand(rt.Files[0]), err))
		return
	}
	h.servePage(w, r, rt, m, all, page)
}

// servePage sends the page of all that "n" and "last" ask for (all of it
// without them), encoded by page, with rt's cache class and a Link to the
// next one, at rt's URL for m, when more remain.
func (h *handler) servePage(w http.ResponseWriter, r *http.Request, rt *tree.Route, m tree.Match, all []string, page func([]string) any) {
	q := r.URL.Query()
	n, err := pageSize(q)
	if err != nil {
		h.fail(w, r, errPagination)
		return
	}
	w.Header().Set("Content-Type", jsonType)
	setCache(w.Header(), rt)
	items, next := paginate(all, q.Get("last"), n)
	if next != "" {
		w.Header().Set("Link", linkNext(rt.URL(m), n, next))
	}
	h.writeJSON(w, r, page(items))
}

// pageSize reads "n": absent is -1 (no limit); anything but a
// non-negative integer is PAGINATION_NUMBER_INVALID, as in distribution.
func pageSize(q url.Values) (int, error) {
	if !q.Has("n") {
		return -1, nil
	}
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid n %q", q.Get("n"))
	}
	return n, nil
}

// paginate returns the sorted entries strictly after last, at most n of
// them (n < 0: all), and the last one returned if more remain. Legacy
// listing files are unsorted, so the order is made here. n=0 is an empty
// page without a next one, as the distribution spec demands.
func paginate(all []string, last string, n int) (page []string, next string) {
	all = slices.Clone(all)
	slices.Sort(all)
	all = slices.Compact(all)
	i, found := slices.BinarySearch(all, last)
	if found {
		i++
	}
	page = all[i:]
	if n >= 0 && n < len(page) {
		page = page[:n]
		if n > 0 {
			next = page[n-1]
		}
	}
	if page == nil {
		page = []string{}
	}
	return page, next
}

// linkNext is the RFC 8288 Link to the page after last.
func linkNext(self string, n int, last string) string {
	return fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, self, n, url.QueryEscape(last))
}

// writeJSON sends v with its length, so HEAD answers the same headers.
func (h *handler) writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		h.internal(w, r, err)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
