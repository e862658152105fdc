package server

import (
	"bytes"
	"net/http"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// filtersAppliedHeader tells a client which of its referrers filters the
// registry applied; without it the client filters the index itself
// (distribution-spec "Listing Referrers").
const filtersAppliedHeader = "OCI-Filters-Applied"

// routeReferrers serves "/v2/<repo>/referrers/<digest>" as the template's
// referrers rules do: the subject's index, or the empty index for any
// other digest of a repository with manifests; NAME_UNKNOWN for any other
// repository. (Anything but a digest is the table's DIGEST_INVALID.)
func (h *handler) routeReferrers(w http.ResponseWriter, r *http.Request, m tree.Match) {
	if tree.ValidateRepo(m.Repo) != nil || !h.root.HasManifests(m.Repo) {
		h.fail(w, r, distribution.ErrNameUnknown)
		return
	}
	h.serveReferrers(w, r, m.Repo, m.Digest)
}

// serveReferrers sends the referrers index of subject, filtered by
// ?artifactType= when the client asks (which the static servers cannot
// do). Like a tag, the index changes in place: no validators, and
// conditional requests are answered in full.
func (h *handler) serveReferrers(w http.ResponseWriter, r *http.Request, repo string, subject digest.Digest) {
	body, err := h.root.ReadReferrers(repo, subject)
	switch {
	case missing(err):
		body = distribution.EmptyReferrers() // not a file: Apache's "-f" falls back too
	case err != nil:
		h.failOpen(w, r, err, distribution.ErrNameUnknown)
		return
	}
	if t := r.URL.Query().Get("artifactType"); t != "" {
		if body, err = filterReferrers(body, t); err != nil {
			h.internal(w, r, err)
			return
		}
		w.Header().Set(filtersAppliedHeader, "artifactType")
	}
	hd := w.Header()
	hd.Set("Content-Type", distribution.MediaTypeOCIIndex)
	hd.Set("Cache-Control", cacheRevalidate)
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
