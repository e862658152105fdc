package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// plan is everything an export will publish, known before anything is
// written: bad input fails here and leaves the tree untouched.
type plan struct {
	top       *manifest         // what the tag names first
	manifests []*manifest       // children before parents
	blobs     []Descriptor      // unique
	variants  []tree.TagVariant // the tag's type map

	seen      map[digest.Digest]bool // manifests planned or being fetched
	seenBlobs map[digest.Digest]bool
	bytes     int64 // manifest bytes fetched or about to be
	jobs      int   // manifests fetched at once
}

// The image graph is bounded, so a hostile or broken source cannot make an
// export hold unbounded manifests in memory or fetch without end.
const (
	// maxDepth bounds nested indexes, so a cyclic source cannot loop.
	maxDepth = 4
	// maxIndexChildren bounds the entries of one index: real ones list a
	// few platforms, or a few hundred artifacts.
	maxIndexChildren = 1000
	// maxPlanBytes bounds the manifest bytes of one export, checked
	// against declared sizes before anything is fetched.
	maxPlanBytes = 64 << 20
	// maxManifestBlobs bounds the blobs one manifest names (its layers
	// and config): real images have tens of layers, and Docker and
	// containerd stop near 128; every blob costs a request, a lock file
	// and a link.
	maxManifestBlobs = 1000
	// maxPlanBlobs bounds the distinct blobs of one export: a
	// thousand-child index of images each at the layer bound would
	// otherwise be a million fetches.
	maxPlanBlobs = 10000
)

func makePlan(ctx context.Context, s source, src SourceRef, platforms []Platform, jobs int) (*plan, error) {
	raw, labelled, err := s.Root(ctx)
	if err != nil {
		return nil, err
	}
	d := digest.FromBytes(raw)
	if pinned := src.digestOf(); pinned != "" {
		d = pinned.Algorithm().FromBytes(raw)
		if d != pinned {
			return nil, fmt.Errorf("%s: content does not match its digest (got %s)", src, d)
		}
	}
	top, err := parseManifest(raw, d, labelled)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if len(platforms) > 0 {
		if top, err = selectPlatforms(ctx, s, top, platforms); err != nil {
			return nil, err
		}
	}
	p := &plan{top: top, seen: map[digest.Digest]bool{top.Digest: true}, seenBlobs: map[digest.Digest]bool{}, bytes: int64(len(top.Raw)), jobs: max(jobs, 1)}
	if err := p.add(ctx, s, top, 0); err != nil {
		return nil, err
	}
	p.variants = tagVariants(p)
	return p, nil
}

// add walks m depth-first, so children land in p.manifests before m. The
// children of an index are fetched p.jobs at a time, and planned in the
// index's order.
func (p *plan) add(ctx context.Context, s source, m *manifest, depth int) error {
	if len(m.Children) > maxIndexChildren {
		return fmt.Errorf("manifest %s: %d entries, over the limit of %d", m.Digest, len(m.Children), maxIndexChildren)
	}
	if len(m.Blobs) > maxManifestBlobs {
		return fmt.Errorf("manifest %s: %d blobs (layers and config), over the limit of %d", m.Digest, len(m.Blobs), maxManifestBlobs)
	}
	var todo []Descriptor
	for _, c := range m.Children {
		if p.seen[c.Digest] {
			continue
		}
		if depth >= maxDepth {
			return fmt.Errorf("manifest %s: indexes nested deeper than %d", m.Digest, maxDepth)
		}
		if c.Size < 0 || c.Size > tree.MaxManifestSize {
			return fmt.Errorf("manifest %s: %d bytes, over the %d byte limit", c.Digest, c.Size, tree.MaxManifestSize)
		}
		if p.bytes += c.Size; p.bytes > maxPlanBytes {
			return fmt.Errorf("manifest %s: its children add up to over %d bytes of manifests, the limit of one export", m.Digest, maxPlanBytes)
		}
		p.seen[c.Digest] = true
		todo = append(todo, c.Descriptor)
	}
	children, err := fetchManifests(ctx, s, todo, p.jobs)
	if err != nil {
		return err
	}
	for _, child := range children {
		if err := p.add(ctx, s, child, depth+1); err != nil {
			return err
		}
	}
	for _, b := range m.Blobs {
		if !p.seenBlobs[b.Digest] {
			p.seenBlobs[b.Digest] = true
			p.blobs = append(p.blobs, b)
		}
	}
	if len(p.blobs) > maxPlanBlobs {
		return fmt.Errorf("manifest %s: the image names over %d distinct blobs, the limit of one export", m.Digest, maxPlanBlobs)
	}
	p.manifests = append(p.manifests, m)
	return nil
}

