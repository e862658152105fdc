package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/typemap"
	"github.com/opencontainers/go-digest"
)

// Migration. A tree TripleO's exporter wrote (legacy.go lists its
// conventions) is rewritten in place to the layout this package writes,
// while servers serve it: every step is one of durable.go's, each file is
// replaced by a rename, and the steps run in publish order — modes, then
// blobs, then manifests, then tags, then listings, then _catalog — so
// that at every instant each server (Apache with TripleO's vhost or ours,
// nginx, the embedded server) finds every tag it served before complete.
// docs/legacy-trees.md argues each step.

// MigrateReport says what Migrate changed, or with DryRun would change,
// one count per kind of change.
type MigrateReport struct {
	DryRun bool `json:"dry_run"`
	// ModesFixed are files made 0644 and directories 0755.
	ModesFixed int `json:"modes_fixed"`
	// BlobsRenamed are <digest>.gz blobs given their plain name, a hard
	// link of the same inode (the .gz name stays).
	BlobsRenamed int `json:"blobs_renamed"`
	// HeadersRewritten are manifest .htaccess files rewritten without the
	// ETag line, with the media type the manifest's bytes state.
	HeadersRewritten int `json:"headers_rewritten"`
	// TypeMapsRewritten are type maps rewritten with explicit preferences
	// (qs) and the media types the manifests' headers state.
	TypeMapsRewritten int `json:"type_maps_rewritten"`
	// LegacyTagsConverted are symlink tags rewritten as type maps.
	LegacyTagsConverted int `json:"legacy_tags_converted"`
	// ListingsSorted are tags/list files and _catalog rewritten sorted and
	// complete.
	ListingsSorted int `json:"listings_sorted"`
	// NginxLinksAdded are nginx's typed manifest links and tag links
	// added or set right.
	NginxLinksAdded int `json:"nginx_links_added"`
	// RepoHeadersRemoved are per-repository manifests/.htaccess files
	// removed.
	RepoHeadersRemoved int `json:"repository_headers_removed"`
	// SkeletonWritten are the files every server needs that were missing:
	// v2/index.json, the error bodies, the empty referrers index.
	SkeletonWritten int `json:"skeleton_written"`
	// Problems are what migrate found and left alone: damage, not
	// convention (verify says more).
	Problems []MigrateProblem `json:"problems,omitempty"`
}

// Changes is the number of changes the report counts.
func (m *MigrateReport) Changes() int {
	return m.ModesFixed + m.BlobsRenamed + m.HeadersRewritten + m.TypeMapsRewritten + m.LegacyTagsConverted +
		m.ListingsSorted + m.NginxLinksAdded + m.RepoHeadersRemoved + m.SkeletonWritten
}

// MigrateProblem is one thing migrate could not convert.
type MigrateProblem struct {
	Path    string `json:"path"`
	Problem string `json:"problem"`
}

func (p MigrateProblem) String() string { return p.Path + ": " + p.Problem }

// Migrate rewrites the tree from TripleO's conventions to the current
// layout, or with dryRun only reports what it would change. It is a
// maintenance operation (Maintain), holding the tree lock exclusively, as
// gc does: exports, deletes and collections
// wait, servers go on serving. It is idempotent: a run over a migrated
// tree changes nothing and reports no change. It fetches, copies and
// re-hashes no blob (verify re-hashes); what it cannot convert is left as
// it is and reported as a problem.
func (r *Root) migrateTree(dryRun bool) (*MigrateReport, error) {
	if err := r.RequireTree(); err != nil {
		return nil, err
	}
	var rep *MigrateReport
	err := r.Maintain(MaintainOptions{ReadOnly: dryRun}, func(*Maint) error {
		p, err := r.planMigration(nil)
		if err != nil {
			return err
		}
		rep = p.report()
		rep.DryRun = dryRun
		if dryRun {
			return nil
		}
		return r.migrate(p)
	})
	return rep, err
}

