package exporter

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// SyncTree is what a sync needs of the tree: the publisher's role, and
// the reads it makes before publishing to skip what it has — the digest
// a tag names now, whether a digest is pinned, and, through a View,
// whether a manifest is in a repository (a referrer the tree holds costs
// no request) and what an index it holds lists (the children whose
// cosign tags travel with a tag that has not moved).
type SyncTree interface {
	tree.Publisher
	TagDigest(repo, tag string) (digest.Digest, bool, error)
	IsPinned(repo string, d digest.Digest) (bool, error)
	Inspect(do func(*tree.View) error) error
}

// holds reports whether repo of root holds manifest d, whole. Where the
// tree cannot say (no tree yet, a lock that cannot be had), it does not:
// the referrer is fetched, and publishing it again changes nothing.
func holds(root SyncTree, repo string, d digest.Digest) bool {
	ok := false
	_ = root.Inspect(func(v *tree.View) error {
		ok = v.ManifestComplete(repo, d)
		return nil
	})
	return ok
}

// SyncEntry is one repository a sync mirrors into one tree repository.
type SyncEntry struct {
	// Entry names the entry in errors: "sync.yaml line 12: reg.io/app";
	// with Local, whose errors name the store, "sync.yaml line 12:
	// localhost/app" does.
	Entry string
	// Source is the repository, HOST[:PORT]/REPO; with Local, the
	// repository as the store names it (localhost/app).
	Source string
	// Local, when set, is the store on this machine Source is in,
	// instead of a registry. A tag is then compared by its image's ID
	// (the digest of its config, which the tree's manifest names since
	// an export keeps the config as it is): the store's ID equal to the
	// config the tree's tag names means unchanged. The store is listed
	// once per run, whatever the number of its entries and tags; a tag
	// that moved is exported by its ID, so that what is exported is what
	// was compared. Nothing refers to a local image: NoReferrers,
	// Platforms, Digests and Registry do not apply.
	Local *LocalStore
	// Dest is the tree repository its tags go to, under their own names.
	Dest string
	// Tags are the tags named; nil lists the repository's and takes those
	// Select takes (all when Select is nil).
	Tags   []string
	Select func(tag string) bool
	// Digests are manifests to keep by digest, with no tag: each is
	// exported by its digest into Dest and pinned there (a digest pin,
	// which gc keeps with all it reaches). A digest the tree has pinned
	// already costs no request, since a digest never moves; one whose
	// index Platforms filter is pinned as the new index, so it is planned
	// again at each run (its blobs reused). Digests alone, with no Tags
	// and no Select, list no tag.
	Digests []digest.Digest
	// Immutable says which tags never move once in the tree: such a tag
	// the tree has costs no request. nil: none.
	Immutable func(tag string) bool
	// Platforms select children of an index, as Options.Platforms.
	Platforms []string
	// NoReferrers leaves behind what refers to the entry's images:
	// referrers and cosign's signature, attestation and SBOM tags.
	NoReferrers bool
	// Registry is how to reach Source (credentials, TLS, certs.d); the
	// run's Options.Registry fills in what it leaves zero (credentials,
	// certs.d, user agent, timeout, limits), and its Insecure applies to
	// all.
	Registry RegistryOptions
}

// SyncOptions tune a sync.
type SyncOptions struct {
	// Export is how the tags that moved are exported, all in one batch
	// (ExportEach): Jobs, AllOrNothing, Progress, Log…; its Platforms are
	// replaced by each entry's.
	Export Options
	// DryRun plans: it lists, asks for digests and plans every tag that
	// moved (manifests fetched, no blob), and publishes nothing.
	DryRun bool
	// KeepGoing publishes what it can when an entry or a tag fails;
	// without it a failure to list or ask for a digest publishes nothing.
	KeepGoing bool
	// MaxTags bounds each repository's listing; < 1 means DefaultMaxTags.
	MaxTags int
	// Done, when set, is called once for each result of the report, as
	// soon as it is final, so that a run that dies has said which images
	// it finished: a tag that has not moved, an immutable one, or one
	// whose HEAD failed, as its check decides it; a tag exported, as its
	// tag moves or its export fails (with AllOrNothing, when the batch's
	// tags move); the rest — a dry run's, and the tags a failure kept
	// from being exported (their Status "") — at the end. Calls are made
	// one at a time, before Sync returns.
	Done func(SyncResult)
}

