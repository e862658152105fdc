package gc

import (
	"fmt"
	"slices"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// RepairReport is what Repair did, and what is left to do.
type RepairReport struct {
	// RemovedNotRegular are the FIFOs, sockets and devices removed from
	// where the layout keeps files, each with what it was.
	RemovedNotRegular []Problem `json:"removed_not_regular"`
	// RemovedBlobs and RemovedManifests are REPO@DIGEST of the files whose
	// bytes were not those their names say.
	RemovedBlobs     []string `json:"removed_blobs"`
	RemovedManifests []string `json:"removed_manifests"`
	// Rewritten names the derived files set right: a repository's
	// tags/list and tag links, its referrers indexes, _catalog.
	Rewritten []string `json:"rewritten"`
	// NeedExport are the REPO:TAG that no longer pull completely: export
	// them again (with --verify-existing, if other copies may be bad).
	NeedExport []string `json:"need_export"`
	// Verify is the tree checked after the repair.
	Verify *VerifyReport `json:"verify"`
}

// Repair removes what is corrupt from repos (every repository when none
// is named) and rewrites the derived files that are out of step, holding
// the tree lock exclusively, so no export or collection runs meanwhile:
// first every FIFO, socket or device (in the repositories named, or
// anywhere in the tree) — the entry itself, inside the tree, never
// opened — then blobs and manifests whose bytes do not hash to their
// names, then each repository's tags/list and tag links and referrers
// indexes are derived again, then _catalog. It does not fetch anything: a tag left
// incomplete is reported in NeedExport, for an export to restore.
func Repair(root *tree.Root, repos []string) (*RepairReport, error) {
	if err := checkTree(root); err != nil {
		return nil, err
	}
	rep := &RepairReport{RemovedNotRegular: []Problem{}, RemovedBlobs: []string{}, RemovedManifests: []string{}, Rewritten: []string{}, NeedExport: []string{}}
	err := root.Maintain(tree.MaintainOptions{}, func() error { return repairLocked(root, repos, rep) })
	return rep, err
}

// repairLocked is Repair for a caller that holds the tree lock
// exclusively.
func repairLocked(root *tree.Root, repos []string, rep *RepairReport) (err error) {
	files, err := notRegularIn(root, repos)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := root.RemoveNotRegular(f.Path); err != nil {
			return err
		}
		rep.RemovedNotRegular = append(rep.RemovedNotRegular, Problem{Path: f.Path, Message: f.Message()})
	}
	if len(repos) == 0 {
		if repos, err = root.StoredRepositories(); err != nil {
			return err
		}
	}
	v := &verifier{root: root, hashed: map[[2]uint64]digest.Digest{}, report: &VerifyReport{}}
	for _, repo := range repos {
		if err := interrupted(root); err != nil {
			return err
		}
		if err := tree.ValidateRepo(repo); err != nil {
			return err
		}
		if err := repairRepo(root, v, repo, rep); err != nil {
			return err
		}
	}
	if ps, err := catalogProblems(root, nil); err != nil || len(ps) > 0 {
		if err := root.RefreshCatalog(); err != nil {
			return err
		}
		rep.Rewritten = append(rep.Rewritten, "_catalog")
	}
	rep.Verify, err = verifyLocked(root, repos)
	return err
}

func repairRepo(root *tree.Root, v *verifier, repo string, rep *RepairReport) error {
	blobs, err := root.Blobs(repo)
	if err != nil {
		return err
	}
	for _, b := range blobs {
		got, err := v.hashBlob(repo, b)
		if ierr := interrupted(root); ierr != nil {
			return ierr // a blob not read to its end is not corrupt
		}
		if err == nil && got == b.Digest {
			continue
		}
		if _, err := root.RemoveBlob(repo, b.Digest); err != nil {
			return err
		}
		rep.RemovedBlobs = append(rep.RemovedBlobs, repo+"@"+b.Digest.String())
	}
	ds, err := root.ManifestDigests(repo)
	if err != nil {
		return err
	}
	var bad []digest.Digest
	for _, d := range ds {
		raw, err := root.ReadManifest(repo, d)
		if err == nil && d.Algorithm().FromBytes(raw) != d {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		// Unlisted from the referrers indexes first, as a delete does.
		if err := root.RefreshReferrers(repo, bad...); err != nil {
			return err
		}
		for _, d := range bad {
			if err := root.RemoveManifest(repo, d); err != nil {
				return err
			}
			rep.RemovedManifests = append(rep.RemovedManifests, repo+"@"+d.String())
		}
	}
	if err := rewriteDerived(root, repo, rep); err != nil {
		return err
	}
	return needExport(root, repo, rep)
}

// rewriteDerived sets right what is derived from repo's type maps and
// manifests, where it is out of step.
func rewriteDerived(root *tree.Root, repo string, rep *RepairReport) error {
	tags, err := root.Tags(repo)
	if err != nil {
		return err
	}
	if ok, err := root.TagsInStep(repo, tags); err != nil {
		return err
	} else if !ok {
		if err := root.RefreshTags(repo); err != nil {
			return err
		}
		rep.Rewritten = append(rep.Rewritten, repo+" tags/list and tag links")
	}
	if ps, err := referrersProblems(root, repo); err != nil {
		return err
	} else if len(ps) > 0 {
		if err := root.RefreshReferrers(repo); err != nil {
			return err
		}
		rep.Rewritten = append(rep.Rewritten, repo+" referrers")
	}
	return nil
}

// needExport adds the tags of repo that no longer reach everything they
// need: a manifest missing, or a blob.
func needExport(root *tree.Root, repo string, rep *RepairReport) error {
	g, err := loadRepo(root, repo)
	if err != nil {
		return err
	}
	stored, err := root.Blobs(repo)
	if err != nil {
		return err
	}
	have := map[digest.Digest]bool{}
	for _, b := range stored {
		have[b.Digest] = true
	}
	tags, err := root.Tags(repo)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		vs, err := root.TagVariants(repo, tag)
		if err != nil {
			rep.NeedExport = append(rep.NeedExport, repo+":"+tag)
			continue
		}
		before := len(g.problems)
		m := newMarks()
		var roots []edge
		for _, tv := range vs {
			roots = append(roots, edge{to: tv.Digest, what: "manifest"})
		}
		g.mark(m, roots)
		missing := len(g.problems) > before
		for b := range m.blobs {
			if !have[b] && !m.manifests[b] {
				missing = true
			}
		}
		if missing {
			rep.NeedExport = append(rep.NeedExport, repo+":"+tag)
		}
	}
	slices.Sort(rep.NeedExport)
	return nil
}

// String is the one-line summary of a repair.
func (r *RepairReport) String() string {
	special := ""
	switch n := len(r.RemovedNotRegular); n {
	case 0:
	case 1:
		special = "1 FIFO, socket or device, "
	default:
		special = fmt.Sprintf("%d FIFOs, sockets or devices, ", n)
	}
	return fmt.Sprintf("removed %s%d corrupt blobs and %d corrupt manifests, rewrote %d derived files; %d tags need a re-export",
		special, len(r.RemovedBlobs), len(r.RemovedManifests), len(r.Rewritten), len(r.NeedExport))
}
