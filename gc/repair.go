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
	// RemovedStray are the .htaccess files image-serve never writes
	// (tree.View.StrayHeaderFiles): planted where Apache could obey them.
	RemovedStray []string `json:"removed_stray"`
	// Restored are the tags whose type map was gone and that Repair wrote
	// again from what else recorded them, before rewriting anything
	// derived from type maps.
	Restored []RestoredTag `json:"restored"`
	// Rewritten names the files set right: a manifest's headers
	// (REPO@DIGEST .htaccess), a repository's tags/list and tag links, its
	// referrers indexes, _catalog.
	Rewritten []string `json:"rewritten"`
	// NeedExport are the REPO:TAG that no longer pull completely, and
	// those Lost; and the REPO@DIGEST of the pins whose manifest is
	// incomplete, and those Unpinned: export them again (by digest for a
	// pin; with --verify-existing, if other copies may be bad).
	NeedExport []string `json:"need_export"`
	// Lost are the tags of NeedExport that the tree still recorded — in
	// tags/list or nginx's links — without their type map, and that
	// Repair could not restore: nothing left names a manifest of the
	// repository it could offer. Their records are rewritten away with
	// the repository's tags/list and links; this report is the last place
	// that names them, and each counts as a problem left.
	Lost []LostTag `json:"lost"`
	// RemovedPinDebris are the entries of the pins directories that were
	// no pin (tree.View.PinDebris), each with what it was: nothing read
	// them, nothing they kept goes.
	RemovedPinDebris []Problem `json:"removed_pin_debris"`
	// Unpinned are the digest pins removed because the manifest each
	// named is gone for good: missing, or removed here as corrupt. A pin
	// of nothing keeps nothing and would stop every collection of its
	// repository. Each is in NeedExport too (an export by digest pins it
	// again); this report is the last place that names it, and each counts
	// as a problem left, as a lost tag does.
	Unpinned []UnpinnedRef `json:"unpinned"`
	// Verify is the tree checked after the repair.
	Verify *VerifyReport `json:"verify"`
}

// RestoredTag is a tag whose lost type map Repair wrote again.
type RestoredTag struct {
	Tag  string `json:"tag"`  // REPO:TAG
	From string `json:"from"` // what still recorded it: nginx's links, or an interrupted tag move's journal
}

// LostTag is a tag Repair found recorded without its type map and could
// not restore.
type LostTag struct {
	Tag    string        `json:"tag"`              // REPO:TAG
	Digest digest.Digest `json:"digest,omitempty"` // the manifest nginx's link named, if one did
	Why    string        `json:"why"`
}

// ProblemsLeft counts what the repair could not set right: the problems
// verify still finds, the tags lost, and the pins removed.
func (r *RepairReport) ProblemsLeft() int {
	return len(r.Verify.Problems) + len(r.Lost) + len(r.Unpinned)
}

// Repair removes what is corrupt from repos (every repository when none
// is named) and rewrites the derived files that are out of step, holding
// the tree lock exclusively, so no export or collection runs meanwhile.
//
// It never loses what the tree still records. First, before the tag
// moves a crash interrupted are finished (tree.MaintainOptions.Salvage),
// it derives what can be derived: each manifest's missing or wrong
// headers from its bytes (tree.Maint.RestoreHeaders), and the type map of
// each tag that lost its own from nginx's links to it, or leaves it to
// the journal that names it (tree.Maint.SalvageTags). Then every FIFO,
// socket or device goes (the entry itself, never opened), then blobs and
// manifests whose bytes do not hash to their names, then each
// repository's tags/list and tag links and referrers indexes are derived
// again, then _catalog. Entries of the pins directories that are no pin
// go with the FIFOs; a digest pin whose manifest is gone for good
// (missing, or removed as corrupt) goes once its repository is repaired,
// reported in Unpinned. It does not fetch anything: a tag or pin left
// incomplete is reported in NeedExport, a tag it could not restore in
// Lost and NeedExport, a pin it removed in Unpinned and NeedExport, for an
// export to restore.
func Repair(root *tree.Root, repos []string) (*RepairReport, error) {
	if err := checkTree(root); err != nil {
		return nil, err
	}
	rep := &RepairReport{RemovedNotRegular: []Problem{}, RemovedBlobs: []string{}, RemovedManifests: []string{}, RemovedStray: []string{}, Restored: []RestoredTag{},
		Rewritten: []string{}, NeedExport: []string{}, Lost: []LostTag{}, RemovedPinDebris: []Problem{}, Unpinned: []UnpinnedRef{}}
	var targets []string
	salvage := func(m *tree.Maint) (err error) {
		if targets, err = repairTargets(m.View(), repos); err != nil {
			return err
		}
		for _, repo := range targets {
			if err := salvageRepo(root, m, repo, rep); err != nil {
				return err
			}
		}
		return nil
	}
	err := root.Maintain(tree.MaintainOptions{Salvage: salvage}, func(m *tree.Maint) error { return repairLocked(root, m, repos, targets, rep) })
	return rep, err
}

// repairTargets is repos, or every repository when none is named, each
// a valid name.
func repairTargets(v *tree.View, repos []string) ([]string, error) {
	if len(repos) == 0 {
		return v.StoredRepositories()
	}
	for _, repo := range repos {
		if err := tree.ValidateRepo(repo); err != nil {
			return nil, err
		}
	}
	return repos, nil
}

