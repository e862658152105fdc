package tree

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Image is one tag or pin to publish and everything it needs: the blobs
// its manifests name, the manifests (children before the indexes that
// name them) and the variants its type map will offer.
type Image struct {
	// Tag is the tag to move; "" for none, when Pin is set.
	Repo, Tag string
	// Pin, when set, is a manifest to pin (pins.go) once the manifests are
	// in, where the tag would move: with Tag "", the image is kept by its
	// digest alone. An image needs a Tag, a Pin, or both.
	Pin       digest.Digest
	Blobs     []Blob
	Manifests []Manifest
	Variants  []TagVariant
}

// Blob is a blob an Image needs, and how to read it from its source.
type Blob struct {
	Digest digest.Digest
	Size   int64 // -1 when the source does not say (schema1)
	// Fetch opens the blob's bytes. Publish calls it at most once, and
	// only when no repository of the tree holds a sound copy: retrying a
	// source is the source's business.
	Fetch func(ctx context.Context) (io.ReadCloser, error)
}

// Manifest is a manifest an Image needs, stored exactly as Raw.
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Raw       []byte
	Subject   digest.Digest // the manifest it refers to, "" for none
}

// PublishOptions tune Publish. The zero value publishes each image on its
// own with four blob transfers at a time.
type PublishOptions struct {
	// Jobs is how many blobs transfer at once, over all images, and then
	// (without AllOrNothing) how many images of different repositories
	// are published at once.
	Jobs int
	// VerifyExisting re-hashes blobs already in the tree before reusing
	// them; otherwise their size is checked.
	VerifyExisting bool
	// AllOrNothing moves every image's tag or none: when one image fails,
	// no tag moves, and a crash while tags move is completed by the next
	// writer (see docs/crash-safety.md).
	AllOrNothing bool
	// BlobStarted and BlobDone, when set, are called around each blob of
	// each image, from the transferring goroutine.
	BlobStarted func(Blob)
	BlobDone    func(Blob, BlobResult, error)
	// Stage, when set, is called once, under the tree lock held shared
	// and before any blob transfers, with a Stager to hand the blobs of
	// the images to (tree/staged.go): for a source read as one stream that
	// must be checked whole before anything is published. A blob it
	// staged is moved into place instead of fetched. When it returns an
	// error, every image fails with it and nothing is put.
	Stage func(ctx context.Context, s *Stager) error
	// ImageDone, when set, is called once per image as soon as what
	// Publish did for it and for every image before it is final — its
	// tag moved (with AllOrNothing, when the batch's tags moved), its pin
	// was written, or it failed — with images[i]'s result as the report
	// will hold it. Calls are made one at a time, in the order of the
	// images, from the goroutine that called Publish, under the tree
	// lock held shared: a caller says there which image is done (a log
	// record) and returns.
	ImageDone func(i int, res Published)
}

// BlobResult says how one blob of an image came to be in its repository.
type BlobResult struct {
	Digest  digest.Digest
	Outcome BlobOutcome
	// Size is the blob's size in bytes: what was read when fetched, the
	// stored file's size when reused.
	Size int64
}

// Published is what Publish did for one image.
type Published struct {
	Blobs  []BlobResult // in the order of Image.Blobs; empty if it failed
	Tagged time.Time    // when its tag moved (or its pin was written); zero if it failed
	Err    error
}

// PublishReport is what Publish did besides the images.
type PublishReport struct {
	Images []Published // one per image, in order
	// SweptTemps counts temporary files of crashed writers removed first,
	// in the repositories published to.
	SweptTemps int
	// Completed counts publications a crash interrupted, completed first.
	Completed int
}

