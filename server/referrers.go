package server

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http"
	"syscall"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// filtersAppliedHeader tells a client which of its referrers filters the
// registry applied; without it the client filters the index itself
// (distribution-spec "Listing Referrers").
const filtersAppliedHeader = "OCI-Filters-Applied"

// isReferrersPath matches the template's "^/v2/.+/referrers/".
func isReferrersPath(p string) bool {
	_, _, ok := cutRepo(p, "/referrers/")
	return ok
}

// routeReferrers serves "/v2/<repo>/referrers/<digest>" as the template's
// referrers rules do: the subject's index, or the empty index for any
// other digest of a repository with manifests; NAME_UNKNOWN for any other
// repository, DIGEST_INVALID for anything but a digest.
func (h *handler) routeReferrers(w http.ResponseWriter, r *http.Request, p string) {
	repo, ref, _ := cutRepo(p, "/referrers/")
	subject := digest.Digest(ref)
	switch {
	case distribution.ValidateDigest(subject) != nil:
		h.fail(w, r, distribution.ErrDigestInvalid)
	case tree.ValidateRepo(repo) != nil || !h.root.HasManifests(repo):
		h.fail(w, r, distribution.ErrNameUnknown)
	default:
		h.serveReferrers(w, r, repo, subject)
	}
}

// serveReferrers sends the referrers index of subject, filtered by
// ?artifactType= when the client asks (which the static servers cannot
// do). Like a tag, the index changes in place: no validators, and
// conditional requests are answered in full.
func (h *handler) serveReferrers(w http.ResponseWriter, r *http.Request, repo string, subject digest.Digest) {
	body, err := h.root.ReadReferrers(repo, subject)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTDIR):
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