// salvageRepo derives what can be derived in repo before anything is
// rewritten from its type maps. A repository with a layout directory
// leading outside the tree is left alone, as gc leaves it.
func salvageRepo(root *tree.Root, m *tree.Maint, repo string, rep *RepairReport) error {
	if err := interrupted(root); err != nil {
		return err
	}
	if links, err := m.View().OutsideLayout(repo); err != nil || len(links) > 0 {
		return err
	}
	fixed, err := m.RestoreHeaders(repo)
	for _, d := range fixed {
		rep.Rewritten = append(rep.Rewritten, repo+"@"+d.String()+" .htaccess")
	}
	if err != nil {
		return err
	}
	restored, lost, err := m.SalvageTags(repo)
	for _, t := range restored {
		rep.Restored = append(rep.Restored, RestoredTag{Tag: repo + ":" + t.Tag, From: t.From})
	}
	for _, t := range lost {
		rep.Lost = append(rep.Lost, LostTag{Tag: repo + ":" + t.Tag, Digest: t.Digest, Why: t.Why})
		rep.NeedExport = append(rep.NeedExport, repo+":"+t.Tag)
	}
	return err
}

// repairLocked is the rest of Repair, for a caller that holds the tree
// lock exclusively, over targets, the repositories repos names.
func repairLocked(root *tree.Root, m *tree.Maint, repos, targets []string, rep *RepairReport) (err error) {
	files, err := notRegularIn(m.View(), repos)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := m.RemoveNotRegular(f); err != nil {
			return err
		}
		rep.RemovedNotRegular = append(rep.RemovedNotRegular, Problem{Path: f.Path, Message: f.Message()})
	}
	debris, err := m.View().PinDebris(repos)
	if err != nil {
		return err
	}
	for _, d := range debris {
		if err := m.RemovePinDebris(d); err != nil {
			return err
		}
		rep.RemovedPinDebris = append(rep.RemovedPinDebris, Problem{Path: d.Path, Message: d.Why})
	}
	v := &verifier{view: m.View(), hashed: map[[2]uint64]digest.Digest{}, report: &VerifyReport{}}
	for _, repo := range targets {
		if err := interrupted(root); err != nil {
			return err
		}
		if err := repairRepo(root, m, v, repo, rep); err != nil {
			return err
		}
	}
	// The repositories with pins and no directory: not one of their
	// manifests is left.
	pinned, err := m.View().PinnedRepositories()
	if err != nil {
		return err
	}
	for _, repo := range pinned {
		if slices.Contains(targets, repo) || len(repos) > 0 && !slices.Contains(repos, repo) {
			continue
		}
		if err := repairPins(m, repo, rep); err != nil {
			return err
		}
	}
	slices.Sort(rep.NeedExport)
	if ps, err := catalogProblems(m.View(), nil); err != nil || len(ps) > 0 {
		if err := m.RefreshCatalog(); err != nil {
			return err
		}
		rep.Rewritten = append(rep.Rewritten, "_catalog")
	}
	removed, err := m.RemoveStrayHeaderFiles(repos)
	rep.RemovedStray = append(rep.RemovedStray, removed...)
	if err != nil {
		return err
	}
	rep.Verify, err = verifyLocked(m.View(), repos)
	return err
}

// repairRepo removes what is corrupt in repo (tree.Maint.RemoveCorrupt
// orders it), sets right what is derived from it, and reports the tags
// left incomplete. A signal stops it before it removes anything of repo.
func repairRepo(root *tree.Root, m *tree.Maint, v *verifier, repo string, rep *RepairReport) error {
	view := m.View()
	blobs, err := view.Blobs(repo)
	if err != nil {
		return err
	}
	var bad tree.Corrupt
	for _, b := range blobs {
		got, err := v.hashBlob(repo, b)
		if ierr := interrupted(root); ierr != nil {
			return ierr // a blob not read to its end is not corrupt
		}
		if err != nil || got != b.Digest {
			bad.Blobs = append(bad.Blobs, b.Digest)
		}
	}
	err = view.ReadManifests(repo, func(sm tree.StoredManifest) error {
		if sm.Err == nil && sm.Digest.Algorithm().FromBytes(sm.Raw) != sm.Digest {
			bad.Manifests = append(bad.Manifests, sm.Digest)
		}
		return nil
	})
	if err != nil {
		return err
	}
	removed, err := m.RemoveCorrupt(repo, bad)
	for _, d := range removed.Blobs {
		rep.RemovedBlobs = append(rep.RemovedBlobs, repo+"@"+d.String())
	}
	for _, d := range removed.Manifests {
		rep.RemovedManifests = append(rep.RemovedManifests, repo+"@"+d.String())
	}
	if err != nil {
		return err
	}
	done, err := m.Rederive(repo)
	if done.Tags {
		rep.Rewritten = append(rep.Rewritten, repo+" tags/list and tag links")
	}
	if done.Referrers {
		rep.Rewritten = append(rep.Rewritten, repo+" referrers")
	}
	if err != nil {
		return err
	}
	if err := repairPins(m, repo, rep); err != nil {
		return err
	}
	return needExport(view, repo, rep)
}

// needExport adds the tags of repo that no longer reach everything they
// need: a manifest missing, or a blob.
func needExport(v *tree.View, repo string, rep *RepairReport) error {
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
	tags, err := v.Tags(repo)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		vs, err := v.TagVariants(repo, tag)
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
	pins := ""
	if n := len(r.Unpinned); n > 0 {
		pins = fmt.Sprintf(", removed %d pins of manifests gone", n)
	}
	return fmt.Sprintf("removed %s%d corrupt blobs and %d corrupt manifests, restored %d tags, rewrote %d derived files%s; %d tags need a re-export",
		special, len(r.RemovedBlobs), len(r.RemovedManifests), len(r.Restored), len(r.Rewritten), pins, len(r.NeedExport))
}
