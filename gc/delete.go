package gc

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Ref is what delete removes: a tag (REPO:TAG) or a manifest
// (REPO@DIGEST).
type Ref struct {
	Repo   string
	Tag    string
	Digest digest.Digest
	// Planned, on a tag ref, makes its delete conditional: the tag is
	// deleted only while it names this manifest (the first its type map
	// offers), checked where the delete holds the repository's lock; a
	// tag that names another is left, and reported in Skipped. What
	// plans deletes ahead (sync --prune) sets it to what the tag named
	// then, so that a tag an export moved since is not lost. Empty: the
	// tag is deleted whatever it names.
	Planned digest.Digest
}

func (r Ref) String() string {
	if r.Digest != "" {
		return r.Repo + "@" + r.Digest.String()
	}
	return r.Repo + ":" + r.Tag
}

// ParseRef reads REPO:TAG or REPO@DIGEST.
func ParseRef(s string) (Ref, error) {
	if repo, d, ok := strings.Cut(s, "@"); ok {
		if err := tree.ValidateRepo(repo); err != nil {
			return Ref{}, err
		}
		if err := distribution.ValidateDigest(digest.Digest(d)); err != nil {
			return Ref{}, err
		}
		return Ref{Repo: repo, Digest: digest.Digest(d)}, nil
	}
	repo, tag, ok := distribution.SplitTag(s)
	if !ok {
		return Ref{}, fmt.Errorf("%q: want REPO:TAG or REPO@DIGEST", s)
	}
	if err := tree.ValidateRepo(repo); err != nil {
		return Ref{}, err
	}
	if err := distribution.ValidateTag(tag); err != nil {
		return Ref{}, err
	}
	return Ref{Repo: repo, Tag: tag}, nil
}

// DeleteOptions tune Delete.
type DeleteOptions struct {
	// NoPrune leaves what the deleted references no longer need to the
	// next collection.
	NoPrune bool
	// Grace and Now apply to the other untagged manifests of the
	// repositories pruned, as in a collection.
	Grace time.Duration
	Now   func() time.Time
}

// DeleteReport is what Delete did.
type DeleteReport struct {
	Deleted []string `json:"deleted"`
	// Unpinned are the REPO@DIGEST refs whose digest pin was removed: a
	// ref by digest removes the pin when the manifest is pinned, and the
	// manifest itself only when it is not.
	Unpinned []string `json:"unpinned,omitempty"`
	// Skipped are the tag refs left because they no longer name the
	// manifest planned (Ref.Planned): an export moved them since.
	Skipped []SkippedTag `json:"skipped,omitempty"`
	Prune   *Report      `json:"prune,omitempty"`
}

// SkippedTag is a tag a conditional delete left: it names Now, not the
// Planned manifest.
type SkippedTag struct {
	Tag     string        `json:"tag"` // REPO:TAG
	Planned digest.Digest `json:"planned"`
	Now     digest.Digest `json:"now"`
}

// ErrManifestUnknown reports a manifest that is not in the repository.
var ErrManifestUnknown = errors.New("manifest unknown")

// ReferencedError refuses to delete a manifest that tags or indexes name.
type ReferencedError struct {
	Ref Ref
	By  []string // "tag v1", "index sha256:…"
}

func (e *ReferencedError) Error() string {
	return fmt.Sprintf("delete %s: still referenced by %s", e.Ref, strings.Join(e.By, ", "))
}

// Delete removes refs: tags first, under the shared tree lock (exports go
// on), then pins and manifests by digest and the prune under the
// exclusive one. A ref by digest whose manifest is pinned removes the pin
// (and the prune, what only the pin kept); one whose manifest is not
// pinned removes the manifest. A tag ref with Planned is deleted only
// while the tag names that manifest, checked under the repository's
// lock; a tag that moved is left, reported in Skipped, and counts as no
// failure.
// The prune reclaims, without waiting for the grace period, what the
// deleted references reached and nothing else reaches; a repository left
// without tags is removed entirely. Tags go before the manifests they
// name, indexes before their children and manifests before their blobs,
// so a crash at any point leaves every remaining tag servable and the
// next collection finishes the job.
//
// Every ref is tried; the error joins one line per failed ref.
func Delete(root *tree.Root, refs []Ref, o DeleteOptions) (*DeleteReport, error) {
	if err := checkTree(root); err != nil {
		return nil, err
	}
	rep := &DeleteReport{Deleted: []string{}}
	var (
		repos   []string // touched, in order
		retired = map[string]map[digest.Digest]bool{}
		digests = map[string][]Ref{}
		errs    []error
	)
	touch := func(repo string) {
		if retired[repo] == nil {
			retired[repo] = map[digest.Digest]bool{}
			repos = append(repos, repo)
		}
	}
	for _, r := range refs {
		if r.Digest != "" {
			touch(r.Repo)
			digests[r.Repo] = append(digests[r.Repo], r)
		}
	}
	reached, named, err := deleteTags(root, refs, rep, &errs)
	if err != nil {
		return rep, err
	}
	for _, r := range refs {
		if ds, ok := reached[r.Repo]; ok {
			touch(r.Repo)
			maps.Copy(retired[r.Repo], ds)
		}
	}
	if len(digests) == 0 && (o.NoPrune || len(repos) == 0) {
		return rep, errors.Join(errs...)
	}

	p := &prunePlan{repos: repos, digests: digests, retired: retired, named: named}
	err = root.Maintain(tree.MaintainOptions{}, func(m *tree.Maint) error {
		return prune(root, m, p, o, rep, &errs)
	})
	if err != nil {
		return rep, err
	}
	return rep, errors.Join(errs...)
}

