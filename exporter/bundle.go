package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// A bundle (package bundle) is a source too: its descriptor names the
// tags it publishes, its manifests and configs come first in the stream
// and are held in memory, and its other blobs are read once, in the
// bundle's order, during the tree's Publish (PublishOptions.Stage): each
// blob an image needs and the tree lacks is staged by the tree, which
// hashes it on its way to the disk, and the others are checked by the
// bundle reader. Every member is so checked against its digest exactly
// once, and only once the whole bundle has been read and checked does
// Publish move a blob into place, a rename: a damaged bundle, on stdin
// too, publishes nothing.

// BundleTree is what loading a bundle needs of the tree: the publisher's
// role, the digest a tag names now (--on-existing-tag, and a second load
// of the same bundle, which changes nothing), and a View to check that the
// tree holds every blob the bundle leaves out.
type BundleTree interface {
	tree.Publisher
	TagDigest(repo, tag string) (digest.Digest, bool, error)
	Inspect(do func(*tree.View) error) error
}

// OnExisting says what a load does with a tag the tree has already,
// naming another manifest than the bundle's. A tag naming the bundle's
// manifest already is unchanged, whatever the choice.
type OnExisting int

const (
	// Overwrite moves the tag to the bundle's manifest, as export does.
	Overwrite OnExisting = iota
	// Skip leaves the tag as it is and publishes the bundle's other tags.
	Skip
	// Fail refuses the whole bundle before anything is written.
	Fail
)

// ParseOnExisting parses --on-existing-tag.
func ParseOnExisting(s string) (OnExisting, error) {
	switch s {
	case "overwrite", "":
		return Overwrite, nil
	case "skip":
		return Skip, nil
	case "fail":
		return Fail, nil
	}
	return 0, fmt.Errorf("--on-existing-tag %q: want overwrite, skip or fail", s)
}

// LoadOptions tune LoadBundle: the export options (Jobs and AllOrNothing
// are set by the load: the blobs are staged one at a time as the stream
// hands them out, and every tag of the bundle moves or none does) and
// what to do with tags the tree has already.
type LoadOptions struct {
	Options
	OnExisting OnExisting
}

// LoadReport is what LoadBundle did.
type LoadReport struct {
	Bundle digest.Digest `json:"bundle"`
	// Images are the tags published or unchanged, one summary each.
	Images []*Summary `json:"images"`
	// Unchanged are the REPO:TAG that named the bundle's manifests
	// already, before the load.
	Unchanged []string `json:"unchanged,omitempty"`
	// Skipped are the REPO:TAG left as they were (OnExisting Skip).
	Skipped []string `json:"skipped,omitempty"`
	// Carried is what the bundle carries (its members' bytes); Full the
	// images' full size; Written the blob bytes written into the tree
	// (less than Carried when the tree held some already).
	Carried int64 `json:"bytes_carried"`
	Full    int64 `json:"bytes_full"`
	Written int64 `json:"bytes_written"`
}

// MissingError is the refusal of a bundle whose needed blobs the tree
// does not hold: nothing was written.
type MissingError struct {
	Missing []bundle.Needed
}

func (e *MissingError) Error() string {
	count, list := missingBlobs(e.Missing)
	return fmt.Sprintf("the tree lacks %s the bundle needs (it was made for a tree that holds them; nothing was written): %s", count, list)
}

// missingBlobs words needed blobs for a refusal: "N blob(s)" and their
// digests, space-separated.
func missingBlobs(missing []bundle.Needed) (count, list string) {
	ds := make([]string, len(missing))
	for i, n := range missing {
		ds[i] = string(n.Digest)
	}
	blobs := "blobs"
	if len(ds) == 1 {
		blobs = "blob"
	}
	return fmt.Sprintf("%d %s", len(ds), blobs), strings.Join(ds, " ")
}