// migration is what a run changes, planned from the tree before the first
// change.
type migration struct {
	skeleton    int
	modes       []modeFix
	blobs       []repoDigest
	manifests   []manifestFix // headers and typed links
	tags        []tagFix
	refresh     []string // repositories whose tags/list or tag links need rewriting
	repoHeaders []string // repositories with a manifests/.htaccess
	catalog     bool
	listings    int // tags/list files and _catalog out of order or step
	tagLinks    int // nginx tag links missing or wrong
	problems    []MigrateProblem
	// findings are the conventions planned away, for verify.
	findings []LegacyFinding
	// namesInTree counts the names of each inode under v2, once a file
	// with several links needs it (linkedFromOutside).
	namesInTree map[[2]uint64]uint64
}

type modeFix struct {
	path string
	mode fs.FileMode
}

type repoDigest struct {
	repo string
	d    digest.Digest
}

type manifestFix struct {
	repoDigest
	mediaType string
	headers   bool // the .htaccess needs rewriting
	typed     bool // the typed link is missing
}

type tagFix struct {
	repo, tag string
	variants  []TagVariant
	legacy    bool // a symlink tag
}

func (p *migration) report() *MigrateReport {
	rep := &MigrateReport{SkeletonWritten: p.skeleton, ModesFixed: len(p.modes), BlobsRenamed: len(p.blobs),
		ListingsSorted: p.listings, NginxLinksAdded: p.tagLinks, RepoHeadersRemoved: len(p.repoHeaders), Problems: p.problems}
	for _, m := range p.manifests {
		if m.headers {
			rep.HeadersRewritten++
		}
		if m.typed {
			rep.NginxLinksAdded++
		}
	}
	for _, t := range p.tags {
		if t.legacy {
			rep.LegacyTagsConverted++
		} else {
			rep.TypeMapsRewritten++
		}
	}
	return rep
}

// merge adds what q plans for a repository to p.
func (p *migration) merge(q *migration) {
	p.blobs = append(p.blobs, q.blobs...)
	p.manifests = append(p.manifests, q.manifests...)
	p.tags = append(p.tags, q.tags...)
	p.refresh = append(p.refresh, q.refresh...)
	p.repoHeaders = append(p.repoHeaders, q.repoHeaders...)
	p.listings += q.listings
	p.tagLinks += q.tagLinks
	p.problems = append(p.problems, q.problems...)
	p.findings = append(p.findings, q.findings...)
}

func (p *migration) problem(path, format string, args ...any) {
	p.problems = append(p.problems, MigrateProblem{Path: path, Problem: fmt.Sprintf(format, args...)})
}

func (p *migration) legacy(kind LegacyKind, path string) {
	p.findings = append(p.findings, LegacyFinding{Kind: kind, Path: path})
}

// migrate carries out p in publish order.
func (r *Root) migrate(p *migration) error {
	if p.skeleton > 0 {
		if err := r.Init(); err != nil {
			return err
		}
	}
	// Modes first: a reader the old modes kept out gets in, nobody else
	// notices.
	for _, m := range p.modes {
		if err := r.chmodEntry(m.path, m.mode); err != nil {
			return err
		}
	}
	// Blobs: the plain name next to the .gz, one inode, before any tag
	// relies on the plain name.
	for _, b := range p.blobs {
		if err := r.publishHardLink(r.legacyBlobPath(b.repo, b.d), r.blobPath(b.repo, b.d)); err != nil {
			return fmt.Errorf("blob %s of %s: %w", b.d, b.repo, err)
		}
	}
	for _, m := range p.manifests {
		if err := r.migrateManifest(m); err != nil {
			return err
		}
	}
	for _, t := range p.tags {
		// Nginx's links, the type map, the symlink's removal, tags/list,
		// _catalog: PutTag's order.
		if err := r.putTag(t.repo, t.tag, t.variants); err != nil {
			return err
		}
	}
	for _, repo := range p.refresh {
		if err := r.refreshTags(repo); err != nil {
			return err
		}
	}
	// The per-repository .htaccess last: every type map it declared a
	// handler for is ours now, and our servers declare the handler
	// themselves.
	for _, repo := range p.repoHeaders {
		if err := r.unlink(r.repoHeadersPath(repo)); err != nil {
			return err
		}
		if err := r.syncDir(r.manifestsDir(repo)); err != nil {
			return err
		}
	}
	if p.catalog {
		return r.refreshCatalog()
	}
	return nil
}

