package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Job is one image of a batch: a SOURCE and a DEST as export takes them.
type Job struct {
	Source string
	Dest   string // "" for the source's own name

	// What sync sets per image; an export leaves them zero.
	platforms []string         // nil: Options.Platforms
	registry  *RegistryOptions // nil: Options.Registry
	// current is the manifest the destination tag names already: an
	// image whose plan tags the same is not published (unchanged).
	current digest.Digest
	// via, when set, is the open repository of the source: its client
	// (pinged, authenticated) serves the job, instead of a new one.
	via *Repository
	// pin publishes the image as a digest pin of Dest, a repository, with
	// no tag (sync's digest entries).
	pin bool
	// referrers: the manifests that refer to the image's travel with it
	// (exporter/referrers.go); hasManifest, when set, says which the
	// destination repository holds already, so they cost no request.
	referrers   bool
	hasManifest func(repo string, d digest.Digest) bool
	// bundle, when set, is the tag of a bundle the job loads
	// (exporter/bundle.go): Source only names it.
	bundle *bundleImage
}

// pinDest reports whether the job publishes a digest pin rather than a
// tag, and where: a sync digest entry, or a docker:// source named by
// digest whose DEST names no tag (omitted, or a repository alone). The
// pin names the manifest the job publishes, the source's digest unless
// platforms filter an index.
func pinDest(j Job, src SourceRef) (Dest, bool, error) {
	if !j.pin && (src.Transport != transportDocker || src.digestOf() == "" || strings.Contains(j.Dest, ":")) {
		return Dest{}, false, nil
	}
	repo := j.Dest
	if repo == "" {
		repo = src.ref.Context().RepositoryStr()
	}
	if err := tree.ValidateRepo(repo); err != nil {
		return Dest{}, true, fmt.Errorf("destination %q: %w", repo, err)
	}
	return Dest{Repo: repo}, true, nil
}

// ExportMany exports jobs in one run, as an undercloud's image list: every
// image is resolved and planned first, then the blobs of all of them are
// transferred by one pool of o.Jobs workers — a blob shared by many images
// is fetched once and hard-linked into the other repositories — and then
// each image's manifests and tag are published, in the order given.
//
// A job that fails leaves the others alone: it returns one summary per job
// (nil where it failed) and an error joining one line per failed job, in
// the order given. A failed job tags nothing; blobs it fetched and
// verified stay for gc, as with one export.
//
// With o.AllOrNothing no tag moves unless every image can be tagged; the
// error then names the images that failed, not the ones they held back.
func ExportMany(ctx context.Context, root tree.Publisher, jobs []Job, o Options) ([]*Summary, error) {
	sums, errs := ExportEach(ctx, root, jobs, o)
	return sums, JoinFailures(errs)
}

// JoinFailures joins one line per failed job of ExportEach, leaving out the jobs that
// failed only with others (tree.ErrWithOthers) and lines said already: a
// failed move of a whole batch is the same error for every job.
func JoinFailures(errs []error) error {
	var out []error
	seen, heldBack := map[string]bool{}, false
	for _, err := range errs {
		if err != nil && errors.Is(err, tree.ErrWithOthers) {
			heldBack = true
			continue
		}
		if err == nil || seen[err.Error()] {
			continue
		}
		seen[err.Error()] = true
		out = append(out, err)
	}
	switch {
	case heldBack && len(out) == 0:
		return tree.ErrWithOthers
	case heldBack:
		out[len(out)-1] = fmt.Errorf("%w (so no image of the batch was tagged)", out[len(out)-1])
	}
	return errors.Join(out...)
}

// newImages starts one image per job, each with a context of its own
// (cancelled when one of its blobs fails); cancel ends them all.
func newImages(ctx context.Context, jobs []Job) (images []*image, cancel func()) {
	images = make([]*image, len(jobs))
	for i, j := range jobs {
		im := &image{job: j}
		im.ctx, im.cancel = context.WithCancel(ctx)
		images[i] = im
	}
	return images, func() {
		for _, im := range images {
			im.cancel()
		}
	}
}

