package exporter

import (
	"context"
	"fmt"
)

// cosignSuffixes are the tags cosign attaches to a manifest sha256-<hex>:
// its signatures, its attestations and its SBOM.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// attachedTags returns the cosign tags (sha256-<hex>.sig, .att, .sbom)
// of the digests the run's release tags name, each checked as a release
// tag is — one HEAD, compared with the tree's tag of that name — and
// ready to export when it moved. Cosign clients look these up by tag, so
// they travel as tags, into the same repository.
//
// Which are asked for: for a tag that moved, the three of its digest,
// except that an entry whose tags were listed asks only for those its
// listing holds (no request for a tag the source does not have); for a
// tag that has not moved, only those its entry's listing holds, so that a
// signature added upstream after the image was mirrored travels too. A
// tag named in the file, unchanged, costs no more than its HEAD; an
// immutable tag in the tree none; and a tag whose source answered no
// digest (its export finds it) has no cosign tags looked for. A cosign
// tag the source does not have (404) is no tag, and no failure.
func attachedTags(ctx context.Context, root SyncTree, tags []*syncTag, jobs int) []*syncTag {
	var cands []*syncTag
	seen := map[string]bool{}
	listed := map[*syncEntry]map[string]bool{}
	for _, t := range tags {
		if t.e.NoReferrers || t.res.Digest == "" || t.res.Subject != "" {
			continue
		}
		if t.res.Status != "" && (t.res.Status != SyncUnchanged || t.e.listed == nil) {
			continue // immutable or failed; or unchanged, and not listed
		}
		if t.e.listed != nil && listed[t.e] == nil {
			listed[t.e] = map[string]bool{}
			for _, tag := range t.e.listed {
				if signatureTag.MatchString(tag) {
					listed[t.e][tag] = true
				}
			}
		}
		for _, suffix := range cosignSuffixes {
			tag := schemaTag(t.res.Digest) + suffix
			if t.e.listed != nil && !listed[t.e][tag] {
				continue
			}
			a := &syncTag{e: t.e, tag: tag, dest: Dest{Repo: t.e.Dest, Tag: tag}}
			if seen[a.dest.String()] {
				continue // two tags name the digest
			}
			seen[a.dest.String()] = true
			a.res = SyncResult{Source: t.e.Source + ":" + tag, Dest: a.dest.String(), Subject: t.res.Dest}
			cands = append(cands, a)
		}
	}
	absent := make([]bool, len(cands))
	forEach(len(cands), jobs, func(i int) {
		a := cands[i]
		cur, ok, err := root.TagDigest(a.dest.Repo, a.dest.Tag)
		if err == nil && ok {
			a.current = cur
		}
		repo, err := a.e.open(ctx)
		if err != nil {
			a.fail(err)
			return
		}
		d, err := repo.Head(ctx, a.tag)
		switch {
		case notFound(err):
			// Not signed (a probe), or unsigned since the listing.
			absent[i] = true
		case err != nil:
			a.fail(fmt.Errorf("%s: %w", a.e.Entry, err))
		case d != "" && d == a.current:
			a.res.Status, a.res.Digest = SyncUnchanged, d
		default:
			a.res.Digest = d
		}
	})
	var out []*syncTag
	for i, a := range cands {
		if !absent[i] {
			out = append(out, a)
		}
	}
	return out
}