// SyncStatus is what a sync did with one tag.
type SyncStatus string

// What a sync does with a tag.
const (
	SyncSynced    SyncStatus = "synced"    // exported: the tag moved, or was new
	SyncUnchanged SyncStatus = "unchanged" // the source names what the tree's tag does, or the digest is pinned
	SyncImmutable SyncStatus = "immutable" // immutable and in the tree: not asked for
	SyncWould     SyncStatus = "would-sync"
	SyncFailed    SyncStatus = "failed"
)

// SyncResult is one tag or digest pin of a sync.
type SyncResult struct {
	Source string        // docker://HOST/REPO:TAG (or @DIGEST for a pin), or a store's reference
	Dest   string        // REPO:TAG in the tree, or REPO@DIGEST for a pin
	Digest digest.Digest // what the tag names after the run ("" when failed)
	Status SyncStatus
	// Summary of the export, for SyncSynced.
	Summary *Summary
	// Manifests, Blobs and Bytes a dry run would fetch at most (blobs the
	// tree has are reused, not fetched): the image's own manifests, and
	// the blobs of the image and of its Referrers.
	Manifests, Blobs int
	Bytes            int64
	// Referrers is how many manifests referring to the tag's travelled
	// with it (or would, in a dry run): those the tree did not hold.
	Referrers int
	// Subject, for a cosign signature, attestation or SBOM tag
	// (sha256-<hex>.sig, .att, .sbom), is the tree's REPO:TAG (or
	// REPO@DIGEST, a pin) it was found for: the one naming its manifest,
	// or the index its manifest is a child of; "" for a release tag.
	Subject string
	Err     error
}

// SyncReport is what a sync did: one result per tag, in the order of the
// entries and of their tags, and the entries that failed as a whole.
type SyncReport struct {
	Results []SyncResult
	// Failures are one error per failure, in order: the entries whose
	// listing or registry failed (EntriesFailed of them), then the tags.
	Failures      []error
	EntriesFailed int
	// Requests is how many requests the run sent to its sources: each
	// try of a retry, pings and token requests included.
	Requests int64
	// Repos are the tree repositories the entries mirror into, in order,
	// with what a prune plan needs of each (PlanPrune).
	Repos []SyncRepo
}

// syncTag is a tag, or a digest to pin, on its way through a sync.
type syncTag struct {
	e       *syncEntry
	tag     string
	pin     digest.Digest // a digest entry: tag is "", dest.Tag too
	dest    Dest
	current digest.Digest // what the tree's tag names; "" for none
	// localID is, for a tag of a store on this machine that moved, the
	// ID of the image to export.
	localID digest.Digest
	res     SyncResult
	done    bool // its result was handed to SyncOptions.Done
}

type syncEntry struct {
	SyncEntry
	// catalog is what the store of a Local entry holds, shared by the
	// entries reading the same store.
	catalog *localCatalog
	reg     RegistryOptions
	once    sync.Once
	repo    *Repository
	err     error
	// listed is every tag the listing of the entry sent (nil when it
	// named its tags); selected, those it took.
	listed, selected []string
	// failed: its listing failed, it could not be opened, or its
	// destination is no repository name.
	failed bool
}

// open opens the entry's repository the first time it is needed: an
// entry whose tags are all immutable and present sends no request.
func (e *syncEntry) open(ctx context.Context) (*Repository, error) {
	e.once.Do(func() {
		e.repo, e.err = OpenRepository(ctx, e.Source, e.reg)
		if e.err != nil {
			e.err = fmt.Errorf("%s: %w", e.Entry, e.err)
		}
	})
	return e.repo, e.err
}

