package gc

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Problem is something wrong in the tree, at Path.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"problem"`
}

func (p Problem) String() string { return p.Path + ": " + p.Message }

// repoGraph is one repository's manifests, each read and parsed once.
// Marking is per repository: blobs are hard-linked into every repository
// that uses them, and an index's children live in its own repository, so
// a per-repository sweep is correct as long as marking reaches every
// child (serving-notes §7.4).
type repoGraph struct {
	repo      string
	stored    map[digest.Digest]bool                     // digest directories, complete or not
	present   map[digest.Digest]bool                     // those whose index.json was read
	refs      map[digest.Digest]*distribution.References // complete and parseable manifests
	referrers map[digest.Digest][]digest.Digest
	// paths and headers name each stored manifest's index.json and
	// .htaccess, for problems.
	paths    map[digest.Digest]string
	headers  map[digest.Digest]string
	problems []Problem
	// outside is set when a directory of the repository's layout is a
	// symlink leading outside the tree: nothing of it was read, and
	// nothing of it is swept.
	outside bool
}

// loadRepo reads every manifest of repo through v. Unreadable or
// unparseable manifests become problems, not errors: the caller decides
// what a problem forbids. So do symlinks leading outside the tree, in the
// layout (then nothing is read) or as a manifest's index.json: the tree
// holds something no server serves and no collector may follow. So do a
// manifest's index.json and a type map that are no regular file (a FIFO):
// what the manifest references, or what the tag names, is unknown.
func loadRepo(v *tree.View, repo string) (*repoGraph, error) {
	g := &repoGraph{
		repo:      repo,
		stored:    map[digest.Digest]bool{},
		present:   map[digest.Digest]bool{},
		refs:      map[digest.Digest]*distribution.References{},
		referrers: map[digest.Digest][]digest.Digest{},
		paths:     map[digest.Digest]string{},
		headers:   map[digest.Digest]string{},
	}
	links, err := v.OutsideLayout(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	if len(links) > 0 {
		for _, l := range links {
			g.problem(l.Path, "%s", outsideMessage(l))
		}
		g.outside = true
		return g, nil
	}
	tags, err := v.NotRegularTags(repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	for _, f := range tags {
		g.problem(f.Path, "%s", f.Message())
	}
	err = v.ReadManifests(repo, func(m tree.StoredManifest) error {
		d := m.Digest
		g.stored[d] = true
		g.paths[d], g.headers[d] = m.Path, m.Headers
		switch err := m.Err; {
		case errors.Is(err, tree.ErrOutsideRoot):
			g.problem(m.Path, "%v", err)
			return nil
		case errors.Is(err, tree.ErrNotRegular):
			g.problem(m.Path, "%v", notRegular(err))
			return nil
		case errors.Is(err, fs.ErrNotExist):
			return nil // debris of an interrupted write or removal
		case err != nil:
			g.problem(m.Path, "%v", err)
			return nil
		}
		g.present[d] = true
		r, err := distribution.ParseReferences(m.Raw)
		if err != nil {
			g.problem(m.Path, "%v", err)
			return nil
		}
		g.refs[d] = r
		if r.Subject != "" {
			g.referrers[r.Subject] = append(g.referrers[r.Subject], d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	return g, nil
}

// notRegular is the cause of a read that found no regular file — "not a
// regular file (fifo)" — without the path a problem names already.
func notRegular(err error) error {
	var nr *tree.NotRegularError
	if errors.As(err, &nr) {
		return nr
	}
	return err
}

// outsideMessage describes a symlink leading outside the tree.
func outsideMessage(l tree.OutsideLink) string {
	if l.Target == "" {
		return "leads outside the tree through a symlink: not read, not swept"
	}
	return fmt.Sprintf("symlink to %q leads outside the tree: not served, read or swept", l.Target)
}

func (g *repoGraph) problem(path, format string, args ...any) {
	g.problems = append(g.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// complete reports whether manifest d is in the repository with its bytes.
func (g *repoGraph) complete(d digest.Digest) bool { return g.present[d] }

// edge is a reference to manifest to, from the file at path.
type edge struct {
	to   digest.Digest
	path string
	what string // "tag v1", "index child", …: for problems
}

// marks is what marking keeps.
type marks struct {
	manifests map[digest.Digest]bool
	blobs     map[digest.Digest]bool
	forbidden map[digest.Digest]bool // deleted by digest: never kept
	// detached were named by a deleted tag: no subject keeps them as its
	// referrer (a tag or an index still does).
	detached map[digest.Digest]bool
}

func newMarks() *marks {
	return &marks{manifests: map[digest.Digest]bool{}, blobs: map[digest.Digest]bool{}, forbidden: map[digest.Digest]bool{}, detached: map[digest.Digest]bool{}}
}

// forbid keeps d from being marked, whatever reaches it.
func (m *marks) forbid(d digest.Digest) { m.forbidden[d] = true }

// mark keeps what roots reach: index and list children recursively, the
// config, layers and schema1 fsLayers of every manifest, and every
// referrer whose subject is kept, unless a deleted tag named it. A
// reference to a manifest the repository lacks is a problem, never a
// crash.
func (g *repoGraph) mark(m *marks, roots []edge) {
	queue := roots
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		if m.manifests[e.to] || m.forbidden[e.to] {
			continue
		}
		if !g.complete(e.to) {
			g.problem(e.path, "%s %s is not in the repository", e.what, e.to)
			continue
		}
		m.manifests[e.to] = true
		// Some trees store manifests as blobs as well; a kept manifest
		// keeps that copy.
		m.blobs[e.to] = true
		r := g.refs[e.to]
		if r == nil {
			continue // unparseable: loadRepo reported it
		}
		from := g.paths[e.to]
		for _, c := range r.Children {
			queue = append(queue, edge{to: c, path: from, what: "index child"})
		}
		for _, b := range r.Blobs {
			m.blobs[b] = true
		}
		for _, rr := range g.referrers[e.to] {
			if !m.detached[rr] {
				queue = append(queue, edge{to: rr, path: from, what: "referrer"})
			}
		}
	}
}

// reach is every manifest roots reach, problems ignored: what deleting
// those roots may leave unreferenced.
func (g *repoGraph) reach(roots []digest.Digest) map[digest.Digest]bool {
	saved := g.problems
	m := newMarks()
	var es []edge
	for _, d := range roots {
		es = append(es, edge{to: d})
	}
	g.mark(m, es)
	g.problems = saved
	return m.manifests
}