// migrateManifest rewrites a manifest's headers, then gives it its typed
// link: the headers Apache sends change in one rename, and nginx gets the
// manifest only once its type is right.
func (r *Root) migrateManifest(m manifestFix) error {
	if m.headers {
		if err := r.publish(r.headersPath(m.repo, m.d), headers(m.d, m.mediaType)); err != nil {
			return fmt.Errorf("manifest %s of %s: %w", m.d, m.repo, err)
		}
	}
	if m.typed {
		if err := r.linkTypedManifest(m.repo, m.d, m.mediaType); err != nil {
			return fmt.Errorf("manifest %s of %s: %w", m.d, m.repo, err)
		}
	}
	return nil
}

// planMigration reads the tree (the repositories named, or all when
// repos is empty) and plans its migration. It changes nothing.
func (r *Root) planMigration(repos []string) (*migration, error) {
	p := &migration{}
	all := len(repos) == 0
	if all {
		var err error
		if repos, err = r.storedRepositories(); err != nil {
			return nil, err
		}
		p.skeleton = r.skeletonMissing()
		if err := r.planModes(p, r.v2Dir()); err != nil {
			return nil, err
		}
	} else {
		for _, repo := range repos {
			if err := r.planModes(p, r.repoDir(repo)); err != nil {
				return nil, err
			}
		}
	}
	tagged := map[string]bool{}
	for _, repo := range repos {
		if err := ValidateRepo(repo); err != nil {
			return nil, err
		}
		rp := &migration{}
		has, err := r.planRepo(rp, repo)
		if err == nil {
			p.merge(rp)
		}
		if errors.Is(err, ErrOutsideRoot) {
			// What the repository holds is not all in the tree: leave it
			// alone, as gc does (verify names the link).
			p.problem(r.repoDir(repo), "%v: left as it is", err)
			has = r.isFile(r.tagsListPath(repo))
		} else if err != nil {
			return nil, fmt.Errorf("repository %s: %w", repo, err)
		}
		tagged[repo] = has
	}
	if all {
		r.planCatalog(p, tagged)
	}
	return p, nil
}

// skeletonMissing counts the files Init would write.
func (r *Root) skeletonMissing() int {
	want := map[string][]byte{r.pingPath(): []byte("{}"), r.emptyReferrersPath(): distribution.EmptyReferrers()}
	for _, e := range distribution.Errors() {
		want[r.errorPath(e)] = e.Body()
	}
	n := 0
	for path, data := range want {
		if b, err := r.readSmall(path, len(data)); err != nil || string(b) != string(data) {
			n++
		}
	}
	return n
}

// planModes plans the mode of every file and directory below dir that
// is not ours: 0644 and 0755. Temporary files and symlinks keep theirs. A
// FIFO, a socket or a device is a problem, left as it is: no server
// serves it and no command reads it (verify --repair removes it).
func (r *Root) planModes(p *migration, dir string) error {
	err := r.walkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if isTempName(e.Name()) || e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if notRegularEntry(e) {
			p.problem(path, "%v: left as it is", &NotRegularError{Type: e.Type()})
			return nil
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed since the directory was read: a tag deleted meanwhile
		}
		if err != nil {
			return err
		}
		want := fs.FileMode(fileMode)
		if fi.IsDir() {
			want = dirMode
		} else if !fi.Mode().IsRegular() {
			return nil
		}
		if fi.Mode().Perm() == want {
			return nil
		}
		if fi.Mode().IsRegular() {
			if outside, err := p.linkedFromOutside(r, fi); err != nil {
				return err
			} else if outside {
				p.problem(path, "%d names, only %d of them in the tree: a hard link from outside; its mode is left as it is", fi.Sys().(*syscall.Stat_t).Nlink, p.namesInTree[inodeKey(fi)])
				return nil
			}
		}
		p.modes = append(p.modes, modeFix{path, want})
		p.legacy(LegacyMode, path)
		return nil
	})
	return err
}