// image is one job on its way through a batch.
type image struct {
	job    Job
	s      source
	dest   Dest
	plan   *plan
	sum    *Summary
	ctx    context.Context // cancelled when one of its blobs fails
	cancel context.CancelFunc
	// unchanged: planned, and the tag names its top manifest already.
	unchanged bool
	// pin: published as a digest pin of dest.Repo, with no tag.
	pin bool
	mu  sync.Mutex // guards err and sum's counts
	err error
}

func (im *image) fail(err error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.err == nil {
		im.err = err
		im.cancel()
	}
}

func (im *image) failed() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.err
}

// ExportEach is ExportMany reporting each job on its own: errs[i] is the
// error of jobs[i] (nil where sums[i] is its summary), for a caller that
// must say which job failed, such as export --json. With o.AllOrNothing,
// a job held back by another's failure has an error matching
// tree.ErrWithOthers.
func ExportEach(ctx context.Context, root tree.Publisher, jobs []Job, o Options) ([]*Summary, []error) {
	start := time.Now()
	o = o.forBatch()
	images, cancel := newImages(ctx, jobs)
	defer cancel()
	planAll(ctx, images, o)
	return exportPlanned(ctx, root, images, start, o, nil)
}

// forBatch is o with its defaults, and the transport pool and log its
// registries share.
func (o Options) forBatch() Options {
	o = o.withDefaults()
	if o.Registry.pool == nil {
		o.Registry.pool = &transportPool{}
	}
	if o.Registry.log == nil {
		o.Registry.log = o.Log
	}
	return o
}

// exportPlanned is ExportEach after planAll (o is forBatch's): it adds
// the referrers, publishes and reports images, and closes their sources.
// Sync plans a batch itself to learn the children of its indexes before
// it is published, and adds to it.
//
// done, when set, is called once for each image with what ExportEach
// returns for it, as soon as that is final: after planning for one that
// failed to plan (with AllOrNothing, every image, then), as its tag moves
// or its publication fails for one published (with AllOrNothing, when
// the batch's tags move), and at the end for the others (unchanged, or
// failed with the whole publication). Calls are made one at a time, from
// the caller's goroutine.
func exportPlanned(ctx context.Context, root tree.Publisher, images []*image, start time.Time, o Options, done func(i int, sum *Summary, err error)) ([]*Summary, []error) {
	for _, im := range images {
		if im.s != nil {
			defer im.s.Close()
		}
		if im.samePlan() {
			im.unchanged, im.sum.unchanged = true, true
		}
	}
	reported := make([]bool, len(images))
	report := func(i int) {
		if done != nil && !reported[i] {
			reported[i] = true
			sum, err := images[i].outcome(len(images))
			done(i, sum, err)
		}
	}
	addReferrersAll(ctx, images, o)
	if o.AllOrNothing && len(images) > 1 {
		failAllIfOne(images)
	}
	for i, im := range images {
		if im.failed() != nil {
			report(i) // failed to plan: nothing changes it now
		}
	}
	if pp, ok := o.Progress.(PlanProgress); ok && live(images) {
		pp.Planned(planned(images))
	}
	if live(images) {
		if err := publishAll(ctx, root, images, start, o, report); err != nil {
			for _, im := range images {
				im.fail(err)
			}
		}
	}
	sums, errs := make([]*Summary, len(images)), make([]error, len(images))
	for i, im := range images {
		sums[i], errs[i] = im.outcome(len(images))
		report(i)
	}
	return sums, errs
}

// samePlan reports whether im planned what its destination tag names
// already (Job.current): an unchanged image, not published.
func (im *image) samePlan() bool {
	return im.failed() == nil && im.job.current != "" && im.plan.top.Digest == im.job.current
}