// LoadBundle publishes the bundle r reads into root: every tag of it or
// none (tree.PublishOptions.AllOrNothing, export --atomic's journal). It
// refuses before any write a bundle whose needed blobs the tree does not
// hold (a *MissingError listing them), one whose members the tree lacks
// take more than the free space of its file system, and with
// o.OnExisting Fail one whose tags the tree has, naming other manifests.
// It reads r once, to its end, checking every member against its digest
// and that every member and part is there, before it moves any blob into
// a repository: a bundle that fails that check leaves at most files of
// the tree's incoming directory, removed before it returns (or, after a
// crash, by the next writer) — and, in a root with no tree yet, the tree
// Publish makes before staging (a caller that can read the bundle twice
// checks it first there: bundle.Reader.Verify). name names the bundle in
// errors and summaries.
func LoadBundle(ctx context.Context, root BundleTree, r *bundle.Reader, name string, o LoadOptions) (*LoadReport, error) {
	desc := r.Descriptor()
	rep := &LoadReport{Bundle: r.ID(), Carried: desc.Bytes.Members, Full: desc.Bytes.Images}
	held, err := heldBlobs(root)
	if err != nil {
		return rep, err
	}
	if missing := desc.Missing(func(d digest.Digest) bool { return held[d] }); len(missing) > 0 {
		return rep, &MissingError{Missing: missing}
	}
	if err := checkRoom(root.Dir(), desc, held); err != nil {
		return rep, err
	}
	s := &bundleStream{r: r, name: name, head: map[digest.Digest][]byte{}, index: map[digest.Digest]int{}, held: held}
	for i, m := range desc.Members {
		s.index[m.Digest] = i
	}
	var jobs []Job
	var clash []string
	for _, t := range desc.Tags {
		cur, ok, err := root.TagDigest(t.Repo, t.Tag)
		if err != nil {
			return rep, fmt.Errorf("tag %s:%s: %w", t.Repo, t.Tag, err)
		}
		if ok && cur != t.Digest {
			switch o.OnExisting {
			case Skip:
				rep.Skipped = append(rep.Skipped, t.Repo+":"+t.Tag)
				continue
			case Fail:
				clash = append(clash, fmt.Sprintf("%s:%s (names %s)", t.Repo, t.Tag, cur))
				continue
			}
		}
		// A tag that names the bundle's manifest already is published
		// all the same (Job.current left unset): the tree rewrites only
		// what differs, so that costs a few reads, and it finishes what a
		// load a crash interrupted left (the journal of the tag moves,
		// tags/list) — which skipping the image would not.
		j := Job{Source: "bundle:" + name, Dest: t.Repo + ":" + t.Tag, bundle: &bundleImage{s: s, tag: t}}
		if ok && cur == t.Digest {
			rep.Unchanged = append(rep.Unchanged, t.Repo+":"+t.Tag)
		}
		jobs = append(jobs, j)
	}
	if len(clash) > 0 {
		return rep, fmt.Errorf("the tree has tags the bundle would move, and --on-existing-tag is fail (nothing was written): %s", strings.Join(clash, ", "))
	}
	if len(jobs) == 0 {
		// Nothing to load; the bundle is still checked whole, as a load
		// would.
		return rep, r.Verify()
	}
	if err := s.readHead(); err != nil {
		return rep, err
	}
	opts := o.Options
	opts.Jobs, opts.AllOrNothing, opts.Platforms = 1, true, nil
	opts.Progress = s.wrapProgress(opts.Progress)
	sums, errs := ExportEach(ctx, stagingTree{root, s}, jobs, opts)
	if s.err != nil {
		// The bundle's own error, once: not one per image, each naming
		// the bundle again.
		return rep, s.err
	}
	if err := JoinFailures(errs); err != nil {
		return rep, err
	}
	rep.Images = sums
	for _, sum := range sums {
		rep.Written += sum.BytesFetched
	}
	return rep, nil
}

// CheckNeeded refuses, with a *MissingError, a bundle whose needed blobs
// the tree does not hold. A root with no tree yet holds none. LoadBundle
// checks it first; a caller may check it earlier still, before reading
// the rest of the bundle.
func CheckNeeded(root BundleTree, desc *bundle.Descriptor) error {
	if len(desc.Needed) == 0 {
		return nil
	}
	held, err := heldBlobs(root)
	if err != nil {
		return err
	}
	if missing := desc.Missing(func(d digest.Digest) bool { return held[d] }); len(missing) > 0 {
		return &MissingError{Missing: missing}
	}
	return nil
}