// linkedFromOutside reports whether the regular file fi of r's tree has
// names outside the tree: more hard links than the tree holds. Changing
// its mode would change a file that is not the tree's — a link planted to
// a private file outside (0600) would make it world-readable. The tree's
// names are counted once per plan, over all of v2.
func (p *migration) linkedFromOutside(r *Root, fi fs.FileInfo) (bool, error) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true, nil // no link count: assume the worst
	}
	if st.Nlink <= 1 {
		return false, nil
	}
	if p.namesInTree == nil {
		names := map[[2]uint64]uint64{}
		if err := r.walkFiles(r.v2Dir(), func(in Inode) { names[[2]uint64{in.Dev, in.Ino}]++ }); err != nil {
			return false, err
		}
		p.namesInTree = names
	}
	return uint64(st.Nlink) > p.namesInTree[inodeKey(fi)], nil
}

// inodeKey is the device and inode number of fi.
func inodeKey(fi fs.FileInfo) [2]uint64 {
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint64{uint64(st.Dev), st.Ino}
}

// planRepo plans repo's blobs, manifests, tags and listings, and reports
// whether the repository has tags once migrated.
func (r *Root) planRepo(p *migration, repo string) (bool, error) {
	if err := r.planBlobs(p, repo); err != nil {
		return false, err
	}
	types, err := r.planManifests(p, repo)
	if err != nil {
		return false, err
	}
	tags, err := r.planTags(p, repo, types)
	if err != nil {
		return false, err
	}
	if r.isFile(r.repoHeadersPath(repo)) {
		p.repoHeaders = append(p.repoHeaders, repo)
		p.legacy(LegacyRepoHeaders, r.repoHeadersPath(repo))
	}
	return len(tags) > 0, nil
}

// planBlobs plans a plain name for every .gz blob that lacks one.
func (r *Root) planBlobs(p *migration, repo string) error {
	blobs, err := r.blobs(repo)
	if err != nil {
		return err
	}
	for _, b := range blobs {
		if !b.Legacy {
			continue
		}
		legacy, plain := r.legacyBlobPath(repo, b.Digest), r.blobPath(repo, b.Digest)
		if _, err := r.lstat(plain); err == nil {
			if !r.sameInode(legacy, plain) {
				p.problem(legacy, "both %s and its .gz name are in the repository, as different files: verify tells which is sound", b.Digest)
			}
			continue
		}
		p.blobs = append(p.blobs, repoDigest{repo, b.Digest})
		p.legacy(LegacyBlob, legacy)
	}
	return nil
}

// planManifests plans every complete manifest's headers and typed link,
// and returns the media type each will have.
func (r *Root) planManifests(p *migration, repo string) (map[digest.Digest]*storedManifest, error) {
	ds, err := r.manifestDigests(repo)
	if err != nil {
		return nil, err
	}
	out := map[digest.Digest]*storedManifest{}
	for _, d := range ds {
		if !r.manifestComplete(repo, d) {
			continue
		}
		m, err := r.readStoredManifest(repo, d)
		if err != nil {
			p.problem(r.manifestPath(repo, d), "%v", err)
			continue
		}
		out[d] = m
		fix := manifestFix{repoDigest: repoDigest{repo, d}, mediaType: m.mediaType}
		old, err := r.readSmall(r.headersPath(repo, d), maxHeadersSize)
		fix.headers = err != nil || string(old) != string(headers(d, m.mediaType))
		if fix.headers && err == nil && hasETagLine(old) {
			p.legacy(LegacyHeaders, r.headersPath(repo, d))
		}
		if link, ok := r.typedManifestPath(repo, d, m.mediaType); ok && !r.sameInode(r.manifestPath(repo, d), link) {
			fix.typed = true
		}
		if fix.headers || fix.typed {
			p.manifests = append(p.manifests, fix)
		}
	}
	return out, nil
}