// outcome is what ExportEach returns for im, one of n images: its
// summary, or its error, naming its source when the batch has others.
func (im *image) outcome(n int) (*Summary, error) {
	err := im.failed()
	if err == nil {
		return im.sum, nil
	}
	if n > 1 && !names(err, im.job.Source) {
		err = fmt.Errorf("%s: %w", im.job.Source, err)
	}
	return nil, err
}

// planned is what a PlanProgress is told of the images publishAll
// publishes.
func planned(images []*image) []PlannedImage {
	var out []PlannedImage
	for _, im := range images {
		if im.failed() != nil || im.unchanged {
			continue
		}
		pi := PlannedImage{Dest: im.sum.Dest}
		for _, b := range im.plan.blobs {
			pi.Blobs = append(pi.Blobs, PlannedBlob{Digest: b.Digest, Size: b.Size})
		}
		out = append(out, pi)
	}
	return out
}

// names reports whether err already names source (with or without its
// transport), so that a batch does not name it twice.
func names(err error, source string) bool {
	msg := err.Error()
	_, rest, _ := strings.Cut(source, "://")
	return strings.Contains(msg, source) || (rest != "" && strings.Contains(msg, rest))
}

// failAllIfOne fails every image with tree.ErrWithOthers when one
// failed to plan: a batch that is all or nothing publishes none of it.
func failAllIfOne(images []*image) {
	for _, im := range images {
		if im.failed() != nil {
			for _, other := range images {
				other.fail(tree.ErrWithOthers)
			}
			return
		}
	}
}

func live(images []*image) bool {
	for _, im := range images {
		if im.failed() == nil && !im.unchanged {
			return true
		}
	}
	return false
}

// planAll plans every image, o.Jobs at a time: resolving an undercloud's
// list is a few requests per image, and they need not wait for each other.
func planAll(ctx context.Context, images []*image, o Options) {
	next := make(chan *image)
	var wg sync.WaitGroup
	share := &streamShare{}
	for range min(o.Jobs, len(images)) {
		wg.Go(func() {
			for im := range next {
				if err := planImage(ctx, im, share, o); err != nil {
					im.fail(err)
				}
			}
		})
	}
	for _, im := range images {
		next <- im
	}
	close(next)
	wg.Wait()
}

// planImage opens the job's source and plans it: nothing is written yet.
// A source read whole to be planned is read once for all the jobs of the
// pass naming it (share).
func planImage(ctx context.Context, im *image, share *streamShare, o Options) error {
	if im.job.bundle != nil {
		return planBundleImage(ctx, im)
	}
	src, err := ParseSource(im.job.Source)
	if err != nil {
		return err
	}
	specs := o.Platforms
	if im.job.platforms != nil {
		specs = im.job.platforms
	}
	platforms, err := ParsePlatforms(specs)
	if err != nil {
		return err
	}
	if im.job.registry != nil {
		o.Registry = *im.job.registry
	}
	var s source
	imageName := ""
	switch {
	case im.job.via != nil && src.Transport == transportDocker:
		s = im.job.via.r.at(src.ref)
	case shareable(src):
		s, imageName, err = share.open(ctx, src, o)
	default:
		s, imageName, err = openSource(ctx, src, o)
	}
	if err != nil {
		return err
	}
	im.s = s
	if im.dest, im.pin, err = pinDest(im.job, src); err != nil {
		return err
	}
	if !im.pin {
		if im.dest, err = resolveDest(src, imageName, im.job.Dest); err != nil {
			return err
		}
	}
	if im.plan, err = makePlan(ctx, s, src, platforms, o.Jobs); err != nil {
		return err
	}
	for _, b := range im.plan.blobs {
		if b.Size > o.MaxBlobSize {
			return fmt.Errorf("blob %s: %d bytes declared, over the --max-blob-size of %d", b.Digest, b.Size, o.MaxBlobSize)
		}
	}
	p := im.plan
	dest := im.dest.String()
	if im.pin {
		dest = im.dest.Repo + "@" + p.top.Digest.String()
	}
	im.sum = &Summary{Source: src.String(), Dest: dest, Digest: p.top.Digest, MediaType: p.top.MediaType, Manifests: len(p.manifests)}
	return nil
}

