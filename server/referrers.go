package server

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

// filtersAppliedHeader tells a client which of its referrers filters the
// registry applied; without it the client filters the index itself
// (distribution-spec "Listing Referrers").
const filtersAppliedHeader = "OCI-Filters-Applied"

// routeReferrers serves "/v2/<repo>/referrers/<digest>" as the template's
// referrers rules do, from the route's files: the subject's index, or the
// empty index (the route's fallback) for any other digest of a repository
// whose Requires directory, its manifests, exists; the route's NotFound
// (NAME_UNKNOWN) for any other repository. (Anything but a digest is the
// table's DIGEST_INVALID.)
func (h *handler) routeReferrers(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	if tree.ValidateRepo(m.Repo) != nil || !isDir(fsys, m.Expand(rt.Requires)) {
		h.fail(w, r, rt.NotFound)
		return
	}
	h.serveReferrers(w, r, fsys, rt, m)
}

// isDir reports whether name is a directory of the tree: Apache's "-d".
func isDir(fsys tree.FS, name string) bool {
	fi, err := fsys.Stat(name)
	return err == nil && fi.IsDir()
}

// maxReferrers bounds the referrers index read to filter it, as the tree
// bounds its listings.
const maxReferrers = 64 << 20

// serveReferrers sends the referrers index of m.Digest, filtered by
// ?artifactType= when the client asks (which the static servers cannot
// do). Like a tag, the index changes in place: no validators, and
// conditional requests are answered in full. A tree without even the
// fallback's file answers the empty index all the same.
func (h *handler) serveReferrers(w http.ResponseWriter, r *http.Request, fsys tree.FS, rt *tree.Route, m tree.Match) {
	hd := w.Header()
	hd.Set("Content-Type", distribution.MediaTypeOCIIndex)
	setCache(hd, rt)
	f, fi, err := h.openRoute(fsys, rt, m)
	switch {
	case missing(err):
		h.sendReferrers(w, r, distribution.EmptyReferrers())
		return
	case err != nil:
		h.failOpen(w, r, err, rt.NotFound)
		return
	}
	defer f.Close()
	if r.URL.Query().Get("artifactType") == "" {
		ow, content := oneWrite(w, f, fi)
		serveContent(ow, unconditional(r), time.Time{}, content)
		return
	}
	body, err := io.ReadAll(io.LimitReader(f, maxReferrers+1))
	if err == nil && len(body) > maxReferrers {
		err = fmt.Errorf("%s: over %d bytes", fi.Name(), maxReferrers)
	}
	if err != nil {
		h.internal(w, r, err)
		return
	}
	h.sendReferrers(w, r, body)
}

// sendReferrers sends the referrers index body, filtered by the
// ?artifactType= the client asks for.
func (h *handler) sendReferrers(w http.ResponseWriter, r *http.Request, body []byte) {
	if t := r.URL.Query().Get("artifactType"); t != "" {
		var err error
		if body, err = filterReferrers(body, t); err != nil {
			h.internal(w, r, err)
			return
		}
		w.Header().Set(filtersAppliedHeader, "artifactType")
	}
	serveContent(w, unconditional(r), time.Time{}, bytes.NewReader(body))
}

// filterReferrers keeps the entries of index whose artifactType is t.
func filterReferrers(index []byte, t string) ([]byte, error) {
	x, err := distribution.ParseReferrers(index)
	if err != nil {
		return nil, err
	}
	kept := x.Manifests[:0]
	for _, m := range x.Manifests {
		if m.ArtifactType == t {
			kept = append(kept, m)
		}
	}
	x.Manifests = kept
	return x.Marshal(), nil
}
