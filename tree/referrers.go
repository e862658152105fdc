package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// The OCI 1.1 referrers API, GET /v2/<repo>/referrers/<digest>, as static
// files. A registry that offers it must answer every valid digest with
// 200 and an OCI index, empty when nothing refers to the digest; 404 for
// only some digests is non-conformant (serving-notes §1.6). So the tree
// holds a generated index for each subject that has referrers,
//
//	v2/<repo>/referrers/<subject>   {"schemaVersion":2,"mediaType":…,"manifests":[…]}
//
// and one empty index (EmptyReferrersPath) that the servers answer for
// every other digest of a repository that exists. The indexes are derived
// from the manifests alone: a writer killed between a manifest and its
// index leaves an index that RefreshReferrers (run by every collection)
// and the next UpdateReferrers of that subject set right.

// scanReferrers reads every complete manifest of repo but those in
// leaving and returns, per subject, the entries of its index.
func (r *Root) scanReferrers(repo string, leaving map[digest.Digest]bool) (map[digest.Digest][]distribution.ReferrerDescriptor, error) {
	ds, err := r.manifestDigests(repo)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest][]distribution.ReferrerDescriptor{}
	for _, d := range ds {
		if leaving[d] {
			continue
		}
		raw, err := r.readManifest(repo, d)
		if absentOrOutside(err) {
			continue // debris of an interrupted write or removal: never served
		}
		if err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", repo, err)
		}
		mt, _ := r.ManifestMediaType(repo, d) // "" falls back to the body's
		if s, rd := distribution.ReferrerOf(raw, d, mt); s != "" {
			out[s] = append(out[s], rd)
		}
	}
	return out, nil
}

// updateReferrers regenerates the referrers index of subject in repo from
// the manifests the repository holds, under the repository lock, so that
// concurrent writers never lose each other's entries. An index with no
// entry is removed: the empty index answers for subject then. An export
// calls it after the manifest that has subject is in the tree and before
// any tag names it, so the index never lists a manifest a client cannot
// fetch.
func (r *Root) updateReferrers(repo string, subject digest.Digest) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	if err := distribution.ValidateDigest(subject); err != nil {
		return err
	}
	l, err := r.lockRepo(repo)
	if err != nil {
		return err
	}
	defer l.Unlock()
	all, err := r.scanReferrers(repo, nil)
	if err != nil {
		return err
	}
	return r.writeReferrers(repo, subject, all[subject])
}

// refreshReferrers regenerates every referrers index of repo, leaving out
// the manifests in leaving, and removes the indexes of subjects nothing
// refers to any more. A remover runs it before it removes leaving, so
// that no index ever lists a removed manifest; a collection runs it on
// every repository with referrers, which also repairs what a killed
// writer left. One scan of the repository serves every subject.
func (r *Root) refreshReferrers(repo string, leaving ...digest.Digest) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	l, err := r.lockRepo(repo)
	if err != nil {
		return err
	}
	defer l.Unlock()
	skip := make(map[digest.Digest]bool, len(leaving))
	for _, d := range leaving {
		skip[d] = true
	}
	return r.rewriteReferrers(repo, skip)
}

// rewriteReferrers is RefreshReferrers, without the manifests in skip, for
// a caller holding the repository lock.
func (r *Root) rewriteReferrers(repo string, skip map[digest.Digest]bool) error {
	all, err := r.scanReferrers(repo, skip)
	if err != nil {
		return err
	}
	have, err := r.referrerSubjects(repo)
	if err != nil {
		return err
	}
	for _, s := range have {
		if _, ok := all[s]; !ok {
			all[s] = nil // removed by writeReferrers
		}
	}
	for _, s := range sortedDigests(all) {
		if err := r.writeReferrers(repo, s, all[s]); err != nil {
			return err
		}
	}
	return nil
}

// writeReferrers publishes the index of subject with entries, or removes
// it when there are none.
func (r *Root) writeReferrers(repo string, subject digest.Digest, entries []distribution.ReferrerDescriptor) error {
	p := r.referrersPath(repo, subject)
	if len(entries) > 0 {
		if err := r.writeIfChanged(p, distribution.NewReferrersIndex(entries).Marshal()); err != nil {
			return fmt.Errorf("referrers of %s@%s: %w", repo, subject, err)
		}
		return nil
	}
	if _, err := r.lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	err := r.unlink(p)
	if err == nil {
		err = r.syncDir(r.referrersDir(repo))
	}
	if err != nil {
		return fmt.Errorf("referrers of %s@%s: %w", repo, subject, err)
	}
	return nil
}

// generatedReferrers returns, per subject, the index UpdateReferrers
// would write for repo as it is now: what a checker compares the files
// with.
func (r *Root) generatedReferrers(repo string) (map[digest.Digest][]byte, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	all, err := r.scanReferrers(repo, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[digest.Digest][]byte, len(all))
	for s, entries := range all {
		out[s] = distribution.NewReferrersIndex(entries).Marshal()
	}
	return out, nil
}

// referrerSubjects lists the subjects repo has a referrers index for,
// sorted. Dot files (temporary files of writers) are left out.
func (r *Root) referrerSubjects(repo string) ([]digest.Digest, error) {
	if err := ValidateRepo(repo); err != nil {
		return nil, err
	}
	return r.digestsIn(r.referrersDir(repo), func(e fs.DirEntry) bool { return e.Type().IsRegular() })
}

// readReferrers returns the stored referrers index of subject in repo.
func (r *Root) readReferrers(repo string, subject digest.Digest) ([]byte, error) {
	return r.readSmall(r.referrersPath(repo, subject), maxListSize)
}

func sortedDigests[V any](m map[digest.Digest]V) []digest.Digest {
	ds := make([]digest.Digest, 0, len(m))
	for d := range m {
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds
}

// referrersPath is the referrers index of subject in repo: it answers
// GET /v2/<repo>/referrers/<subject> while manifests of repo refer to
// subject (see referrers.go).
func (r *Root) referrersPath(repo string, subject digest.Digest) string {
	return filepath.Join(r.referrersDir(repo), subject.String())
}

func (r *Root) referrersDir(repo string) string { return filepath.Join(r.repoDir(repo), referrersDir) }

// emptyReferrersPath is the one empty referrers index of the tree: the
// static servers answer it for every digest of an existing repository that
// has no index of its own. It lives in our dot directory, so nothing
// serves it under its own name.
func (r *Root) emptyReferrersPath() string {
	return filepath.Join(r.dir, stateDir, emptyIndexFile)
}
