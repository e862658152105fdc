package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// What travels with an image a sync exports: the manifests that refer to
// it (OCI 1.1 referrers: signatures, SBOMs, attestations with a subject).
// They are asked for through the referrers API of the source,
// GET /v2/<name>/referrers/<digest>, or, where the source answers that it
// has no such API, through the referrers tag schema's sha256-<hex> tag (an
// index of the referrers, as clients that push to such registries keep
// it). They are published as more manifests of the image they refer to,
// in the same Publish: the tree writes them before the image's tag moves,
// and updates the subject's referrers index as for any manifest with a
// subject. Cosign's sha256-<hex>.sig, .att and .sbom tags are tags, not
// referrers: sync publishes them as tags (exporter/sync_attached.go).

// MaxReferrers bounds the referrers of one subject a sync takes: a source
// that lists more is refused, not cut (a cut list would drop an arbitrary
// part of the signatures).
const MaxReferrers = 1000

// maxReferrersBytes bounds one referrers index read from a source: a
// thousand descriptors with a few annotations each.
const maxReferrersBytes = 4 << 20

// referrersAccept is what the referrers API answers: an OCI index.
const referrersAccept = distribution.MediaTypeOCIIndex

// referrers lists the manifests of r's repository that refer to subject,
// as the source's referrers API answers, or its referrers tag schema where
// the API answers 404 (or 405 or 501: a registry without the API); no
// such tag either is no referrer. Each descriptor is checked: a valid
// digest, a size within the tree's manifest limit.
func (r *registry) referrers(ctx context.Context, subject digest.Digest) ([]Descriptor, error) {
	what := fmt.Sprintf("referrers of %s in %s", subject, r.repo)
	resp, err := r.do(ctx, http.MethodGet, r.url("referrers/"+subject.String()), referrersAccept, "")
	var body []byte
	switch {
	case err == nil:
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxReferrersBytes+1))
		resp.Body.Close()
		if err != nil {
			return nil, registryError(what, err)
		}
		if len(body) > maxReferrersBytes {
			return nil, fmt.Errorf("%s: an index of over %d bytes", what, maxReferrersBytes)
		}
	case noReferrersAPI(err):
		tag := schemaTag(subject)
		raw, _, terr := r.manifest(ctx, fmt.Sprintf("%s (the referrers tag %s)", what, tag), tag)
		if notFound(terr) {
			return nil, nil
		}
		if terr != nil {
			return nil, terr
		}
		body = raw
	default:
		return nil, registryError(what, err)
	}
	var idx struct {
		Manifests []Descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, fmt.Errorf("%s: the index does not parse: %v", what, err)
	}
	if len(idx.Manifests) > MaxReferrers {
		return nil, fmt.Errorf("%s: %d referrers, over the limit of %d per subject (MaxReferrers)", what, len(idx.Manifests), MaxReferrers)
	}
	for _, d := range idx.Manifests {
		if err := distribution.ValidateDigest(d.Digest); err != nil {
			return nil, fmt.Errorf("%s: the index lists %q: %v", what, d.Digest, err)
		}
		if d.Size < 0 || d.Size > tree.MaxManifestSize {
			return nil, fmt.Errorf("%s: %s: %d bytes, over the %d byte limit", what, d.Digest, d.Size, tree.MaxManifestSize)
		}
	}
	return idx.Manifests, nil
}

// schemaTag is the referrers tag schema's tag of d: sha256-<hex>.
func schemaTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// noReferrersAPI reports the answer of a registry without the referrers
// API: 404 as the OCI distribution spec says, or 405 and 501 as some
// older registries send for a path they do not route.
func noReferrersAPI(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	switch te.StatusCode {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		return true
	}
	return false
}

// notFound reports a registry's 404.
func notFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}

// subjects are the manifests of p whose referrers travel with it: every
// manifest stored as the source has it. An index rewritten to keep only
// some platforms is not the source's, and nothing there refers to it.
func (p *plan) subjects(rewritten bool) []digest.Digest {
	var out []digest.Digest
	for _, m := range p.manifests {
		if rewritten && m == p.top {
			continue
		}
		out = append(out, m.Digest)
	}
	return out
}

// addReferrers adds to im's plan the referrers of each of its manifests
// that the tree's repository does not hold yet (has answers that, with no
// request), with their blobs: they are published with the image, before
// its tag. A referrer of a referrer does not travel (one level, as
// signatures and SBOMs of an image are). It returns how many it added.
func (im *image) addReferrers(ctx context.Context, has func(repo string, d digest.Digest) bool, o Options) (int, error) {
	r, ok := im.s.(*registry)
	if !ok {
		return 0, nil // only a registry has referrers to ask for
	}
	p := im.plan
	// Several platforms of an index make a new index (selectPlatforms);
	// one makes the child itself, as the source has it.
	specs := o.Platforms
	if im.job.platforms != nil {
		specs = im.job.platforms
	}
	rewritten := len(specs) > 1 && distribution.IsIndex(p.top.MediaType)
	added := 0
	for _, subject := range p.subjects(rewritten) {
		list, err := r.referrers(ctx, subject)
		if err != nil {
			return added, err
		}
		var todo []Descriptor
		for _, d := range list {
			if p.seen[d.Digest] || (has != nil && has(im.dest.Repo, d.Digest)) {
				continue // in this plan already, or in the tree: no GET
			}
			if p.bytes += d.Size; p.bytes > maxPlanBytes {
				return added, fmt.Errorf("referrers of %s: over %d bytes of manifests, the limit of one export", subject, maxPlanBytes)
			}
			p.seen[d.Digest] = true
			todo = append(todo, d)
		}
		ms, err := fetchManifests(ctx, r, todo, p.jobs)
		if err != nil {
			return added, err
		}
		for _, m := range ms {
			if m.Subject != subject {
				return added, fmt.Errorf("referrers of %s in %s: %s is listed, and refers to %q", subject, r.repo, m.Digest, m.Subject)
			}
			if err := p.add(ctx, r, m, 0); err != nil {
				return added, err
			}
			added++
		}
	}
	for _, b := range p.blobs {
		if b.Size > o.MaxBlobSize {
			return added, fmt.Errorf("blob %s: %d bytes declared, over the --max-blob-size of %d", b.Digest, b.Size, o.MaxBlobSize)
		}
	}
	return added, nil
}

// addReferrersAll adds the referrers of every image that asks for them
// (Job.referrers) and will be published, o.Jobs images at a time; an
// image whose referrers cannot be read fails: a mirror that silently
// dropped an image's signatures would fail its verification elsewhere.
func addReferrersAll(ctx context.Context, images []*image, o Options) {
	forEach(len(images), o.Jobs, func(i int) {
		im := images[i]
		if !im.job.referrers || im.failed() != nil || im.unchanged {
			return
		}
		n, err := im.addReferrers(ctx, im.job.hasManifest, o)
		if err != nil {
			im.fail(err)
			return
		}
		im.sum.Referrers = n
	})
}
