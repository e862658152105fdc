package exporter

import (
	"fmt"
	"slices"
)

// A prune plan removes from the tree what a release dropped — and only
// that, and only when asked (sync --prune). oc-mirror v1 pruned by
// omission and wiped release images when a section of its configuration
// went missing; here the plan is explicit and bounded: only repositories
// the run's entries mirror into, only tags the run did not select (the
// source no longer has them, or the filters no longer take them), never a
// signature tag, never a repository whose listing failed or selected
// nothing. The caller prints it, bounds it, and deletes it through gc's
// Delete, as image-serve delete does.

// SyncRepo is what a run knows of one tree repository it mirrors into.
type SyncRepo struct {
	Repo string
	// Keep are the tags the run selected for the repository, and the
	// signature tags it found for them.
	Keep []string
	// Listed are the tags its sources' listings sent, every one; nil
	// when each of its entries named its tags.
	Listed []string
	// Refused says why the repository must not be pruned ("" when it
	// may be): a listing failed, or selected no tag.
	Refused string
}

// syncRepos gathers, per destination repository in the order of the
// entries, what its entries selected and listed.
func syncRepos(es []*syncEntry, tags []*syncTag) []SyncRepo {
	var out []SyncRepo
	at := map[string]int{}
	for _, e := range es {
		i, ok := at[e.Dest]
		if !ok {
			i = len(out)
			at[e.Dest] = i
			out = append(out, SyncRepo{Repo: e.Dest})
		}
		r := &out[i]
		switch {
		case e.failed:
			r.Refused = "the listing of " + e.Entry + " failed"
		case len(e.selected) == 0 && r.Refused == "":
			r.Refused = "the listing of " + e.Entry + " selected no tag"
		}
		if e.listed != nil {
			r.Listed = append(r.Listed, e.listed...)
		}
	}
	for _, t := range tags {
		if i, ok := at[t.dest.Repo]; ok {
			out[i].Keep = append(out[i].Keep, t.tag)
		}
	}
	for i := range out {
		slices.Sort(out[i].Keep)
		out[i].Keep = slices.Compact(out[i].Keep)
	}
	return out
}

// PruneTag is one tag a prune plan removes, and why.
type PruneTag struct {
	Repo, Tag string
	Why       string // "the source no longer lists it", …
}

// PruneRefusal is a repository a prune plan leaves alone, and why.
type PruneRefusal struct {
	Repo, Why string
}

// PrunePlan is what a prune would remove, and which repositories it
// refuses to touch.
type PrunePlan struct {
	Tags    []PruneTag
	Refused []PruneRefusal
}

// PlanPrune plans the prune of a run's repositories (rep.Repos): in each
// that may be pruned, every tag of the tree (treeTags lists them) that the
// run did not keep, signature tags aside. A tag of a repository the run
// did not list is one the file no longer names.
func PlanPrune(rep *SyncReport, treeTags func(repo string) ([]string, error)) (*PrunePlan, error) {
	p := &PrunePlan{}
	for _, r := range rep.Repos {
		if r.Refused != "" {
			p.Refused = append(p.Refused, PruneRefusal{r.Repo, r.Refused})
			continue
		}
		have, err := treeTags(r.Repo)
		if err != nil {
			return nil, fmt.Errorf("prune plan of %s: %w", r.Repo, err)
		}
		for _, tag := range have {
			if SignatureTag(tag) || slices.Contains(r.Keep, tag) {
				continue
			}
			why := "the file no longer names it"
			switch {
			case slices.Contains(r.Listed, tag):
				why = "the filters no longer select it"
			case r.Listed != nil:
				why = "the source no longer lists it"
			}
			p.Tags = append(p.Tags, PruneTag{Repo: r.Repo, Tag: tag, Why: why})
		}
	}
	return p, nil
}

// Counts are the tags the plan removes per repository, in its order.
func (p *PrunePlan) Counts() []PruneCount {
	var out []PruneCount
	for _, t := range p.Tags {
		if n := len(out); n > 0 && out[n-1].Repo == t.Repo {
			out[n-1].Tags++
			continue
		}
		out = append(out, PruneCount{t.Repo, 1})
	}
	return out
}

// PruneCount is how many tags a plan removes from one repository.
type PruneCount struct {
	Repo string
	Tags int
}