// prunePlan is what a delete's prune works on, by repository.
type prunePlan struct {
	repos          []string // touched, in order
	digests        map[string][]Ref
	retired, named map[string]map[digest.Digest]bool
}

// prune deletes the manifests named by digest and, unless o.NoPrune,
// what the deleted tags alone reached, under the tree lock held
// exclusively: it marks, and m removes in its order.
func prune(root *tree.Root, m *tree.Maint, p *prunePlan, o DeleteOptions, rep *DeleteReport, errs *[]error) error {
	v := m.View()
	c := newCollector(root, v, Options{Grace: o.Grace, Untagged: DeleteUntagged, Now: o.Now})
	for _, repo := range p.repos {
		if err := interrupted(root); err != nil {
			return err
		}
		if err := unpin(m, p, repo, rep, errs); err != nil {
			return err
		}
		if o.NoPrune {
			for _, r := range p.digests[repo] {
				if err := deleteManifest(m, r); err != nil {
					*errs = append(*errs, err)
				} else {
					rep.Deleted = append(rep.Deleted, r.String())
				}
			}
			continue
		}
		d := &deletion{retired: p.retired[repo], forced: map[digest.Digest]bool{}, named: p.named[repo]}
		plan, err := c.planDeletes(repo, d, p.digests[repo], errs)
		if err != nil {
			return err
		}
		for _, r := range p.digests[repo] {
			if d.forced[r.Digest] {
				rep.Deleted = append(rep.Deleted, r.String())
			}
		}
		if err := c.sweepRepo(m, plan); err != nil {
			return err
		}
	}
	if !o.NoPrune {
		rep.Prune = c.report()
		if len(rep.Prune.Problems) > 0 {
			*errs = append(*errs, &ProblemsError{rep.Prune.Problems})
		}
	}
	// Only the repositories pruned can have left the catalog.
	if err := m.RefreshCatalogFor(p.repos...); err != nil {
		*errs = append(*errs, fmt.Errorf("_catalog: %w", err))
	}
	return nil
}

// unpin removes the pins p's refs by digest name in repo, and takes
// those refs out of the manifests to delete: what a pin alone kept is
// retired for the prune, as what a deleted tag alone reached is, and the
// manifests it named are the pin's own as a tag's are (a referrer pinned
// by its digest goes with its pin).
func unpin(m *tree.Maint, p *prunePlan, repo string, rep *DeleteReport, errs *[]error) error {
	v := m.View()
	pins, err := v.Pins(repo)
	if err != nil || len(pins) == 0 {
		return err
	}
	var g *repoGraph
	var rest []Ref
	for _, r := range p.digests[repo] {
		if !slices.Contains(pins, r.Digest) {
			rest = append(rest, r)
			continue
		}
		if g == nil {
			if g, err = loadRepo(v, repo); err != nil {
				return err
			}
		}
		reached := g.reach([]digest.Digest{r.Digest})
		if _, err := m.RemovePin(repo, r.Digest); err != nil {
			*errs = append(*errs, fmt.Errorf("delete %s: %w", r, err))
			continue
		}
		rep.Unpinned = append(rep.Unpinned, r.String())
		maps.Copy(p.retired[repo], reached)
		if p.named[repo] == nil {
			p.named[repo] = map[digest.Digest]bool{}
		}
		p.named[repo][r.Digest] = true
	}
	p.digests[repo] = rest
	return nil
}

// planDeletes marks repo for a prune that also deletes the manifests refs
// name by digest. A manifest is refused while a tag names it or an index
// that stays lists it; refusing one may make an index stay that lists
// another, so the check repeats until nothing more is refused.
func (c *collector) planDeletes(repo string, d *deletion, refs []Ref, errs *[]error) (*repoPlan, error) {
	want := map[digest.Digest]bool{}
	for _, r := range refs {
		want[r.Digest] = true
	}
	for {
		d.forced = want
		p, err := c.markRepo(repo, d)
		if err != nil {
			return nil, err
		}
		refused := false
		for _, r := range refs {
			if !want[r.Digest] {
				continue
			}
			if !p.g.stored[r.Digest] {
				*errs = append(*errs, fmt.Errorf("delete %s: %w", r, ErrManifestUnknown))
				delete(want, r.Digest)
				refused = true
				continue
			}
			by, err := referencedBy(c.v, p.g, r.Digest, p.marks.manifests)
			if err != nil {
				return nil, fmt.Errorf("delete %s: %w", r, err)
			}
			if len(by) > 0 {
				*errs = append(*errs, &ReferencedError{Ref: r, By: by})
				delete(want, r.Digest)
				refused = true
			}
		}
		if !refused {
			for f := range want {
				maps.Copy(d.retired, p.g.reach([]digest.Digest{f}))
			}
			if len(want) == 0 {
				return p, nil
			}
			return c.markRepo(repo, d)
		}
	}
}