// Publish makes images servable, in the order the tree's crash-safety
// argument needs. It initialises the tree; when no other writer runs, it
// completes publications a crash interrupted and removes what crashed
// writers left in the repositories it publishes to; then, under the tree lock held shared (so gc waits), it
// runs o.Stage when set, and transfers the blobs of every image with o.Jobs workers — a blob shared
// by several images is fetched once and hard-linked into the other
// repositories, their directories synced once each at the end — then
// writes each image's manifests (with their headers and nginx links), the
// referrers indexes of their subjects, and last its tag (type map, nginx
// links, tags/list, _catalog) and its pin, if it has one. Without
// o.AllOrNothing, o.Jobs workers write the images of different
// repositories at once, those of one repository one after another, in
// order.
//
// An image that fails tags nothing; without o.AllOrNothing the others go
// on. Blobs and manifests it put stay for gc: removing them is unsafe
// while another writer of the same repository may share them. Publish
// returns an error only when it could not start (the tree cannot be
// initialised or locked); each image's own error is in the report.
// Publish never retries a blob: a fetch that fails fails its image.
func (r *Root) Publish(ctx context.Context, images []Image, o PublishOptions) (*PublishReport, error) {
	if o.Jobs < 1 {
		o.Jobs = 4
	}
	if err := r.Init(); err != nil {
		return nil, fmt.Errorf("root %s: %w", r.dir, err)
	}
	rep := &PublishReport{Images: make([]Published, len(images))}
	repos := make([]string, 0, len(images))
	for _, im := range images {
		repos = append(repos, im.Repo)
	}
	if err := r.settleJournals(); err != nil {
		return nil, fmt.Errorf("root %s: %w", r.dir, err)
	}
	rep.Completed, rep.SweptTemps = r.tidyIfAlone(repos)
	l, err := r.lockShared()
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", r.dir, err)
	}
	defer l.Unlock()
	p := &publication{r: r, images: images, o: o, rep: rep, state: make([]imageState, len(images)), syncs: newDirSyncs()}
	for i := range p.state {
		p.state[i].ctx, p.state[i].cancel = context.WithCancel(ctx)
		defer p.state[i].cancel()
	}
	for i, im := range images {
		if err := r.checkRepoPath(im.Repo); err != nil {
			p.fail(i, fmt.Errorf("repository %s: %w", im.Repo, err))
		}
		if im.Tag == "" && im.Pin == "" {
			p.fail(i, fmt.Errorf("repository %s: an image with neither a tag nor a pin", im.Repo))
		}
	}
	if o.Stage != nil {
		p.stage(ctx)
		defer p.stager.discard()
	}
	p.transferBlobs(ctx)
	if err := p.syncs.flush(r); err != nil {
		for i := range images {
			p.fail(i, fmt.Errorf("making the blobs durable: %w", err))
		}
	}
	if o.AllOrNothing {
		p.publishTogether(ctx)
	} else {
		p.publishEach(ctx)
	}
	return rep, nil
}

// tidyIfAlone completes interrupted publications and removes the
// temporary files crashed writers left where this publication writes —
// the incoming blobs, _catalog's directory, repos — when no other writer
// runs (the tree lock is free to take exclusively); with company it
// leaves both to a later writer. It does not walk other repositories: a
// tree of a thousand would cost every export a walk of all of them, and
// gc sweeps them.
func (r *Root) tidyIfAlone(repos []string) (completed, swept int) {
	l, err := r.tryLockExclusive()
	if err != nil || l == nil {
		return 0, 0
	}
	defer l.Unlock()
	completed, _ = r.completeJournals()
	n, _ := r.sweepIncoming()
	swept += n
	n, _ = r.sweepCatalogTemps()
	swept += n
	slices.Sort(repos)
	for _, repo := range slices.Compact(repos) {
		if n, err := r.sweepRepoTemps(repo); err == nil {
			swept += n
		}
	}
	return completed, swept
}

// publication is one Publish on its way.
type publication struct {
	r      *Root
	images []Image
	o      PublishOptions
	rep    *PublishReport
	state  []imageState
	// syncs are the blob directories to sync once all blobs are in, before
	// the first manifest: every directory holding a blob of the batch,
	// whoever put it there.
	syncs *dirSyncs
	// stager holds the blobs o.Stage staged; nil without one.
	stager *Stager
}

// imageState is what one image's transfers share.
type imageState struct {
	ctx    context.Context // cancelled when the image fails
	cancel context.CancelFunc
	mu     sync.Mutex // guards err and the report's Blobs
	err    error
}

func (p *publication) fail(i int, err error) {
	s := &p.state[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.cancel()
	}
}

