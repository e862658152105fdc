package gc

import (
	"fmt"
	"slices"
	"strings"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Digest pins, as verify checks them and verify --repair sets them right.
// A pin keeps a manifest and all it reaches (a collector marks from it as
// from a tag): verify reports a pin whose manifest is missing or
// incomplete as it reports such a tag, at the pin's file, naming the
// repository and digest; and every entry of the pins directories that is
// no pin (tree.View.PinDebris), which nothing reads, so it keeps nothing
// a user may think it keeps.

// UnpinnedRef is a pin Repair removed: the manifest it named is gone for
// good, so the pin kept nothing and would stop every collection of its
// repository.
type UnpinnedRef struct {
	Ref string `json:"ref"` // REPO@DIGEST
	Why string `json:"why"`
}

// pinDebris reports the entries of the pins directories that are no pin.
func (v *verifier) pinDebris(repos []string) error {
	debris, err := v.view.PinDebris(repos)
	if err != nil {
		return err
	}
	for _, d := range debris {
		v.problem(d.Path, "no digest pin (%s): nothing reads it, it keeps nothing; verify --repair removes it", d.Why)
	}
	return nil
}

// pins checks every pin of g's repository: that the manifest it names is
// in the repository, and everything that manifest reaches — index
// children, referrers, config and layers. blobs are the repository's
// blobs as verify listed them.
func (v *verifier) pins(g *repoGraph, blobs map[digest.Digest]bool) error {
	repo := g.repo
	pins, err := v.view.Pins(repo)
	if err != nil || len(pins) == 0 {
		return err
	}
	for _, d := range pins {
		path := v.view.PinPath(repo, d)
		if !v.has(g, d) {
			if manifestGone(g, d) {
				v.problem(path, "pins %s@%s, which is not in the repository: nothing to keep; verify --repair removes the pin (export it by digest again to pin it again)", repo, d)
			} else {
				v.problem(path, "pins %s@%s, whose manifest cannot be read (%s)", repo, d, g.paths[d])
			}
			continue
		}
		gaps, err := v.pinGaps(g, d, blobs)
		if err != nil {
			return err
		}
		if len(gaps) > 0 {
			v.problem(path, "pins %s@%s, which is incomplete: %s; export it by digest again", repo, d, strings.Join(gaps, "; "))
		}
	}
	return nil
}

// pinsWithoutRepo reports the pins of repo, a repository with pins and no
// directory: not one of their manifests is in the tree.
func (v *verifier) pinsWithoutRepo(repo string) error {
	if links, err := v.view.OutsideLayout(repo); err != nil || len(links) > 0 {
		return err // a directory leading out, which OutsideLinks reports
	}
	pins, err := v.view.Pins(repo)
	if err != nil {
		return err
	}
	for _, d := range pins {
		if v.view.ManifestComplete(repo, d) {
			continue // published since the repositories were listed
		}
		v.problem(v.view.PinPath(repo, d), "pins %s@%s, but the tree has no repository %s: nothing to keep; verify --repair removes the pin (export it by digest again to pin it again)", repo, d, repo)
	}
	return nil
}

// pinGaps lists what pinned manifest d of g reaches and its repository
// lacks. An export may publish into the repository while verify reads it
// (blobs, then manifests, then the pin), so what is found missing is read
// again, from a fresh graph and blob listing, before it counts.
func (v *verifier) pinGaps(g *repoGraph, d digest.Digest, blobs map[digest.Digest]bool) ([]string, error) {
	gaps := reachGaps(g, d, blobs)
	if len(gaps) == 0 {
		return nil, nil
	}
	fresh, err := loadRepo(v.view, g.repo)
	if err != nil {
		return nil, err
	}
	stored, err := v.view.Blobs(g.repo)
	if err != nil {
		return nil, err
	}
	have := map[digest.Digest]bool{}
	for _, b := range stored {
		have[b.Digest] = true
	}
	return reachGaps(fresh, d, have), nil
}

// reachGaps marks from manifest d of g and lists, sorted, the manifests
// it reaches that g lacks and the blobs that are not in blobs. It leaves
// g's problems as they were.
func reachGaps(g *repoGraph, d digest.Digest, blobs map[digest.Digest]bool) []string {
	saved := g.problems
	m := newMarks()
	g.mark(m, []edge{{to: d, what: "pinned manifest"}})
	var gaps []string
	for _, p := range g.problems[len(saved):] {
		gaps = append(gaps, p.Message)
	}
	g.problems = saved
	for b := range m.blobs {
		if !blobs[b] && !m.manifests[b] {
			gaps = append(gaps, fmt.Sprintf("blob %s is missing", b))
		}
	}
	slices.Sort(gaps)
	return gaps
}

// manifestGone reports whether manifest d of g is not in the repository
// at all: no directory, or one without its index.json (what a crashed
// writer or remover leaves). One whose index.json is there but cannot be
// read — a symlink leading out, a FIFO — is not gone: verify reports it
// as what it is, and a pin of it stays.
func manifestGone(g *repoGraph, d digest.Digest) bool {
	if !g.stored[d] {
		return true
	}
	if g.present[d] {
		return false
	}
	return !slices.ContainsFunc(g.problems, func(p Problem) bool { return p.Path == g.paths[d] })
}

// repairPins removes the pins of repo whose manifest is gone for good —
// missing, or removed as corrupt by this repair — and names each pin
// whose manifest stays incomplete in NeedExport, as a tag's. A repository
// with a layout directory leading outside the tree is left alone, as gc
// leaves it: what it stores is not in the tree.
func repairPins(m *tree.Maint, repo string, rep *RepairReport) error {
	v := m.View()
	if links, err := v.OutsideLayout(repo); err != nil || len(links) > 0 {
		return err
	}
	pins, err := v.Pins(repo)
	if err != nil || len(pins) == 0 {
		return err
	}
	g, err := loadRepo(v, repo)
	if err != nil {
		return err
	}
	stored, err := v.Blobs(repo)
	if err != nil {
		return err
	}
	have := map[digest.Digest]bool{}
	for _, b := range stored {
		have[b.Digest] = true
	}
	for _, d := range pins {
		ref := repo + "@" + d.String()
		switch {
		case manifestGone(g, d):
			why := "its manifest is not in the repository"
			if slices.Contains(rep.RemovedManifests, ref) {
				why = "its manifest was corrupt, and is removed"
			}
			if _, err := m.RemovePin(repo, d); err != nil {
				return err
			}
			rep.Unpinned = append(rep.Unpinned, UnpinnedRef{Ref: ref, Why: why})
			rep.NeedExport = append(rep.NeedExport, ref)
		case !g.present[d]:
			// Its index.json cannot be read: verify says why.
		case len(reachGaps(g, d, have)) > 0:
			rep.NeedExport = append(rep.NeedExport, ref)
		}
	}
	return nil
}
