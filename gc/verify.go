package gc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Verify checks repos (every repository when empty) end to end: every
// blob and manifest re-hashed against its name, every .htaccess present
// and agreeing with its manifest, every tag, index child and referenced
// blob present, tags/list equal to the tags, every referrers index equal
// to what the manifests that refer to its subject make, and _catalog
// equal to the repositories; every digest pin naming a manifest of its
// repository that is there with all it reaches, and nothing in the pins
// directories but pins; no symlink leading outside the tree, and no
// FIFO, socket or device anywhere in it. The report lists each problem
// with its path (a pin's: its file, and the message names the repository
// and digest). Every repository is checked: those the tree stores, and
// those that have pins and nothing else.
//
// It holds the tree lock shared: collections and prunes wait, exports and
// tag deletes go on. Those rewrite tags/list and _catalog in two steps,
// so a disagreement is read again before it counts.
func Verify(root *tree.Root, repos []string) (rep *VerifyReport, err error) {
	err = root.Inspect(func(view *tree.View) error {
		rep, err = verifyLocked(view, repos)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// verifyLocked is Verify over a View a caller already has: inside
// Inspect, or inside Maintain (verify --repair verifies again there).
func verifyLocked(view *tree.View, repos []string) (*VerifyReport, error) {
	stored, err := view.StoredRepositories()
	if err != nil {
		return nil, err
	}
	v := &verifier{view: view, hashed: map[[2]uint64]digest.Digest{}, report: &VerifyReport{}, once: map[string]bool{}}
	if err := v.outsideLinks(repos); err != nil {
		return nil, err
	}
	if err := v.notRegularFiles(repos); err != nil {
		return nil, err
	}
	if err := v.legacyConventions(repos); err != nil {
		return nil, err
	}
	unreadable, err := view.UnreadableDirs()
	if err != nil {
		return nil, err
	}
	for _, dir := range unreadable {
		v.problem(dir, "cannot be read (permissions, or deeper than the system's path limit): every command skips it; fix or remove it by hand")
	}
	stray, err := view.StrayHeaderFiles(repos)
	if err != nil {
		return nil, err
	}
	for _, path := range stray {
		v.problem(path, "a .htaccess image-serve never writes: an Apache that reads it would obey it; verify --repair removes it")
	}
	if err := v.pinDebris(repos); err != nil {
		return nil, err
	}
	pinned, err := view.PinnedRepositories()
	if err != nil {
		return nil, err
	}
	targets := repos
	if len(targets) == 0 {
		targets = append(slices.Clone(stored), pinned...)
		slices.Sort(targets)
		targets = slices.Compact(targets)
	}
	for _, repo := range targets {
		if err := stopped(view); err != nil {
			return nil, err
		}
		if err := tree.ValidateRepo(repo); err != nil {
			return nil, err
		}
		if !slices.Contains(stored, repo) && slices.Contains(pinned, repo) {
			if err := v.pinsWithoutRepo(repo); err != nil {
				return nil, err
			}
			continue
		}
		if !slices.Contains(stored, repo) {
			e, err := view.Repository(repo)
			if err != nil {
				return nil, err
			}
			v.problem(e.Path, "no such repository")
			continue
		}
		if err := v.repo(repo); err != nil {
			return nil, err
		}
	}
	if err := v.catalog(repos); err != nil {
		return nil, err
	}
	v.report.Problems = append([]Problem{}, v.problems...)
	slices.SortStableFunc(v.report.Problems, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	slices.SortStableFunc(v.report.Legacy, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return v.report, nil
}

// legacyConventions records, as legacy rather than problems, the
// conventions of trees TripleO's exporter wrote that migrate rewrites:
// every command reads them as they are, so they are no damage.
func (v *verifier) legacyConventions(repos []string) error {
	findings, err := v.view.LegacyConventions(repos)
	if err != nil {
		return err
	}
	v.legacy = map[string]tree.LegacyKind{}
	for _, f := range findings {
		v.legacy[f.Path] = f.Kind
		v.report.Legacy = append(v.report.Legacy, Problem{Path: f.Path, Message: f.Kind.Describe() + " — legacy, run migrate"})
	}
	return nil
}

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	Repositories int       `json:"repositories"`
	Manifests    int       `json:"manifests"`
	Blobs        int       `json:"blobs"`
	Problems     []Problem `json:"problems"`
	// Legacy are conventions of trees TripleO's exporter wrote that every
	// command reads as they are, but that not every server serves: no
	// damage, and no reason to fail.
	Legacy []Problem `json:"legacy,omitempty"`
}

type verifier struct {
	view     *tree.View
	report   *VerifyReport
	problems []Problem
	// hashed remembers each inode's content digest: a blob hard-linked
	// into many repositories is read once.
	hashed map[[2]uint64]digest.Digest
	// once are the paths of the symlinks leading outside the tree and of
	// the entries that are no regular file: each is reported once, as
	// what it is, whatever else fails to read it.
	once map[string]bool
	// legacy are the paths of TripleO's conventions migrate rewrites:
	// what they make disagree is no problem there.
	legacy map[string]tree.LegacyKind
}

// problem records a problem at path, unless path is a symlink leading
// outside the tree or no regular file: that is the one problem reported
// there.
func (v *verifier) problem(path, format string, args ...any) {
	if v.once[path] {
		return
	}
	v.problems = append(v.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *verifier) repo(repo string) error {
	r := v.view
	// Manifests before blobs: exports publish blobs first, so every blob
	// of a manifest read here is listed below.
	g, err := loadRepo(r, repo)
	if err != nil {
		return err
	}
	for _, p := range g.problems {
		v.problem(p.Path, "%s", p.Message)
	}
	if g.outside {
		v.report.Repositories++
		return nil // nothing of it is in the tree to check
	}
	blobs, err := r.BlobFiles(repo)
	if err != nil {
		return err
	}
	v.report.Repositories++
	v.report.Blobs += len(blobs)
	present := map[digest.Digest]bool{}
	for _, b := range blobs {
		present[b.Digest] = true
		path := b.Path
		got, err := v.hashBlob(repo, b.StoredBlob)
		if ierr := stopped(r); ierr != nil {
			return ierr // not a problem of the blob
		}
		switch {
		case err != nil:
			v.problem(path, "%v", err)
		case got != b.Digest:
			v.problem(path, "content is %s, not the blob its name says", got)
		}
	}
	missing := map[digest.Digest][]digest.Digest{} // blob → manifests that reference it
	for d := range g.stored {
		if g.present[d] {
			v.report.Manifests++
			v.manifest(g, d, present, missing)
		}
	}
	if err := v.missingBlobs(repo, missing); err != nil {
		return err
	}
	if err := v.tags(repo, g); err != nil {
		return err
	}
	if err := v.pins(g, present); err != nil {
		return err
	}
	return v.referrers(g)
}

// referrers checks that every referrers index of g's repository is what
// tree.UpdateReferrers would write now, and that every subject some
// manifest refers to has one. An export writes the manifest before the
// index, so a disagreement is read again before it counts.
func (v *verifier) referrers(g *repoGraph) error {
	subjects, err := v.view.ReferrerSubjects(g.repo)
	if err != nil {
		return err
	}
	if len(subjects) == 0 && len(g.referrers) == 0 {
		return nil
	}
	return v.settle(func() ([]Problem, error) { return referrersProblems(v.view, g.repo) })
}

// referrersProblems compares repo's referrers indexes with its manifests.
func referrersProblems(r *tree.View, repo string) ([]Problem, error) {
	want, err := r.GeneratedReferrers(repo)
	if err != nil {
		return nil, err
	}
	have, err := r.ReferrerSubjects(repo)
	if err != nil {
		return nil, err
	}
	all := slices.Clone(have)
	for s := range want {
		all = append(all, s)
	}
	slices.Sort(all)
	var ps []Problem
	for _, s := range slices.Compact(all) {
		f, err := r.ReferrersFile(repo, s)
		path, got := f.Path, f.Index
		switch {
		case errors.Is(err, tree.ErrOutsideRoot):
			ps = append(ps, Problem{path, err.Error()})
		case want[s] == nil && err == nil:
			ps = append(ps, Problem{path, fmt.Sprintf("lists referrers, but no manifest of the repository has subject %s", s)})
		case want[s] == nil && errors.Is(err, fs.ErrNotExist):
			// removed since ReferrerSubjects read the directory
		case errors.Is(err, fs.ErrNotExist):
			ps = append(ps, Problem{path, fmt.Sprintf("missing: manifests of the repository have subject %s", s)})
		case err != nil:
			ps = append(ps, Problem{path, err.Error()})
		case !bytes.Equal(got, want[s]):
			ps = append(ps, Problem{path, fmt.Sprintf("does not list the manifests whose subject is %s as they are", s)})
		}
	}
	return ps, nil
}

// has reports whether manifest d is in g's repository, looking again if
// it was not when g was read: an export may have added it since.
func (v *verifier) has(g *repoGraph, d digest.Digest) bool {
	return g.present[d] || v.view.ManifestComplete(g.repo, d)
}

// manifest checks manifest d of g: its bytes against its name, its
// headers, and that what it references is in the repository.
func (v *verifier) manifest(g *repoGraph, d digest.Digest, blobs map[digest.Digest]bool, missing map[digest.Digest][]digest.Digest) {
	r, repo := v.view, g.repo
	path, headers := g.paths[d], g.headers[d]
	raw, err := r.ReadManifest(repo, d)
	if err != nil {
		v.problem(path, "%v", err)
		return
	}
	if got := d.Algorithm().FromBytes(raw); got != d {
		v.problem(path, "content is %s, not the manifest its directory names", got)
	}
	h, err := r.ReadHeaders(repo, d)
	switch {
	case errors.Is(err, tree.ErrOutsideRoot):
		v.problem(headers, "%v", err)
	case errors.Is(err, fs.ErrNotExist):
		v.problem(headers, "missing: Apache would serve the manifest as application/json without its digest")
	case err != nil:
		v.problem(headers, "%v", err)
	default:
		if h.ContentType == "" {
			v.problem(headers, "no Content-Type header")
		}
		if h.Digest != d {
			v.problem(headers, "Docker-Content-Digest %q, want %q", h.Digest, d)
		}
		if m := g.refs[d]; m != nil && m.MediaType != "" && h.ContentType != "" && m.MediaType != h.ContentType {
			v.problem(headers, "Content-Type %q, but the manifest's mediaType is %q", h.ContentType, m.MediaType)
		}
		if len(h.Extra) > 0 {
			v.problem(headers, "%d lines image-serve never writes, which Apache obeys (first: %q); verify --repair rewrites the file", len(h.Extra), h.Extra[0])
		}
	}
	m := g.refs[d]
	if m == nil {
		return // unparseable: loadRepo reported it
	}
	for _, c := range m.Children {
		if !v.has(g, c) {
			v.problem(path, "index child %s is not in the repository", c)
		}
	}
	for _, b := range m.Blobs {
		if !blobs[b] {
			missing[b] = append(missing[b], d)
		}
	}
}

// missingBlobs reports each blob in missing that the repository still
// lacks, once for each manifest that references it, at the file the tree
// names for it.
func (v *verifier) missingBlobs(repo string, missing map[digest.Digest][]digest.Digest) error {
	if len(missing) == 0 {
		return nil
	}
	files, err := v.view.MissingBlobs(repo, slices.Collect(maps.Keys(missing)))
	if err != nil {
		return err
	}
	for _, f := range files {
		for _, d := range missing[f.Digest] {
			v.problem(f.Path, "missing: manifest %s references it", d)
		}
	}
	return nil
}

// outsideLinks reports every symlink leading outside the tree, in the
// repositories named or anywhere: no server may serve through one, and
// what a collection reads through none of them is what the tree holds.
// Each is reported once, whatever else finds it.
func (v *verifier) outsideLinks(named []string) error {
	var links []tree.OutsideLink
	if len(named) == 0 {
		all, err := v.view.OutsideLinks("")
		if err != nil {
			return err
		}
		links = all
	}
	for _, repo := range named {
		ls, err := v.view.OutsideLinks(repo)
		if err != nil {
			return err
		}
		links = append(links, ls...)
	}
	for _, l := range links {
		if !v.once[l.Path] {
			v.once[l.Path] = true
			v.problems = append(v.problems, Problem{Path: l.Path, Message: outsideMessage(l)})
		}
	}
	return nil
}

// notRegularFiles reports every FIFO, socket or device in the
// repositories named, or anywhere under v2/ and the state directory: the
// layout has none, no server serves one and no command reads one. Each is
// reported once, as what it is ("not a regular file (fifo)").
func (v *verifier) notRegularFiles(named []string) error {
	files, err := notRegularIn(v.view, named)
	if err != nil {
		return err
	}
	for _, f := range files {
		if !v.once[f.Path] {
			v.once[f.Path] = true
			v.problems = append(v.problems, Problem{Path: f.Path, Message: f.Message()})
		}
	}
	return nil
}

// notRegularIn lists the FIFOs, sockets and devices in the repositories
// named, or in the whole tree.
func notRegularIn(view *tree.View, named []string) ([]tree.NotRegularFile, error) {
	if len(named) == 0 {
		return view.NotRegularFiles("")
	}
	var files []tree.NotRegularFile
	for _, repo := range named {
		found, err := view.NotRegularFiles(repo)
		if err != nil {
			return nil, err
		}
		files = append(files, found...)
	}
	return files, nil
}

// tags checks that every tag names manifests of the repository, with the
// media types their headers declare, and that tags/list lists exactly
// the tags.
func (v *verifier) tags(repo string, g *repoGraph) error {
	r := v.view
	tags, err := r.Tags(repo)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		e, err := r.Tag(repo, tag)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, tree.ErrOutsideRoot) || e.Legacy {
			continue // deleted since Tags read the directory, or leading out (OutsideLinks names it)
		}
		if err != nil {
			v.problem(e.Path, "%v", err)
			continue
		}
		for _, tv := range e.Variants {
			if !v.has(g, tv.Digest) {
				v.problem(e.Path, "names manifest %s, which is not in the repository", tv.Digest)
				continue
			}
			// TripleO copied a child's type from its list entry: migrate
			// rewrites such a map with the type the headers state.
			sizeRanked := v.legacy[e.Path] == tree.LegacyTypeMap
			if h, err := r.ReadHeaders(repo, tv.Digest); err == nil && !sizeRanked && h.ContentType != "" && h.ContentType != tv.MediaType {
				v.problem(e.Path, "offers %s as %q, its headers say %q", tv.Digest, tv.MediaType, h.ContentType)
			}
		}
	}
	return v.settle(func() ([]Problem, error) { return tagsListProblems(r, repo, v.legacy) })
}

// tagsListProblems compares repo's tags/list with its type maps.
// Where legacy records it as TripleO's, a list of the right tags in
// another order (symlink tags among them) is no problem.
func tagsListProblems(r *tree.View, repo string, legacy map[string]tree.LegacyKind) ([]Problem, error) {
	l, err := r.TagsList(repo)
	if err != nil {
		return nil, err
	}
	tags, listed, ok := l.Listable, l.Names, l.Exists
	unsorted := legacy[l.Path] == tree.LegacyTagsList
	p := func(format string, args ...any) ([]Problem, error) {
		return []Problem{{Path: l.Path, Message: fmt.Sprintf(format, args...)}}, nil
	}
	switch {
	case l.ReadErr != nil:
		return p("%v", l.ReadErr)
	case len(tags) == 0 && ok:
		return p("lists %v, but the repository has no tags", listed)
	case len(tags) > 0 && !ok:
		return p("missing: the repository has tags %v", tags)
	case unsorted && legacyListing(r, repo, listed, tags):
		return nil, nil
	case !slices.Equal(listed, tags):
		return p("lists %v, the type maps are %v", listed, tags)
	}
	return nil, nil
}

// catalog checks _catalog against the repositories with tags: all of
// them, or only those named.
func (v *verifier) catalog(named []string) error {
	return v.settle(func() ([]Problem, error) { return catalogProblemsOf(v.view, named, v.legacy) })
}

func catalogProblems(r *tree.View, named []string) ([]Problem, error) {
	return catalogProblemsOf(r, named, nil)
}

// catalogProblemsOf compares _catalog with the repositories: those with
// a tags/list, or with type maps whose tags/list is missing (one problem,
// its tags/list's, not a second one here). Where legacy records it as
// TripleO's, a _catalog that leaves out repositories of other than
// two-level names is no problem.
func catalogProblemsOf(r *tree.View, named []string, legacy map[string]tree.LegacyKind) ([]Problem, error) {
	repos, err := r.Repositories()
	if err != nil {
		return nil, err
	}
	cat, err := r.Catalog()
	if err != nil {
		return []Problem{{Path: cat.Path, Message: err.Error()}}, nil
	}
	listed, tripleO := cat.Names, legacy[cat.Path] == tree.LegacyCatalog
	check := named
	if len(check) == 0 {
		check = append(slices.Clone(listed), repos...)
		slices.Sort(check)
		check = slices.Compact(check)
	}
	var ps []Problem
	for _, repo := range check {
		in, tagged := slices.Contains(listed, repo), slices.Contains(repos, repo)
		switch {
		case in && !tagged && hasTypeMaps(r, repo):
			// Its tags/list is missing, which its own check reports:
			// _catalog is right to list it.
		case in && !tagged:
			ps = append(ps, Problem{cat.Path, fmt.Sprintf("lists %s, which is not a repository with tags", repo)})
		case !in && tagged && tripleO && !tree.TwoLevel(repo):
		case !in && tagged:
			ps = append(ps, Problem{cat.Path, fmt.Sprintf("does not list repository %s", repo)})
		}
	}
	return ps, nil
}

// hasTypeMaps reports whether repo has tags: type maps that parse.
func hasTypeMaps(r *tree.View, repo string) bool {
	tags, err := r.ListableTags(repo)
	return err == nil && len(tags) > 0
}

// settle runs check until it finds nothing, a few times over a fraction
// of a second, and keeps what it still finds then: a writer between its
// two renames is not a problem, a tree that stays so is. A signal (the
// root's context) ends the wait between two checks.
func (v *verifier) settle(check func() ([]Problem, error)) error {
	ctx := v.view.Context()
	for i := 0; ; i++ {
		ps, err := check()
		if err != nil {
			return err
		}
		if len(ps) == 0 || i == 4 {
			for _, p := range ps {
				v.problem(p.Path, "%s", p.Message)
			}
			return nil
		}
		t := time.NewTimer(time.Duration(20<<i) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// hashBlob reads blob b of repo and returns its digest, reading each
// inode once. A signal (the root's context) stops it between two
// megabytes, not at the end of a blob of gigabytes.
func (v *verifier) hashBlob(repo string, b tree.StoredBlob) (digest.Digest, error) {
	f, in, err := v.view.OpenBlobFile(repo, b)
	if err != nil {
		return "", err
	}
	defer f.Close()
	key := [2]uint64{in.Dev, in.Ino}
	if d, ok := v.hashed[key]; ok {
		return d, nil
	}
	dg := b.Digest.Algorithm().Digester()
	if _, err := io.CopyBuffer(dg.Hash(), interruptible{v.view, f}, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	v.hashed[key] = dg.Digest()
	return dg.Digest(), nil
}

func sortedCopy(ss []string) []string {
	c := slices.Clone(ss)
	slices.Sort(c)
	return c
}

// legacyListing reports whether listed holds exactly repo's tags and its
// TripleO symlink tags, in any order.
func legacyListing(r *tree.View, repo string, listed, tags []string) bool {
	links, err := r.LegacyTags(repo)
	if err != nil {
		return false
	}
	return slices.Equal(sortedCopy(listed), sortedCopy(append(slices.Clone(tags), links...)))
}

// stopped reports the cause of the root's context once it is done:
// verify stops between two repositories, and between two megabytes of a
// blob.
func stopped(v *tree.View) error {
	if ctx := v.Context(); ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// interruptible reads r until the root's context is done, and then fails
// with its cause.
type interruptible struct {
	view *tree.View
	r    io.Reader
}

func (i interruptible) Read(p []byte) (int, error) {
	if err := stopped(i.view); err != nil {
		return 0, err
	}
	return i.r.Read(p)
}
