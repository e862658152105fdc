package exporter

import (
	"context"
	"fmt"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// cosignSuffixes are the tags cosign attaches to a manifest sha256-<hex>:
// its signatures, its attestations and its SBOM.
var cosignSuffixes = []string{".sig", ".att", ".sbom"}

// attacher gathers the cosign tags (sha256-<hex>.sig, .att, .sbom) of
// the manifests a run syncs: those of the digest each release tag (or
// pin) names, and those of every child of an index it names —
// cosign sign --recursive signs each platform image of an index, and a
// client verifying one platform (cosign verify REPO@sha256:<child>)
// looks up the child's tag. Cosign clients look these up by tag, so
// they travel as tags, into the same repository, each checked as a
// release tag is — one HEAD, compared with the tree's tag of that name —
// and exported when it moved.
//
// Which are asked for, for the tag's digest and for each child alike:
// for a tag that moved, all three, except that an entry whose tags were
// listed asks only for those its listing holds (no request for a tag the
// source does not have); for a tag that has not moved, only those its
// entry's listing holds, so that a signature added upstream after the
// image was mirrored travels too. A tag named in the file, unchanged,
// costs no more than its HEAD; an immutable tag in the tree none; and a
// tag whose source answered no digest (its export finds it) has no
// cosign tags looked for. A cosign tag the source does not have (404) is
// no tag, and no failure.
//
// The children of an index a tag that has not moved names are read from
// the tree, which holds it (no request); those of a tag that moved, from
// its plan (childTags), which fetched them anyway.
type attacher struct {
	seen   map[string]bool                // destinations asked for already
	listed map[*syncEntry]map[string]bool // each listed entry's signature tags
	cands  []*syncTag                     // not yet checked
}

func newAttacher() *attacher {
	return &attacher{seen: map[string]bool{}, listed: map[*syncEntry]map[string]bool{}}
}

// wants reports whether cosign tags are looked for on behalf of t, and
// whether only those its entry's listing holds (restricted): a tag that
// has not moved asks only for those.
func (a *attacher) wants(t *syncTag) (ok, restricted bool) {
	if t.e.NoReferrers || t.res.Digest == "" || t.res.Subject != "" {
		return false, false
	}
	switch t.res.Status {
	case "":
		return true, t.e.listed != nil
	case SyncUnchanged:
		// Unchanged and not listed: nothing is asked, as its HEAD said
		// all there was to say.
		return t.e.listed != nil, true
	}
	return false, false // immutable or failed
}

// listedSigs is the signature tags e's listing holds.
func (a *attacher) listedSigs(e *syncEntry) map[string]bool {
	if a.listed[e] == nil {
		a.listed[e] = map[string]bool{}
		for _, tag := range e.listed {
			if signatureTag.MatchString(tag) {
				a.listed[e][tag] = true
			}
		}
	}
	return a.listed[e]
}

// add makes the cosign tags of d, a manifest t syncs, candidates.
func (a *attacher) add(t *syncTag, d digest.Digest, restricted bool) {
	for _, suffix := range cosignSuffixes {
		tag := schemaTag(d) + suffix
		if restricted && !a.listedSigs(t.e)[tag] {
			continue
		}
		c := &syncTag{e: t.e, tag: tag, dest: Dest{Repo: t.e.Dest, Tag: tag}}
		if a.seen[c.dest.String()] {
			continue // two tags name the digest, or an index and a tag its child
		}
		a.seen[c.dest.String()] = true
		c.res = SyncResult{Source: t.e.sourceRef(tag), Dest: c.dest.String(), Subject: t.res.Dest}
		a.cands = append(a.cands, c)
	}
}

// attachedTags returns the cosign tags of what the run's tags name
// before any is exported: of the digest each names, and of the children
// of an index a tag that has not moved names, read from the tree. They
// are checked (see check); done is called for each whose check decided
// it (unchanged, failed).
func (a *attacher) attachedTags(ctx context.Context, root SyncTree, tags []*syncTag, jobs int, done func(*syncTag)) []*syncTag {
	for _, t := range tags {
		ok, restricted := a.wants(t)
		if !ok {
			continue
		}
		a.add(t, t.res.Digest, restricted)
		if t.res.Status == SyncUnchanged && len(a.listedSigs(t.e)) > 0 {
			for _, c := range treeChildren(root, t.dest.Repo, t.res.Digest) {
				a.add(t, c, true)
			}
		}
	}
	return a.check(ctx, root, jobs, done)
}

// childTags returns the cosign tags of the children of what the moved
// tags' images planned: every manifest of the plan stored as the source
// has it (an index rewritten to keep some platforms is not; the child one
// platform selects is), before their referrers are added. An image whose
// plan tags what the tree has already is as a tag that has not moved.
// They are checked as attachedTags' are.
func (a *attacher) childTags(ctx context.Context, root SyncTree, moved []*syncTag, images []*image, o Options, done func(*syncTag)) []*syncTag {
	for i, t := range moved {
		im := images[i]
		if im.failed() != nil || t.res.Subject != "" {
			continue
		}
		ok, restricted := a.wants(t)
		if !ok {
			continue
		}
		restricted = restricted || im.samePlan()
		if restricted && len(a.listedSigs(t.e)) == 0 {
			continue
		}
		specs := o.Platforms
		if im.job.platforms != nil {
			specs = im.job.platforms
		}
		rewritten := len(specs) > 1 && distribution.IsIndex(im.plan.top.MediaType)
		for _, d := range im.plan.subjects(rewritten) {
			if d != t.res.Digest {
				a.add(t, d, restricted)
			}
		}
	}
	return a.check(ctx, root, o.Jobs, done)
}

// treeChildren is the manifests the index d of repo lists, and theirs
// (an index of indexes), as the tree holds them: no request. Where the
// tree cannot say, it says none.
func treeChildren(root SyncTree, repo string, d digest.Digest) []digest.Digest {
	var out []digest.Digest
	_ = root.Inspect(func(v *tree.View) error {
		var walk func(d digest.Digest, depth int)
		walk = func(d digest.Digest, depth int) {
			raw, err := v.ReadManifest(repo, d)
			if err != nil || depth > maxDepth {
				return
			}
			m, err := distribution.ParseManifest(raw)
			if err != nil {
				return
			}
			for _, c := range m.Manifests {
				if distribution.ValidateDigest(c.Digest) != nil {
					continue
				}
				out = append(out, c.Digest)
				if distribution.IsIndex(c.MediaType) {
					walk(c.Digest, depth+1)
				}
			}
		}
		walk(d, 0)
		return nil
	})
	return out
}

// check asks the source what each candidate names, jobs at a time, and
// returns those it has: unchanged (the tree's tag names the same), failed,
// or to export (Status ""). done is called for each decided. The
// candidates are used up.
func (a *attacher) check(ctx context.Context, root SyncTree, jobs int, done func(*syncTag)) []*syncTag {
	cands := a.cands
	a.cands = nil
	absent := make([]bool, len(cands))
	forEach(len(cands), jobs, func(i int) {
		c := cands[i]
		cur, ok, err := root.TagDigest(c.dest.Repo, c.dest.Tag)
		if err == nil && ok {
			c.current = cur
		}
		repo, err := c.e.open(ctx)
		if err != nil {
			c.fail(err)
			done(c)
			return
		}
		d, err := repo.Head(ctx, c.tag)
		switch {
		case notFound(err):
			// Not signed (a probe), or unsigned since the listing.
			absent[i] = true
		case err != nil:
			c.fail(fmt.Errorf("%s: %w", c.e.Entry, err))
			done(c)
		case d != "" && d == c.current:
			c.res.Status, c.res.Digest = SyncUnchanged, d
			done(c)
		default:
			c.res.Digest = d
		}
	})
	var out []*syncTag
	for i, c := range cands {
		if !absent[i] {
			out = append(out, c)
		}
	}
	return out
}