// planTags plans repo's type maps and symlink tags, its tags/list and its
// nginx tag links, and returns the tags repo has once migrated.
func (r *Root) planTags(p *migration, repo string, ms map[digest.Digest]*storedManifest) ([]string, error) {
	maps, err := r.tags(repo)
	if err != nil {
		return nil, err
	}
	links, err := r.legacyTags(repo)
	if err != nil {
		return nil, err
	}
	if err := r.planDanglingSymlinks(p, repo, links); err != nil {
		return nil, err
	}
	refresh := false
	final := slices.Clone(maps)
	for _, tag := range maps {
		vs, err := r.TagVariants(repo, tag)
		if err != nil || len(vs) == 0 {
			if err == nil {
				err = errNoVariants
			}
			p.problem(r.typeMapPath(repo, tag), "%v", err)
			// Not listed, as writeTagsList lists only tags that pull.
			final = slices.DeleteFunc(final, func(t string) bool { return t == tag })
			maps = slices.DeleteFunc(slices.Clone(maps), func(t string) bool { return t == tag })
			continue
		}
		want, ok := wantVariants(p, r.typeMapPath(repo, tag), vs, ms)
		if !ok {
			continue
		}
		_, legacy := r.legacyTag(repo, tag)
		old, _ := r.readSmall(r.typeMapPath(repo, tag), MaxManifestSize)
		rewrite := string(old) != string(typeMapOf(tag, want))
		if rewrite && len(vs) > 1 && !hasQS(vs) {
			p.legacy(LegacyTypeMap, r.typeMapPath(repo, tag))
		}
		if rewrite || legacy {
			p.tags = append(p.tags, tagFix{repo: repo, tag: tag, variants: want, legacy: legacy && !rewrite})
			if legacy {
				p.legacy(LegacySymlinkTag, r.legacyTagPath(repo, tag))
			}
		}
		if n := r.tagLinksOff(repo, tag, want); n > 0 {
			p.tagLinks += n
			refresh = true
		}
	}
	for _, tag := range links {
		if slices.Contains(maps, tag) {
			continue // the type map is the tag; the link goes with its rewrite
		}
		d, _ := r.legacyTag(repo, tag)
		want, ok := wantVariants(p, r.legacyTagPath(repo, tag), []TagVariant{{Digest: d}}, ms)
		if !ok {
			continue
		}
		p.tags = append(p.tags, tagFix{repo: repo, tag: tag, variants: want, legacy: true})
		p.legacy(LegacySymlinkTag, r.legacyTagPath(repo, tag))
		p.tagLinks += r.tagLinksOff(repo, tag, want)
		final = append(final, tag)
	}
	slices.Sort(final)
	if r.tagsListOff(repo, final) {
		p.listings++
		refresh = true
	}
	// TripleO's listing: the tags migrated, symlink tags among them, in
	// directory order.
	if listed, ok, err := r.readTagsList(repo); err == nil && ok && slices.Equal(sortedCopy(listed), final) && !slices.Equal(listed, maps) {
		p.legacy(LegacyTagsList, r.tagsListPath(repo))
	}
	if refresh && !slices.ContainsFunc(p.tags, func(t tagFix) bool { return t.repo == repo }) {
		p.refresh = append(p.refresh, repo)
	}
	return final, nil
}

// planDanglingSymlinks reports the symlinks in repo's manifests directory
// that look like tags but name no manifest of the repository.
func (r *Root) planDanglingSymlinks(p *migration, repo string, links []string) error {
	entries, err := r.readDir(r.manifestsDir(repo))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink != 0 && distribution.ValidateTag(e.Name()) == nil && !slices.Contains(links, e.Name()) {
			p.problem(r.legacyTagPath(repo, e.Name()), "a symlink tag naming no manifest of the repository: left as it is")
		}
	}
	return nil
}