// heldBlobs lists the blobs of every repository of the tree: none when
// there is no tree yet.
func heldBlobs(root BundleTree) (map[digest.Digest]bool, error) {
	held := map[digest.Digest]bool{}
	err := root.Inspect(func(v *tree.View) error {
		repos, err := v.StoredRepositories()
		if err != nil {
			return err
		}
		for _, repo := range repos {
			bs, err := v.Blobs(repo)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("repository %s: %w", repo, err)
			}
			for _, b := range bs {
				held[b.Digest] = true
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, tree.ErrNoTree) {
		return nil, err
	}
	return held, nil
}

// checkRoom refuses, before any write, a bundle whose members the tree
// does not hold already take more bytes than the file system of dir has
// free. It is a first check, not a reservation: what others write
// meanwhile can still fill the disk, and the tree then fails the blob
// that does not fit (tagging nothing).
func checkRoom(dir string, desc *bundle.Descriptor, held map[digest.Digest]bool) error {
	var need int64
	for _, m := range desc.Members {
		if !held[m.Digest] {
			need += m.Size
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return nil // a root not made yet: the tree's own checks decide
	}
	if free := int64(st.Bavail) * st.Bsize; need > free {
		return fmt.Errorf("the bundle writes %d bytes the tree does not hold, but the file system of %s has only %d bytes free (nothing was written)", need, dir, free)
	}
	return nil
}

// bundleStream is the bundle being loaded: its manifests and configs, read
// first, and the rest of its members, staged or checked as the reader
// hands them out.
type bundleStream struct {
	r     *bundle.Reader
	name  string
	index map[digest.Digest]int // member → its place in the bundle
	head  map[digest.Digest][]byte
	// held are the blobs the tree held before the load: not staged when
	// the tree still holds them.
	held     map[digest.Digest]bool
	progress Progress
	// started are the blobs staged: their progress began with the stage
	// (stagedProgress).
	started map[digest.Digest]bool

	mu sync.Mutex // one blob read at a time: the members are a stream
	// pending is the first member after the head, read but not yet
	// staged or asked for.
	pending     *bundle.Member
	pendingBody io.Reader
	// err is the error that ended stage: the bundle's.
	err error
}

// readHead reads the manifests and configs into memory (their sizes are
// bounded by the descriptor's validation) and stops at the first other
// blob.
func (s *bundleStream) readHead() error {
	for {
		m, body, err := s.r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if m.Kind == bundle.KindBlob {
			s.pending, s.pendingBody = &m, body
			return nil
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		s.head[m.Digest] = b
	}
}

// stagingTree is the tree a bundle loads into: its Publish stages the
// bundle's blobs first (stage).
type stagingTree struct {
	BundleTree
	s *bundleStream
}

func (t stagingTree) Publish(ctx context.Context, images []tree.Image, o tree.PublishOptions) (*tree.PublishReport, error) {
	o.Stage = t.s.stage
	return t.BundleTree.Publish(ctx, images, o)
}

// stage reads the rest of the bundle, from the first blob after the head
// to its end: each blob an image of the load needs and the tree does not
// hold goes to st, which hashes what it writes (the reader then does not:
// bundle.Reader.Unhashed), and every other member is read through the
// reader, which checks it. It returns once the whole bundle has been read
// and every member found sound, staged ones included (Stager.Wait), or
// with the first thing wrong with it (kept in s.err).
func (s *bundleStream) stage(ctx context.Context, st *tree.Stager) error {
	s.err = s.stageAll(ctx, st)
	return s.err
}

func (s *bundleStream) stageAll(ctx context.Context, st *tree.Stager) error {
	for {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		m, body := s.pending, s.pendingBody
		s.pending, s.pendingBody = nil, nil
		if m == nil {
			next, b, err := s.r.Next()
			if err == io.EOF {
				// Every member read: the staged ones are checked as their
				// hashing ends.
				return s.memberError(st.Wait())
			}
			if err != nil {
				return err
			}
			m, body = &next, b
		}
		if m.Kind == bundle.KindBlob && st.Wants(m.Digest) && (!s.held[m.Digest] || !st.Holds(m.Digest, m.Size)) {
			if err := s.stageBlob(ctx, st, *m); err != nil {
				return err
			}
			continue
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
	}
}

// stageBlob hands member m, the reader's current one, to the tree, which
// checks its digest as it stages it (a mismatch found after Stage
// returned is Wait's).
func (s *bundleStream) stageBlob(ctx context.Context, st *tree.Stager, m bundle.Member) error {
	var rc io.ReadCloser = io.NopCloser(s.r.Unhashed())
	if s.progress != nil {
		s.progress.BlobStart(m.Digest, m.Size)
		s.started[m.Digest] = true
		rc = &countingReader{rc: rc, d: m.Digest, p: s.progress}
	}
	_, err := st.Stage(m.Digest, m.Size, withContext(ctx, rc))
	return s.memberError(err)
}

// memberError says a staged member's refusal as the bundle reader says it
// of the members it checks itself.
func (s *bundleStream) memberError(err error) error {
	var mis *tree.MismatchError
	if !errors.As(err, &mis) {
		return err
	}
	name := "blob " + mis.Digest.String()
	if i, ok := s.index[mis.Digest]; ok {
		name = s.r.Descriptor().Members[i].Name()
	}
	if mis.GotDigest != "" {
		return fmt.Errorf("%s: member %s does not match its digest (its bytes hash to %s)", s.name, name, mis.GotDigest)
	}
	return fmt.Errorf("%s: member %s: %v", s.name, name, err)
}

// wrapProgress is p for the load's Publish: a staged blob's progress
// began as it was staged, and Publish's start of it (a rename) would draw
// it from nothing again.
func (s *bundleStream) wrapProgress(p Progress) Progress {
	s.progress, s.started = p, map[digest.Digest]bool{}
	if p == nil {
		return nil
	}
	sp := stagedProgress{Progress: p, started: s.started}
	if pp, ok := p.(PlanProgress); ok {
		return stagedPlanProgress{sp, pp}
	}
	return sp
}

// stagedProgress drops the second start of a staged blob. Publish starts
// blobs once the stage has returned: started no longer changes then.
type stagedProgress struct {
	Progress
	started map[digest.Digest]bool
}

func (p stagedProgress) BlobStart(d digest.Digest, size int64) {
	if !p.started[d] {
		p.Progress.BlobStart(d, size)
	}
}

// stagedPlanProgress is a stagedProgress of a PlanProgress.
type stagedPlanProgress struct {
	stagedProgress
	pp PlanProgress
}

func (p stagedPlanProgress) Planned(images []PlannedImage) { p.pp.Planned(images) }

// blob opens blob d: from memory for a manifest or config, else by
// reading the stream on to d, skipping the members before it. PushBundle
// reads the blobs so, in the bundle's order. A load stages them all first
// (stage), and Publish asks for one only when it is neither staged nor
// held by the tree: the stream, read to its end by then, has none.
func (s *bundleStream) blob(d digest.Digest) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.head[d]; ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	want, ok := s.index[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: not in bundle %s, and no sound copy in the tree (removed, or damaged, since the check before loading?)", d, s.name)
	}
	for {
		if s.pending == nil {
			m, body, err := s.r.Next()
			if err == io.EOF {
				return nil, fmt.Errorf("blob %s: bundle %s ended before it (read out of the bundle's order, or not staged and no longer in the tree)", d, s.name)
			}
			if err != nil {
				return nil, err
			}
			s.pending, s.pendingBody = &m, body
		}
		m, body := *s.pending, s.pendingBody
		s.pending, s.pendingBody = nil, nil
		if m.Digest == d {
			return io.NopCloser(body), nil
		}
		if s.index[m.Digest] > want {
			return nil, fmt.Errorf("blob %s: bundle %s has passed it (read out of the bundle's order)", d, s.name)
		}
	}
}

// bundleImage is one tag of a bundle, as a source.
type bundleImage struct {
	s   *bundleStream
	tag bundle.Tag
}

func (b *bundleImage) Root(context.Context) ([]byte, string, error) {
	raw, ok := b.s.head[b.tag.Digest]
	if !ok {
		return nil, "", fmt.Errorf("manifest %s: not in bundle %s", b.tag.Digest, b.s.name)
	}
	return raw, b.tag.MediaType, nil
}

func (b *bundleImage) Manifest(_ context.Context, d Descriptor) ([]byte, error) {
	raw, ok := b.s.head[d.Digest]
	if !ok {
		return nil, fmt.Errorf("manifest %s: not in bundle %s", d.Digest, b.s.name)
	}
	return raw, nil
}

func (b *bundleImage) Blob(ctx context.Context, d Descriptor) (io.ReadCloser, error) {
	rc, err := b.s.blob(d.Digest)
	if err != nil {
		return nil, err
	}
	return withContext(ctx, rc), nil
}

func (b *bundleImage) Close() error { return nil }

// planBundleImage plans a job of LoadBundle: its source is the bundle, its
// destination the tag the descriptor names, and its blobs go in the
// bundle's order (those the bundle leaves out first: the tree holds
// them), the order in which they were staged.
func planBundleImage(ctx context.Context, im *image) error {
	b := im.job.bundle
	im.s = b
	im.dest = Dest{Repo: b.tag.Repo, Tag: b.tag.Tag}
	src := SourceRef{Transport: "bundle", Path: b.s.name, Image: im.dest.String()}
	p, err := makePlan(ctx, b, src, nil, 1)
	if err != nil {
		return err
	}
	if p.top.Digest != b.tag.Digest {
		return fmt.Errorf("%s: names %s, the descriptor says %s", src, p.top.Digest, b.tag.Digest)
	}
	at := func(d Descriptor) int {
		if i, ok := b.s.index[d.Digest]; ok {
			return i
		}
		return -1
	}
	slices.SortStableFunc(p.blobs, func(x, y Descriptor) int { return at(x) - at(y) })
	im.plan = p
	im.sum = &Summary{Source: src.String(), Dest: im.dest.String(), Digest: p.top.Digest, MediaType: p.top.MediaType, Manifests: len(p.manifests)}
	return nil
}