// Sync mirrors entries into root: it lists each repository's tags (or
// takes those named), filters them, and for each asks the source for the
// digest it names with one HEAD, compared with the digest root's tag
// names: a tag that has not moved costs that request alone, and an
// immutable tag root has costs none. Every tag that moved is exported in
// one batch (ExportEach): a blob shared by many is fetched once, o.Jobs
// bounds the transfers of the whole run, and with AllOrNothing every tag
// moves or none does. Unless an entry says NoReferrers, what refers to
// its tags travels too: the referrers of each manifest a moved tag
// exports, in its plan (addReferrers), and cosign's signature,
// attestation and SBOM tags of the digests its tags name and of the
// children of the indexes they name, as tags of the batch (attacher).
// The report's Repos are what a prune plan needs (PlanPrune); Sync
// itself never removes anything.
//
// It returns the report and an error joining one line per failure (an
// entry or a tag), nil when none failed.
func Sync(ctx context.Context, root SyncTree, entries []SyncEntry, o SyncOptions) (*SyncReport, error) {
	o.Export = o.Export.withDefaults()
	if o.Export.Registry.pool == nil {
		o.Export.Registry.pool = &transportPool{}
	}
	if o.Export.Registry.log == nil {
		o.Export.Registry.log = o.Export.Log
	}
	requests := o.Export.Registry.requests
	if requests == nil {
		requests = new(atomic.Int64)
		o.Export.Registry.requests = requests
	}
	rep := &SyncReport{}
	defer func() { rep.Requests = requests.Load() }()
	es := make([]*syncEntry, len(entries))
	catalogs := map[string]*localCatalog{}
	for i, e := range entries {
		es[i] = &syncEntry{SyncEntry: e, reg: e.Registry.under(o.Export.Registry)}
		if e.Local != nil {
			key := e.Local.String()
			if catalogs[key] == nil {
				catalogs[key] = &localCatalog{store: *e.Local}
			}
			es[i].catalog = catalogs[key]
			es[i].NoReferrers, es[i].Platforms = true, nil
		}
	}
	defer func() {
		for _, e := range es {
			if e.repo != nil {
				e.repo.Close()
			}
		}
	}()

	var doneMu sync.Mutex
	done := func(t *syncTag) {
		doneMu.Lock()
		defer doneMu.Unlock()
		if o.Done != nil && !t.done {
			t.done = true
			o.Done(t.res)
		}
	}
	// settle puts the tags' results in the report, in order, and hands
	// Done those it has not had.
	settle := func(tags []*syncTag) {
		for _, t := range tags {
			rep.Results = append(rep.Results, t.res)
			done(t)
		}
	}

	tags, failures := collectTags(ctx, es, o)
	rep.Failures, rep.EntriesFailed = failures, len(failures)
	if err := checkDestinations(tags); err != nil {
		return rep, err
	}
	checkTags(ctx, root, tags, o.Export, done)
	att := newAttacher()
	tags = append(tags, att.attachedTags(ctx, root, tags, o.Export.Jobs, done)...)
	rep.Repos = syncRepos(es, tags)
	for _, t := range tags {
		if t.res.Err != nil {
			rep.Failures = append(rep.Failures, t.res.Err)
		}
	}
	if len(rep.Failures) > 0 && !o.KeepGoing {
		settle(tags)
		return rep, errors.Join(rep.Failures...)
	}

	var moved []*syncTag
	var jobs []Job
	for _, t := range tags {
		if t.res.Status == "" {
			moved = append(moved, t)
			jobs = append(jobs, t.job(root))
		}
	}
	if len(jobs) > 0 {
		start := time.Now()
		eo := o.Export.forBatch()
		images, cancel := newImages(ctx, jobs)
		defer cancel()
		planAll(ctx, images, eo)
		// The children of the indexes planned: their cosign tags join
		// the batch, planned in turn.
		children := att.childTags(ctx, root, moved, images, eo, done)
		rep.Repos = syncRepos(es, append(tags, children...))
		failed := false
		for _, c := range children {
			if c.res.Err != nil {
				rep.Failures = append(rep.Failures, c.res.Err)
				failed = true
			}
		}
		tags = append(tags, children...)
		if failed && !o.KeepGoing {
			for _, im := range images {
				if im.s != nil {
					im.s.Close()
				}
			}
			settle(tags)
			return rep, errors.Join(rep.Failures...)
		}
		var more []Job
		for _, c := range children {
			if c.res.Status == "" {
				moved = append(moved, c)
				more = append(more, c.job(root))
			}
		}
		if len(more) > 0 {
			extra, cancelExtra := newImages(ctx, more)
			defer cancelExtra()
			planAll(ctx, extra, eo)
			images = append(images, extra...)
		}
		if o.DryRun {
			planOnly(ctx, moved, images, eo)
		} else {
			sums, errs := exportPlanned(ctx, root, images, start, eo, func(i int, sum *Summary, err error) {
				moved[i].finish(sum, err)
				done(moved[i])
			})
			for i, t := range moved {
				t.finish(sums[i], errs[i]) // what done was told, where it was
			}
			if err := JoinFailures(errs); err != nil {
				rep.Failures = append(rep.Failures, err)
			}
		}
	}
	settle(tags)
	return rep, errors.Join(rep.Failures...)
}