// wantVariants is what a tag offering vs offers once migrated: its
// manifest — for a multi-arch tag, the index or list among vs — as an
// export offers it (exportVariants). A variant whose manifest is gone
// (TripleO published a list before its children) is dropped; a tag
// without its top manifest, or offering several manifests of which none
// is an index, is left as it is.
func wantVariants(p *migration, path string, vs []TagVariant, ms map[digest.Digest]*storedManifest) ([]TagVariant, bool) {
	top := -1
	for i, v := range vs {
		if m, ok := ms[v.Digest]; ok && distribution.IsIndex(m.mediaType) {
			top = i
			break
		}
	}
	if top < 0 && len(vs) == 1 {
		top = 0
	}
	if top < 0 {
		if len(vs) > 1 && !hasQS(vs) {
			p.problem(path, "offers %d manifests, none of them an index: left as it is", len(vs))
		}
		return nil, false
	}
	want, ok := exportVariants(vs[top].Digest, ms)
	if !ok {
		p.problem(path, "names manifest %s, which is not in the repository: left as it is", vs[top].Digest)
	}
	return want, ok
}

func hasQS(vs []TagVariant) bool {
	return slices.ContainsFunc(vs, func(v TagVariant) bool { return v.QS != 0 })
}

// typeMapOf is the type map PutTag writes for tag.
func typeMapOf(tag string, vs []TagVariant) []byte {
	m := typemap.Map{URI: tag}
	for _, v := range vs {
		m.Variants = append(m.Variants, TypeMapVariant(v))
	}
	return m.Marshal()
}

// tagLinksOff counts tag's nginx links that do not point where vs says.
func (r *Root) tagLinksOff(repo, tag string, vs []TagVariant) int {
	main, fallback := tagLinkTargets(vs)
	n := 0
	for path, d := range map[string]digest.Digest{r.tagLinkPath(repo, tag): main, r.fallbackLinkPath(repo, tag): fallback} {
		if got, err := r.readlink(path); err != nil || got != linkTarget(d) {
			n++
		}
	}
	return n
}

// tagsListOff reports whether repo's tags/list is not what writeTagsList
// writes for tags.
func (r *Root) tagsListOff(repo string, tags []string) bool {
	old, err := r.readSmall(r.tagsListPath(repo), maxListSize)
	if len(tags) == 0 {
		return err == nil || !absentOrOutside(err)
	}
	want, _ := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo, tags})
	return err != nil || string(old) != string(want)
}

// planCatalog plans _catalog: the repositories with tags, sorted.
func (r *Root) planCatalog(p *migration, tagged map[string]bool) {
	repos := []string{}
	for repo, has := range tagged {
		if has {
			repos = append(repos, repo)
		}
	}
	slices.Sort(repos)
	want, _ := json.Marshal(struct {
		Repositories []string `json:"repositories"`
	}{repos})
	old, err := r.readSmall(r.catalogPath(), maxListSize)
	if err == nil && string(old) == string(want) {
		return
	}
	p.catalog = true
	p.listings++
	if listed, err := r.readCatalog(); err == nil && catalogTripleO(listed, repos) {
		p.legacy(LegacyCatalog, r.catalogPath())
	}
}

func sortedCopy(ss []string) []string {
	c := slices.Clone(ss)
	slices.Sort(c)
	return c
}

// repoHeadersPath is TripleO's per-repository manifests/.htaccess.
func (r *Root) repoHeadersPath(repo string) string {
	return filepath.Join(r.manifestsDir(repo), headersFile)
}

// hasETagLine reports a TripleO .htaccess: its third line sets an ETag.
func hasETagLine(b []byte) bool {
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "Header set ETag ") {
			return true
		}
	}
	return false
}