// fetchManifests fetches ds, jobs at a time, and returns them in order;
// the first error stops the rest.
func fetchManifests(ctx context.Context, s source, ds []Descriptor, jobs int) ([]*manifest, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]*manifest, len(ds))
	errs := make([]error, len(ds))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, d := range ds {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if out[i], errs[i] = fetchManifest(ctx, s, d); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// fetchManifest reads child d and checks its bytes against the descriptor.
func fetchManifest(ctx context.Context, s source, d Descriptor) (*manifest, error) {
	if d.Size > tree.MaxManifestSize {
		return nil, fmt.Errorf("manifest %s: %d bytes, over the %d byte limit", d.Digest, d.Size, tree.MaxManifestSize)
	}
	raw, err := s.Manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	if got := d.Digest.Algorithm().FromBytes(raw); got != d.Digest {
		return nil, fmt.Errorf("manifest %s: content does not match its digest (got %s)", d.Digest, got)
	}
	if int64(len(raw)) != d.Size {
		return nil, fmt.Errorf("manifest %s: %d bytes, the index says %d", d.Digest, len(raw), d.Size)
	}
	return parseManifest(raw, d.Digest, d.MediaType)
}

// tagVariants is the type map of the tag, by the tree's one quality
// policy (tree.Variants; serving-notes §3.1, §4.3): the top manifest, and
// for an index its linux/amd64 image child as a low-quality fallback.
func tagVariants(p *plan) []tree.TagVariant {
	stored := make(map[digest.Digest]string, len(p.manifests))
	for _, m := range p.manifests {
		stored[m.Digest] = m.MediaType
	}
	var children []tree.IndexChild
	for _, c := range p.top.Children {
		child := tree.IndexChild{Digest: c.Digest, MediaType: stored[c.Digest]}
		if c.Platform != nil {
			child.OS, child.Architecture = c.Platform.OS, c.Platform.Architecture
		}
		children = append(children, child)
	}
	return tree.Variants(tree.TagVariant{Digest: p.top.Digest, MediaType: p.top.MediaType}, children)
}

// ParsePlatforms parses --platform values, each OS/ARCH[/VARIANT].
func ParsePlatforms(specs []string) ([]Platform, error) {
	var out []Platform
	for _, s := range specs {
		parts := strings.Split(s, "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("--platform %q: want OS/ARCH[/VARIANT]", s)
		}
		p := Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) == 3 {
			p.Variant = parts[2]
		}
		out = append(out, p)
	}
	return out, nil
}

func (p Platform) matches(q *Platform) bool {
	return q != nil && p.OS == q.OS && p.Architecture == q.Architecture && (p.Variant == "" || p.Variant == q.Variant)
}

// selectPlatforms narrows an index to the requested platforms: one
// platform yields its child itself, several a new index of those children.
func selectPlatforms(ctx context.Context, s source, top *manifest, platforms []Platform) (*manifest, error) {
	if !distribution.IsIndex(top.MediaType) {
		return top, nil // a single-platform image is what it is
	}
	var keep []indexEntry
	for _, want := range platforms {
		found := false
		for _, c := range top.Children {
			if want.matches(c.Platform) {
				keep = append(keep, c)
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("--platform %s: index %s has no such child (it has %s)", &want, top.Digest, platformList(top.Children))
		}
	}
	if len(keep) == 1 {
		return fetchManifest(ctx, s, keep[0].Descriptor)
	}
	raw, err := filterIndex(top.Raw, keep)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %v", top.Digest, err)
	}
	return parseManifest(raw, digest.FromBytes(raw), top.MediaType)
}

func platformList(cs []indexEntry) string {
	var ps []string
	for _, c := range cs {
		ps = append(ps, c.Platform.String())
	}
	return strings.Join(ps, ", ")
}

// filterIndex rewrites an index to hold only keep, every other field and
// every kept entry as it was.
func filterIndex(raw []byte, keep []indexEntry) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(fields["manifests"], &entries); err != nil {
		return nil, err
	}
	var kept []json.RawMessage
	for _, e := range entries {
		var d Descriptor
		if err := json.Unmarshal(e, &d); err != nil {
			return nil, err
		}
		for _, k := range keep {
			if k.Digest == d.Digest {
				kept = append(kept, e)
				break
			}
		}
	}
	b, err := json.Marshal(kept)
	if err != nil {
		return nil, err
	}
	fields["manifests"] = b
	return json.Marshal(fields)
}