// publishAll hands every live image to the tree's Publish, which owns the
// order: blobs of all images (o.Jobs at a time), then each image's
// manifests and tag. An image's Elapsed runs from the batch's start to its
// tag. done(i), when set, is called with the index in images of each live
// image as soon as the tree has published it or failed it.
func publishAll(ctx context.Context, root tree.Publisher, images []*image, start time.Time, o Options, done func(i int)) error {
	var live []int
	var batch []tree.Image
	for i, im := range images {
		if im.failed() == nil && !im.unchanged {
			live = append(live, i)
			batch = append(batch, treeImage(im, o))
		}
	}
	finished := make([]bool, len(live))
	finish := func(i int, res tree.Published) {
		if finished[i] {
			return
		}
		finished[i] = true
		images[live[i]].published(res, start, o)
		if done != nil {
			done(live[i])
		}
	}
	rep, err := root.Publish(ctx, batch, tree.PublishOptions{
		Jobs:           o.Jobs,
		VerifyExisting: o.VerifyExisting,
		AllOrNothing:   o.AllOrNothing,
		BlobStarted: func(b tree.Blob) {
			if o.Progress != nil {
				o.Progress.BlobStart(b.Digest, b.Size)
			}
		},
		BlobDone: func(b tree.Blob, res tree.BlobResult, err error) {
			if o.Progress != nil {
				o.Progress.BlobDone(b.Digest, res.Outcome, err)
			}
			if err == nil {
				o.Log.Debug("blob", "digest", b.Digest, "outcome", outcomeName(res.Outcome), "bytes", res.Size)
			}
		},
		ImageDone: finish,
	})
	if err != nil {
		return err
	}
	if rep.Completed > 0 {
		o.Log.Info("completed tag moves a crash interrupted", "count", rep.Completed)
	}
	if rep.SweptTemps > 0 {
		o.Log.Info("removed stale temporary files", "count", rep.SweptTemps)
	}
	// A Publisher that does not call ImageDone has them all done here.
	for i, res := range rep.Images {
		finish(i, res)
	}
	return nil
}

// published records what the tree did for im.
func (im *image) published(res tree.Published, start time.Time, o Options) {
	if res.Err != nil {
		im.fail(res.Err)
		return
	}
	for _, b := range res.Blobs {
		im.sum.count(b)
	}
	im.sum.Elapsed = res.Tagged.Sub(start)
	if im.pin {
		o.Log.Debug("pinned", "repo", im.dest.Repo, "digest", im.plan.top.Digest, "media_type", im.plan.top.MediaType)
		return
	}
	o.Log.Debug("tagged", "repo", im.dest.Repo, "tag", im.dest.Tag, "digest", im.plan.top.Digest, "media_type", im.plan.top.MediaType)
}

// treeImage is what the tree publishes for im: its blobs, read from its
// source with the progress counted, its manifests and its tag, or for a
// pin its top manifest pinned and no tag.
func treeImage(im *image, o Options) tree.Image {
	p := im.plan
	ti := tree.Image{Repo: im.dest.Repo, Tag: im.dest.Tag, Variants: p.variants}
	if im.pin {
		ti.Tag, ti.Variants, ti.Pin = "", nil, p.top.Digest
	}
	for _, b := range p.blobs {
		ti.Blobs = append(ti.Blobs, tree.Blob{Digest: b.Digest, Size: b.Size, Fetch: func(ctx context.Context) (io.ReadCloser, error) {
			rc, err := im.s.Blob(ctx, b)
			if err != nil {
				return nil, err
			}
			return &countingReader{rc: rc, d: b.Digest, p: o.Progress}, nil
		}})
	}
	for _, m := range p.manifests {
		ti.Manifests = append(ti.Manifests, tree.Manifest{Digest: m.Digest, MediaType: m.MediaType, Raw: m.Raw, Subject: m.Subject})
	}
	return ti
}