func (p *publication) failed(i int) error {
	s := &p.state[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// blobTask is one blob of one image.
type blobTask struct{ image, blob int }

// transferBlobs puts the blobs of every image with o.Jobs workers. The
// first task of each digest comes first, so that the others, waiting on
// its blob lock, only link what it fetched.
func (p *publication) transferBlobs(ctx context.Context) {
	var first, rest []blobTask
	seen := map[digest.Digest]bool{}
	for i, im := range p.images {
		p.rep.Images[i].Blobs = make([]BlobResult, len(im.Blobs))
		for j, b := range im.Blobs {
			if seen[b.Digest] {
				rest = append(rest, blobTask{i, j})
			} else {
				seen[b.Digest] = true
				first = append(first, blobTask{i, j})
			}
		}
	}
	tasks := make(chan blobTask)
	var wg sync.WaitGroup
	for range p.o.Jobs {
		wg.Go(func() {
			for t := range tasks {
				p.transfer(t)
			}
		})
	}
	for _, t := range append(first, rest...) {
		if ctx.Err() != nil {
			p.fail(t.image, context.Cause(ctx))
			continue
		}
		tasks <- t
	}
	close(tasks)
	wg.Wait()
}

// transfer puts one blob of one image.
func (p *publication) transfer(t blobTask) {
	if p.failed(t.image) != nil || (p.o.AllOrNothing && p.anyFailed()) {
		return
	}
	im, s := p.images[t.image], &p.state[t.image]
	b := im.Blobs[t.blob]
	if p.o.BlobStarted != nil {
		p.o.BlobStarted(b)
	}
	res, err := p.putBlob(s.ctx, im.Repo, b)
	if p.o.BlobDone != nil {
		p.o.BlobDone(b, res, err)
	}
	if err != nil {
		p.fail(t.image, err)
		return
	}
	s.mu.Lock()
	p.rep.Images[t.image].Blobs[t.blob] = res
	s.mu.Unlock()
}

func (p *publication) putBlob(ctx context.Context, repo string, b Blob) (BlobResult, error) {
	fetch := func() (io.ReadCloser, error) { return b.Fetch(ctx) }
	var (
		outcome BlobOutcome
		n       int64
		err     error
	)
	if sb, ok := p.stager.take(b); ok {
		outcome, n, err = p.r.putStagedBlob(repo, b.Digest, sb, p.o.VerifyExisting, p.syncs)
	} else {
		outcome, n, err = p.r.putBlob(repo, b.Digest, b.Size, p.o.VerifyExisting, fetch, p.syncs)
	}
	if err != nil {
		return BlobResult{Digest: b.Digest, Outcome: outcome}, err
	}
	// A blob another writer put here may not be durable yet.
	_ = p.syncs.sync(p.r, filepath.Dir(p.r.blobPath(repo, b.Digest)))
	return BlobResult{Digest: b.Digest, Outcome: outcome, Size: p.r.blobSize(repo, b, outcome, n)}, nil
}

// blobSize is the size of a blob just put: the bytes read when fetched,
// the declared size when known, else the stored file's.
func (r *Root) blobSize(repo string, b Blob, outcome BlobOutcome, read int64) int64 {
	switch {
	case outcome == BlobFetched:
		return read
	case b.Size >= 0:
		return b.Size
	}
	if fi, err := r.stat(r.blobPath(repo, b.Digest)); err == nil {
		return fi.Size()
	}
	return 0
}

func (p *publication) anyFailed() bool {
	for i := range p.images {
		if p.failed(i) != nil {
			return true
		}
	}
	return false
}

// publishEach writes each image's manifests and tag (and pin); one that
// failed is skipped. Publishing an image is a chain of small files, each
// renamed and its directory synced: latency, not work. So the images of
// different repositories are published concurrently, by o.Jobs workers,
// while the images of one repository are published by one worker, one
// after another in the order given — a later image may move the same tag,
// or name a manifest an earlier one put. Each image's own steps keep
// their order. The files shared across repositories stay written under
// the locks that guard them against other processes: the catalog (and
// its page) under the catalog lock, which one worker at a time asks for,
// so that workers queue on a mutex rather than poll a flock as another
// process's would (locks.go). Each image is reported (finish) from this
// goroutine, in the order of the images, once it and every image before
// it are done.
func (p *publication) publishEach(ctx context.Context) {
	done := make([]chan error, len(p.images))
	for i := range done {
		done[i] = make(chan error, 1)
	}
	var groups [][]int // image indexes by repository, in order of first appearance
	group := map[string]int{}
	for i, im := range p.images {
		g, ok := group[im.Repo]
		if !ok {
			g = len(groups)
			group[im.Repo] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	work := make(chan []int, len(groups))
	for _, g := range groups {
		work <- g
	}
	close(work)
	var catalog sync.Mutex
	var wg sync.WaitGroup
	for range min(p.o.Jobs, len(groups)) {
		wg.Go(func() {
			for g := range work {
				for _, i := range g {
					done[i] <- p.publishOne(ctx, i, &catalog)
				}
			}
		})
	}
	for i := range p.images {
		p.finish(i, <-done[i])
	}
	wg.Wait()
}

// publishOne writes image i's manifests, then its tag, then its pin, and
// says how it went; catalog is held around the refresh of the catalog.
func (p *publication) publishOne(ctx context.Context, i int, catalog *sync.Mutex) error {
	if err := p.failed(i); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	im := p.images[i]
	err := p.r.putManifests(im)
	if err == nil && im.Tag != "" {
		err = p.r.moveTag(im.Repo, im.Tag, im.Variants)
		if err == nil {
			catalog.Lock()
			err = p.r.refreshCatalogFor(im.Repo)
			catalog.Unlock()
		}
	}
	if err == nil && im.Pin != "" {
		err = p.r.putPin(im.Repo, im.Pin)
	}
	return err
}

// publishTogether writes every image's manifests, and only when all of
// them are in moves the tags, as one journalled step, then writes the
// pins: a pin moves nothing a server serves, and a crash before it is
// written leaves the image as if its publication had not finished. An
// image that did not fail itself while another did fails with
// ErrWithOthers.
func (p *publication) publishTogether(ctx context.Context) {
	failed := p.anyFailed()
	for i := 0; !failed && i < len(p.images); i++ {
		err := context.Cause(ctx)
		if err == nil {
			err = p.r.putManifests(p.images[i])
		}
		if err != nil {
			p.fail(i, err)
			failed = true
		}
	}
	var moveErr error
	if !failed {
		var tagged []Image
		for _, im := range p.images {
			if im.Tag != "" {
				tagged = append(tagged, im)
			}
		}
		if len(tagged) > 0 {
			moveErr = p.r.moveTagsTogether(tagged)
		}
		for i := 0; moveErr == nil && i < len(p.images); i++ {
			if im := p.images[i]; im.Pin != "" {
				moveErr = p.r.putPin(im.Repo, im.Pin)
			}
		}
	}
	for i := range p.images {
		switch err := p.failed(i); {
		case err != nil:
			p.finish(i, err)
		case failed:
			p.finish(i, ErrWithOthers)
		default:
			p.finish(i, moveErr)
		}
	}
}

// ErrWithOthers is the error of an image that failed only because another
// image of an AllOrNothing publication did.
var ErrWithOthers = errors.New("not published: another image of the batch failed")

func (p *publication) finish(i int, err error) {
	res := &p.rep.Images[i]
	if err != nil {
		res.Err, res.Blobs = err, nil
	} else {
		res.Tagged = time.Now()
	}
	if p.o.ImageDone != nil {
		p.o.ImageDone(i, *res)
	}
}

// putManifests writes im's manifests and then the referrers index of
// every subject they name, once each: the manifests are in the tree by
// then, so an index never lists one a client cannot fetch.
func (r *Root) putManifests(im Image) error {
	for _, m := range im.Manifests {
		if err := r.putManifest(im.Repo, m.Digest, m.MediaType, m.Raw); err != nil {
			return err
		}
	}
	done := map[digest.Digest]bool{}
	for _, m := range im.Manifests {
		if m.Subject == "" || done[m.Subject] {
			continue
		}
		done[m.Subject] = true
		if err := r.updateReferrers(im.Repo, m.Subject); err != nil {
			return err
		}
	}
	return nil
}

// errNotAll is wrapped by the error of a journalled tag move that was
// undone.
var errNotAll = errors.New("no tag of the batch moved")
