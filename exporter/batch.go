package exporter

import (
	"context"
	"errors"
	"fmt"
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
func ExportMany(ctx context.Context, root *tree.Root, jobs []Job, o Options) ([]*Summary, error) {
	sums, errs := exportMany(ctx, root, jobs, o)
	return sums, errors.Join(errs...)
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
	mu     sync.Mutex // guards err and sum's counts
	err    error
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

func exportMany(ctx context.Context, root *tree.Root, jobs []Job, o Options) ([]*Summary, []error) {
	start := time.Now()
	o = o.withDefaults()
	images := make([]*image, len(jobs))
	for i, j := range jobs {
		im := &image{job: j}
		im.ctx, im.cancel = context.WithCancel(ctx)
		defer im.cancel()
		images[i] = im
		if err := planImage(ctx, im, o); err != nil {
			im.fail(err)
		}
		if im.s != nil {
			defer im.s.Close()
		}
	}
	if live(images) {
		if err := publishAll(ctx, root, images, start, o); err != nil {
			for _, im := range images {
				im.fail(err)
			}
		}
	}
	sums, errs := make([]*Summary, len(images)), make([]error, len(images))
	for i, im := range images {
		if errs[i] = im.failed(); errs[i] == nil {
			sums[i] = im.sum
		} else if len(images) > 1 && !names(errs[i], im.job.Source) {
			errs[i] = fmt.Errorf("%s: %w", im.job.Source, errs[i])
		}
	}
	return sums, errs
}

// names reports whether err already names source (with or without its
// transport), so that a batch does not name it twice.
func names(err error, source string) bool {
	msg := err.Error()
	_, rest, _ := strings.Cut(source, "://")
	return strings.Contains(msg, source) || (rest != "" && strings.Contains(msg, rest))
}

func live(images []*image) bool {
	for _, im := range images {
		if im.failed() == nil {
			return true
		}
	}
	return false
}

// planImage opens the job's source and plans it: nothing is written yet.
func planImage(ctx context.Context, im *image, o Options) error {
	src, err := ParseSource(im.job.Source)
	if err != nil {
		return err
	}
	platforms, err := parsePlatforms(o.Platforms)
	if err != nil {
		return err
	}
	s, imageName, err := openSource(ctx, src, o)
	if err != nil {
		return err
	}
	im.s = s
	if im.dest, err = resolveDest(src, imageName, im.job.Dest); err != nil {
		return err
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
	im.sum = &Summary{Source: src.String(), Dest: im.dest.String(), Digest: p.top.Digest, MediaType: p.top.MediaType, Manifests: len(p.manifests)}
	return nil
}

// publishAll writes the batch under the tree lock held shared: every
// blob of every live image, then each image's manifests and tag. An
// image's Elapsed runs from the batch's start to its tag.
func publishAll(ctx context.Context, root *tree.Root, images []*image, start time.Time, o Options) error {
	if err := root.Init(); err != nil {
		return fmt.Errorf("root %s: %w", root.Dir(), err)
	}
	sweepStaleTemps(root, o.Log)
	lock, err := root.LockShared()
	if err != nil {
		return fmt.Errorf("root %s: %w", root.Dir(), err)
	}
	defer lock.Unlock()
	putAllBlobs(ctx, root, images, o)
	for _, im := range images {
		if im.failed() != nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if err := publishManifests(root, im.dest, im.plan, o); err != nil {
			im.fail(err)
			continue
		}
		im.sum.Elapsed = time.Since(start)
	}
	return nil
}

// blobTask is one blob of one image.
type blobTask struct {
	im *image
	b  Descriptor
}

// putAllBlobs transfers the blobs of every live image with o.Jobs
// workers. The first task of each digest comes first, so that the
// others, waiting on its blob lock, only link what it fetched.
func putAllBlobs(ctx context.Context, root *tree.Root, images []*image, o Options) {
	var first, rest []blobTask
	seen := map[digest.Digest]bool{}
	for _, im := range images {
		if im.failed() != nil {
			continue
		}
		for _, b := range im.plan.blobs {
			t := blobTask{im, b}
			if seen[b.Digest] {
				rest = append(rest, t)
			} else {
				seen[b.Digest] = true
				first = append(first, t)
			}
		}
	}
	tasks := make(chan blobTask)
	var wg sync.WaitGroup
	for range o.Jobs {
		wg.Go(func() {
			for t := range tasks {
				if t.im.failed() != nil {
					continue
				}
				outcome, n, err := putBlob(t.im.ctx, root, t.im.s, t.im.dest.Repo, t.b, o)
				if err != nil {
					t.im.fail(err)
					continue
				}
				t.im.mu.Lock()
				t.im.sum.count(root, t.im.dest.Repo, t.b, outcome, n)
				t.im.mu.Unlock()
			}
		})
	}
	for _, t := range append(first, rest...) {
		if ctx.Err() != nil {
			t.im.fail(context.Cause(ctx))
			continue
		}
		tasks <- t
	}
	close(tasks)
	wg.Wait()
}