// under fills in what o leaves zero from the run's options; the run's
// Insecure makes every entry insecure.
func (o RegistryOptions) under(run RegistryOptions) RegistryOptions {
	o.Insecure = o.Insecure || run.Insecure
	if o.UserAgent == "" {
		o.UserAgent = run.UserAgent
	}
	if o.Timeout <= 0 {
		o.Timeout = run.Timeout
	}
	if o.Creds == "" && o.AuthFile == "" {
		o.Creds, o.AuthFile = run.Creds, run.AuthFile
	}
	if o.CertDir == "" && !o.Insecure {
		o.CertDir = run.CertDir
	}
	if o.Limits.MaxRequests < 1 {
		o.Limits.MaxRequests = run.Limits.MaxRequests
	}
	if o.Limits.RequestsPerSecond <= 0 {
		o.Limits.RequestsPerSecond = run.Limits.RequestsPerSecond
	}
	o.pool, o.retry, o.base, o.log, o.requests = run.pool, run.retry, run.base, run.log, run.requests
	return o
}

// collectTags lists the entries (o.Export.Jobs at a time) and returns
// their tags in order; an entry that fails is one failure, and no tag.
// Signature tags (signatureTag) are left out of listings; an entry may
// still name one.
func collectTags(ctx context.Context, es []*syncEntry, o SyncOptions) ([]*syncTag, []error) {
	lists := make([][]string, len(es))
	errs := make([]error, len(es))
	forEach(len(es), o.Export.Jobs, func(i int) {
		e := es[i]
		if err := tree.ValidateRepo(e.Dest); err != nil {
			errs[i] = fmt.Errorf("%s: destination %q: %w", e.Entry, e.Dest, err)
			return
		}
		if e.Local != nil && len(e.Digests) > 0 {
			errs[i] = fmt.Errorf("%s: a store on this machine is synced by tag, not by digest", e.Entry)
			return
		}
		if e.Local != nil {
			// The store is listed here, named tags or not, so that a store
			// that cannot be listed is the entry's one failure.
			if err := e.catalog.load(ctx, o.Export); err != nil {
				errs[i] = fmt.Errorf("%s: %w", e.Entry, err)
				return
			}
		}
		if e.Tags != nil || (e.Select == nil && len(e.Digests) > 0) {
			lists[i] = e.Tags
			return
		}
		all, err := e.listTags(ctx, o)
		if err != nil {
			errs[i] = err
			return
		}
		e.listed = all
		for _, t := range all {
			if signatureTag.MatchString(t) {
				continue // a signature, attestation or SBOM, not a release tag
			}
			if e.Select == nil || e.Select(t) {
				lists[i] = append(lists[i], t)
			}
		}
		if len(lists[i]) == 0 && len(e.Digests) == 0 {
			o.Export.Log.Warn("no tag selected", "entry", e.Entry, "listed", len(all))
		}
	})
	var tags []*syncTag
	var failures []error
	seen := map[string]bool{}
	for i, e := range es {
		if errs[i] != nil {
			e.failed = true
			failures = append(failures, errs[i])
			continue
		}
		e.selected = lists[i]
		for _, tag := range lists[i] {
			key := e.sourceRef(tag) + " " + e.Dest
			if seen[key] {
				continue // two entries select it: once is enough
			}
			seen[key] = true
			t := &syncTag{e: e, tag: tag, dest: Dest{Repo: e.Dest, Tag: tag}}
			t.res = SyncResult{Source: e.sourceRef(tag), Dest: t.dest.String()}
			tags = append(tags, t)
		}
		for _, d := range e.Digests {
			key := e.Source + "@" + d.String() + " " + e.Dest
			if seen[key] {
				continue
			}
			seen[key] = true
			t := &syncTag{e: e, pin: d, dest: Dest{Repo: e.Dest}}
			t.res = SyncResult{Source: "docker://" + e.Source + "@" + d.String(), Dest: e.Dest + "@" + d.String()}
			tags = append(tags, t)
		}
	}
	return tags, failures
}