// deleteTags removes the tag refs as a tag writer does (tree.Root.Untag:
// the tree lock shared, exports go on), and returns per repository what
// the deleted tags reached and what they named, for the prune.
func deleteTags(root *tree.Root, refs []Ref, rep *DeleteReport, errs *[]error) (reached, named map[string]map[digest.Digest]bool, err error) {
	reached, named = map[string]map[digest.Digest]bool{}, map[string]map[digest.Digest]bool{}
	if !slices.ContainsFunc(refs, func(r Ref) bool { return r.Tag != "" }) {
		return reached, named, nil
	}
	err = root.Untag(func(u *tree.Untagger) error {
		v := u.View()
		graphs := map[string]*repoGraph{}
		for _, r := range refs {
			if r.Tag == "" {
				continue
			}
			vs, err := v.TagManifests(r.Repo, r.Tag)
			if errors.Is(err, fs.ErrNotExist) {
				*errs = append(*errs, fmt.Errorf("delete %s: %w", r, tree.ErrTagUnknown))
				continue
			}
			if err != nil {
				*errs = append(*errs, fmt.Errorf("delete %s: %w", r, err))
				continue
			}
			g := graphs[r.Repo]
			if g == nil {
				if g, err = loadRepo(v, r.Repo); err != nil {
					return err
				}
				graphs[r.Repo] = g
			}
			var roots []digest.Digest
			for _, tv := range vs {
				roots = append(roots, tv.Digest)
			}
			if r.Planned != "" && (len(roots) == 0 || roots[0] != r.Planned) {
				var now digest.Digest
				if len(roots) > 0 {
					now = roots[0]
				}
				rep.Skipped = append(rep.Skipped, SkippedTag{Tag: r.String(), Planned: r.Planned, Now: now})
				continue
			}
			ds := g.reach(roots)
			if beforeDeleteTag != nil {
				beforeDeleteTag(r)
			}
			if r.Planned != "" {
				// Checked again under the repository's lock: the tag may
				// have moved since it was read above.
				err = u.DeleteTagIf(r.Repo, r.Tag, r.Planned)
			} else {
				err = u.DeleteTag(r.Repo, r.Tag)
			}
			var moved *tree.TagMovedError
			if errors.As(err, &moved) {
				rep.Skipped = append(rep.Skipped, SkippedTag{Tag: r.String(), Planned: r.Planned, Now: moved.Now})
				continue
			}
			if err != nil {
				*errs = append(*errs, fmt.Errorf("delete %s: %w", r, err))
				continue
			}
			rep.Deleted = append(rep.Deleted, r.String())
			if reached[r.Repo] == nil {
				reached[r.Repo], named[r.Repo] = map[digest.Digest]bool{}, map[digest.Digest]bool{}
			}
			maps.Copy(reached[r.Repo], ds)
			for _, d := range roots {
				named[r.Repo][d] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return reached, named, nil
}

// beforeDeleteTag, when a test sets it (export_test.go), runs after
// deleteTags has read what a tag names and before it deletes the tag.
var beforeDeleteTag func(Ref)

// deleteManifest removes manifest r.Digest, without a prune, unless a tag
// or any index of its repository names it. m holds the tree lock
// exclusively: an export could otherwise be about to tag it.
func deleteManifest(m *tree.Maint, r Ref) error {
	v := m.View()
	g, err := loadRepo(v, r.Repo)
	if err != nil {
		return err
	}
	if !g.stored[r.Digest] {
		return fmt.Errorf("delete %s: %w", r, ErrManifestUnknown)
	}
	by, err := referencedBy(v, g, r.Digest, nil)
	if err != nil {
		return fmt.Errorf("delete %s: %w", r, err)
	}
	if len(by) > 0 {
		return &ReferencedError{Ref: r, By: by}
	}
	if err := m.RemoveManifest(r.Repo, r.Digest); err != nil {
		return fmt.Errorf("delete %s: %w", r, err)
	}
	return nil
}

// referencedBy lists the tags of g's repository that name d, and the
// indexes that list it: those in kept, or every index when kept is nil.
func referencedBy(v *tree.View, g *repoGraph, d digest.Digest, kept map[digest.Digest]bool) ([]string, error) {
	var by []string
	tags, err := v.Tags(g.repo)
	if err != nil {
		return nil, err
	}
	for _, tag := range tags {
		vs, err := v.TagVariants(g.repo, tag)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(vs, func(tv tree.TagVariant) bool { return tv.Digest == d }) {
			by = append(by, "tag "+tag)
		}
	}
	var parents []string
	for p, r := range g.refs {
		if (kept == nil || kept[p]) && slices.Contains(r.Children, d) {
			parents = append(parents, "index "+p.String())
		}
	}
	slices.Sort(parents)
	return append(by, parents...), nil
}