// listTags lists the tags of the entry's repository: the registry's
// listing, or the names the store has.
func (e *syncEntry) listTags(ctx context.Context, o SyncOptions) ([]string, error) {
	if e.Local != nil {
		all, err := e.catalog.tags(ctx, e.Source, o.Export)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Entry, err)
		}
		limit := o.MaxTags
		if limit < 1 {
			limit = DefaultMaxTags
		}
		if len(all) > limit {
			return nil, fmt.Errorf("%s: the store has %d tags of %s, over the limit of %d (--max-tags)", e.Entry, len(all), e.Source, limit)
		}
		return all, nil
	}
	repo, err := e.open(ctx)
	if err != nil {
		return nil, err
	}
	all, err := repo.Tags(ctx, o.MaxTags)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", e.Entry, err)
	}
	return all, nil
}

// sourceRef is the source reference of the entry's tag:
// docker://HOST/REPO:TAG, or the store's REPO:TAG.
func (e *syncEntry) sourceRef(tag string) string {
	if e.Local != nil {
		return e.Local.ref(e.Source + ":" + tag)
	}
	return "docker://" + e.Source + ":" + tag
}

// signatureTag is a tag that holds what is attached to a manifest, not a
// release: cosign's sha256-<hex>.sig, .att and .sbom, and the referrers
// tag schema's sha256-<hex>. A listing never selects one, and a prune
// never removes one: they travel with the manifest they are attached to,
// or not at all.
var signatureTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}(\.[a-z]+)?$`)

// SignatureTag reports whether tag holds what is attached to a manifest
// (cosign's sha256-<hex>.sig, .att, .sbom; the referrers tag schema's
// sha256-<hex>) rather than a release: never selected by a listing,
// never pruned.
func SignatureTag(tag string) bool { return signatureTag.MatchString(tag) }

// checkDestinations refuses two sources for one tree tag: which one won
// would depend on the order of the run.
func checkDestinations(tags []*syncTag) error {
	from := map[string]string{}
	var errs []error
	for _, t := range tags {
		if t.pin != "" {
			continue // a digest names one manifest, whichever source it came from
		}
		d := t.dest.String()
		if prev, ok := from[d]; ok && prev != t.res.Source {
			errs = append(errs, fmt.Errorf("%s: both %s and %s would go there (use a prefix, or --scoped)", d, prev, t.res.Source))
			continue
		}
		from[d] = t.res.Source
	}
	return errors.Join(errs...)
}

// checkTags decides, for each tag, whether it moved: immutable and in the
// tree, no request; otherwise one HEAD, compared with the tree's tag.
// done is called for each tag the check settles: unchanged, immutable
// or failed.
func checkTags(ctx context.Context, root SyncTree, tags []*syncTag, o Options, done func(*syncTag)) {
	forEach(len(tags), o.Jobs, func(i int) {
		t := tags[i]
		defer func() {
			if t.res.Status != "" {
				done(t)
			}
		}()
		if t.pin != "" {
			// A digest names the same bytes forever: pinned is done. A
			// pin the tree cannot read is synced again.
			if ok, err := root.IsPinned(t.dest.Repo, t.pin); err == nil && ok {
				t.res.Status, t.res.Digest = SyncUnchanged, t.pin
				return
			}
			// Opened here, the repository's client (pinged, authenticated)
			// serves the export, as it serves a tag's.
			if _, err := t.e.open(ctx); err != nil {
				t.fail(err)
				return
			}
			t.res.Digest = t.pin
			return
		}
		cur, ok, err := root.TagDigest(t.dest.Repo, t.dest.Tag)
		if err != nil {
			// A tag the tree cannot read is synced again: the export
			// writes its type map anew.
			ok = false
		}
		if ok {
			t.current = cur
			if t.e.Immutable != nil && t.e.Immutable(t.tag) {
				t.res.Status, t.res.Digest = SyncImmutable, cur
				return
			}
		}
		if t.e.Local != nil {
			t.checkLocal(ctx, root, o)
			return
		}
		repo, err := t.e.open(ctx)
		if err != nil {
			t.fail(err)
			return
		}
		d, err := repo.Head(ctx, t.tag)
		if err != nil {
			t.fail(fmt.Errorf("%s: %w", t.e.Entry, err))
			return
		}
		if d != "" && d == cur {
			t.res.Status, t.res.Digest = SyncUnchanged, cur
			return
		}
		t.res.Digest = d // what will be exported, pinned
	})
}

func (t *syncTag) fail(err error) {
	t.res.Status, t.res.Err, t.res.Digest = SyncFailed, err, ""
}

// job is the export of t: by the digest its HEAD answered, so that what
// is exported is what was compared (a tag that moves meanwhile is caught
// by the next run), and with the tree's current digest, so that an entry
// whose platforms make the tree's tag differ from the source's (a
// selected child, a filtered index) still publishes nothing when its plan
// tags what the tree has. A release tag's referrers travel with it unless
// the entry says not; a signature tag is exported as it is, every child
// of it, with no referrers of its own.
func (t *syncTag) job(root SyncTree) Job {
	if t.pin != "" {
		reg := t.e.reg
		return Job{Source: "docker://" + t.e.Source + "@" + t.pin.String(), Dest: t.dest.Repo, platforms: t.e.Platforms, registry: &reg, via: t.e.repo, pin: true}
	}
	if t.e.Local != nil {
		return t.localJob()
	}
	src := "docker://" + t.e.Source + ":" + t.tag
	if t.res.Digest != "" {
		src = "docker://" + t.e.Source + "@" + t.res.Digest.String()
	}
	reg := t.e.reg
	j := Job{Source: src, Dest: t.dest.String(), platforms: t.e.Platforms, registry: &reg, current: t.current, via: t.e.repo}
	if t.res.Subject != "" {
		j.platforms = []string{}
	} else if !t.e.NoReferrers {
		j.referrers = true
		j.hasManifest = func(repo string, d digest.Digest) bool { return holds(root, repo, d) }
	}
	return j
}

// finish records the export of t.
func (t *syncTag) finish(sum *Summary, err error) {
	if err != nil {
		t.fail(err)
		return
	}
	t.res.Digest, t.res.Summary, t.res.Referrers = sum.Digest, sum, sum.Referrers
	if t.pin != "" {
		t.res.Dest = sum.Dest // what is pinned: another digest when platforms filter an index
	}
	if sum.unchanged {
		t.res.Status = SyncUnchanged
		return
	}
	t.res.Status = SyncSynced
}

// planOnly takes the moved tags' images, planned (planAll), as an export
// would, adds their referrers, and publishes none: what a dry run
// reports. It closes their sources.
func planOnly(ctx context.Context, moved []*syncTag, images []*image, o Options) {
	for _, im := range images {
		if im.failed() == nil && im.job.current != "" && im.plan.top.Digest == im.job.current {
			im.unchanged = true
		}
	}
	addReferrersAll(ctx, images, o)
	for i, im := range images {
		if im.s != nil {
			im.s.Close()
		}
		t := moved[i]
		if err := im.failed(); err != nil {
			t.fail(err)
			continue
		}
		if im.job.current != "" && im.plan.top.Digest == im.job.current {
			t.res.Status, t.res.Digest = SyncUnchanged, im.job.current
			continue
		}
		t.res.Status, t.res.Digest = SyncWould, im.plan.top.Digest
		t.res.Manifests, t.res.Blobs, t.res.Referrers = im.sum.Manifests, len(im.plan.blobs), im.sum.Referrers
		for _, b := range im.plan.blobs {
			t.res.Bytes += b.Size
		}
	}
}

// forEach calls do(0) … do(n-1), jobs at a time.
func forEach(n, jobs int, do func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(jobs, 1), n) {
		wg.Go(func() {
			for i := range next {
				do(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
