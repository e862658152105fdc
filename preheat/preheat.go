// Package preheat warms caching tiers (config nginx --cache-for) before a
// rollout: it resolves tags as a client does, by asking a tier, and then
// GETs every manifest and blob they lead to by digest through each tier,
// so that what a tier caches — content by digest — is there before the
// first node asks for it.
//
// It talks HTTP to our own servers only, never to a source registry: no
// tokens, no TLS options beyond the system's roots, and only the
// distribution API's read paths (/v2/…), which every image-serve server
// and tier answers. Every body is checked against its digest while it is
// read, so a tier warmed with the wrong bytes does not go unnoticed.
package preheat

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// Accept is the Accept header preheat resolves tags with: every manifest
// type a tree stores, as containers/image sends them, so that a tag of a
// multi-architecture image resolves to its index and every child is
// warmed, whichever one a node then picks.
var Accept = func() string {
	var types []string
	for _, t := range distribution.ManifestTypes() {
		types = append(types, t.MediaType)
	}
	return strings.Join(types, ", ")
}()

// A Ref is one image to warm: a repository and a tag or a digest.
type Ref struct {
	Repo   string
	Tag    string        // "" when Digest is set
	Digest digest.Digest // "" when Tag is set
}

func (r Ref) String() string {
	if r.Digest != "" {
		return r.Repo + "@" + r.Digest.String()
	}
	return r.Repo + ":" + r.Tag
}

// ParseRef reads REPO:TAG or REPO@DIGEST, a reference below a tier (no
// host: the tiers are given apart).
func ParseRef(s string) (Ref, error) {
	if repo, d, ok := strings.Cut(s, "@"); ok {
		r := Ref{Repo: repo, Digest: digest.Digest(d)}
		if err := distribution.ValidateRepo(repo); err != nil {
			return Ref{}, fmt.Errorf("%s: %v", s, err)
		}
		if err := distribution.ValidateDigest(r.Digest); err != nil {
			return Ref{}, fmt.Errorf("%s: %v", s, err)
		}
		return r, nil
	}
	repo, tag, ok := distribution.SplitTag(s)
	if !ok {
		return Ref{}, fmt.Errorf("%s: want REPO:TAG or REPO@DIGEST", s)
	}
	if err := distribution.ValidateRepo(repo); err != nil {
		return Ref{}, fmt.Errorf("%s: %v", s, err)
	}
	if err := distribution.ValidateTag(tag); err != nil {
		return Ref{}, fmt.Errorf("%s: %v", s, err)
	}
	return Ref{Repo: repo, Tag: tag}, nil
}

// Object is one manifest or blob to GET through each tier, by digest, in
// a repository that holds it: the first that named it, since a tier
// caches it for every repository at once.
type Object struct {
	Repo     string
	Digest   digest.Digest
	Manifest bool
	Size     int64 // as its parent's descriptor says; 0 for a top manifest
}

// key is what a tier caches o under: its kind and digest, whatever the
// repository (config nginx --cache-for).
func (o Object) key() string {
	if o.Manifest {
		return "manifest " + o.Digest.String()
	}
	return "blob " + o.Digest.String()
}

// path is o's URL path below a tier.
func (o Object) path() string {
	kind := "blobs"
	if o.Manifest {
		kind = "manifests"
	}
	return "/v2/" + o.Repo + "/" + kind + "/" + o.Digest.String()
}

// Options tune a run.
type Options struct {
	// Jobs is how many GETs run at once, over all tiers (default 4).
	Jobs int
	// Client sends the requests (default: a client with no timeout, as a
	// large layer may take long; cancel ctx to stop).
	Client *http.Client
	// Progress, when set, is called after every object of every tier —
	// served, failed, or skipped for a tier that stopped answering — from
	// the goroutine that handled it.
	Progress func(Progress)
}

// Progress is the state of a run after one more object.
type Progress struct {
	Done, Total int   // objects over all tiers
	Bytes       int64 // body bytes received over all tiers
}

// Tier is what one tier served.
type Tier struct {
	URL       string `json:"url"`
	Manifests int    `json:"manifests"`
	Blobs     int    `json:"blobs"`
	Bytes     int64  `json:"bytes"`
	// Error is the first failure through this tier: the tier is not
	// (fully) warm. The other tiers are warmed regardless.
	Error string `json:"error,omitempty"`
}

// Report is what a run did.
type Report struct {
	// Resolved is every ref given, with the digest it resolved to.
	Resolved []Resolved `json:"resolved"`
	// Objects is how many manifests and blobs, distinct by digest, each
	// tier was asked for.
	Objects int    `json:"objects"`
	Tiers   []Tier `json:"tiers"`
}

// Resolved is one ref and the manifest digest it named when resolved.
type Resolved struct {
	Ref    string        `json:"ref"`
	Digest digest.Digest `json:"digest"`
}

// TierError names the tiers a run could not warm (fully).
type TierError struct{ Tiers []Tier }

func (e *TierError) Error() string {
	var parts []string
	for _, t := range e.Tiers {
		parts = append(parts, t.URL+": "+t.Error)
	}
	return "not warmed: " + strings.Join(parts, "; ")
}

// Run resolves refs through the first tier that answers, walks their
// indexes and children, and GETs every manifest and blob by digest through
// each tier in tiers (base URLs, http(s)://HOST[:PORT]). A tier that fails
// is reported in its Tier and in a *TierError returned with the report;
// the others are warmed all the same. A ref the first tier that answers
// cannot resolve (a 404, a manifest that does not parse), or no tier
// answering at all, fails the run before any tier is warmed.
func Run(ctx context.Context, tiers []string, refs []Ref, o Options) (*Report, error) {
	tiers = slices.Clone(tiers)
	if len(tiers) == 0 {
		return nil, errors.New("no tier to warm")
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	for i, t := range tiers {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("tier %q: want http://HOST[:PORT] or https://HOST[:PORT]", t)
		}
		tiers[i] = strings.TrimSuffix(t, "/")
	}
	rep := &Report{Tiers: make([]Tier, len(tiers))}
	for i, t := range tiers {
		rep.Tiers[i].URL = t
	}
	down := make([]bool, len(tiers))
	objs, resolved, err := resolveAll(ctx, o.Client, tiers, refs, rep.Tiers, down)
	if err != nil {
		return nil, err
	}
	rep.Resolved, rep.Objects = resolved, len(objs)
	warm(ctx, o, tiers, objs, rep.Tiers, down)
	if err := ctx.Err(); err != nil {
		return rep, err
	}
	var failed []Tier
	for _, t := range rep.Tiers {
		if t.Error != "" {
			failed = append(failed, t)
		}
	}
	if failed != nil {
		return rep, &TierError{failed}
	}
	return rep, nil
}

// resolveAll walks every ref through the first tier that answers; a tier
// that does not answer at all is marked failed in status and the next is
// tried.
func resolveAll(ctx context.Context, c *http.Client, tiers []string, refs []Ref, status []Tier, down []bool) ([]Object, []Resolved, error) {
	for i, base := range tiers {
		w := &walker{ctx: ctx, c: c, base: base, seen: map[string]bool{}}
		var resolved []Resolved
		var err error
		for _, r := range refs {
			var d digest.Digest
			if d, err = w.ref(r); err != nil {
				break
			}
			resolved = append(resolved, Resolved{r.String(), d})
		}
		var ue *unreachableError
		if errors.As(err, &ue) {
			status[i].Error, down[i] = err.Error(), true
			continue // resolve through the next tier
		}
		if err != nil {
			return nil, nil, err
		}
		return w.objs, resolved, nil
	}
	return nil, nil, fmt.Errorf("no tier answered: %s", status[len(status)-1].Error)
}

// unreachableError is a tier that gave no HTTP answer at all.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// walker collects the objects of refs, each once.
type walker struct {
	ctx  context.Context
	c    *http.Client
	base string
	// seen holds Object.key(): a tier caches content under its digest
	// alone, so one repository's GET warms it for all.
	seen map[string]bool
	objs []Object
}

// maxManifest bounds a manifest body, as a tree does.
const maxManifest = 4 << 20

// ref resolves r and walks what it names.
func (w *walker) ref(r Ref) (digest.Digest, error) {
	ref := r.Digest.String()
	if r.Tag != "" {
		ref = r.Tag
	}
	body, d, err := w.manifest(r.Repo, ref, r.Digest)
	if err != nil {
		return "", fmt.Errorf("%s: %w", r, err)
	}
	if err := w.walk(r.Repo, d, body, 0); err != nil {
		return "", fmt.Errorf("%s: %w", r, err)
	}
	return d, nil
}

// walk adds the manifest d (whose body is body) and what it names.
func (w *walker) walk(repo string, d digest.Digest, body []byte, size int64) error {
	if !w.add(Object{Repo: repo, Digest: d, Manifest: true, Size: size}) {
		return nil
	}
	refs, err := distribution.ParseReferences(body)
	if err != nil {
		return fmt.Errorf("manifest %s: %v", d, err)
	}
	for _, b := range refs.Blobs {
		w.add(Object{Repo: repo, Digest: b})
	}
	for _, child := range refs.Children {
		if w.seen[Object{Repo: repo, Digest: child, Manifest: true}.key()] {
			continue
		}
		cb, _, err := w.manifest(repo, child.String(), child)
		if err != nil {
			return err
		}
		if err := w.walk(repo, child, cb, int64(len(cb))); err != nil {
			return err
		}
	}
	return nil
}

// add records o unless seen; it reports whether o is new.
func (w *walker) add(o Object) bool {
	if w.seen[o.key()] {
		return false
	}
	w.seen[o.key()] = true
	w.objs = append(w.objs, o)
	return true
}

// manifest GETs a manifest by tag or digest, as a client would, and
// returns its body and digest: want when given (checked), else the
// body's own sha256, which is how a tree names it.
func (w *walker) manifest(repo, ref string, want digest.Digest) ([]byte, digest.Digest, error) {
	req, err := http.NewRequestWithContext(w.ctx, http.MethodGet, w.base+"/v2/"+repo+"/manifests/"+ref, nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", Accept)
	resp, err := w.c.Do(req)
	if err != nil {
		return nil, "", &unreachableError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifest+1))
	if err != nil {
		return nil, "", &unreachableError{fmt.Errorf("GET %s: %v", req.URL, err)}
	}
	if len(body) > maxManifest {
		return nil, "", fmt.Errorf("GET %s: manifest larger than %d bytes", req.URL, maxManifest)
	}
	if want == "" {
		want = digest.FromBytes(body)
	} else if want.Validate() != nil || want.Algorithm().FromBytes(body) != want {
		return nil, "", fmt.Errorf("GET %s: body does not match its digest", req.URL)
	}
	return body, want, nil
}

// warm GETs every object through every tier, o.Jobs at a time, and
// records what each tier served in status. A tier that gives no answer
// (down, already when resolving) is asked for nothing more.
func warm(ctx context.Context, o Options, tiers []string, objs []Object, status []Tier, down []bool) {
	type job struct {
		tier int
		obj  Object
	}
	jobs := make(chan job)
	var mu sync.Mutex // status, down
	var done atomic.Int64
	var received atomic.Int64
	total := len(tiers) * len(objs)
	var wg sync.WaitGroup
	for range min(o.Jobs, max(total, 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				mu.Lock()
				skip := down[j.tier]
				mu.Unlock()
				var n int64
				var err error
				if !skip {
					n, err = fetch(ctx, o.Client, tiers[j.tier], j.obj)
					received.Add(n)
				}
				mu.Lock()
				t := &status[j.tier]
				var ue *unreachableError
				switch {
				case skip:
				case err != nil:
					if t.Error == "" {
						t.Error = err.Error()
					}
					down[j.tier] = down[j.tier] || errors.As(err, &ue)
				case j.obj.Manifest:
					t.Manifests++
				default:
					t.Blobs++
				}
				t.Bytes += n
				mu.Unlock()
				if o.Progress != nil {
					o.Progress(Progress{Done: int(done.Add(1)), Total: total, Bytes: received.Load()})
				}
			}
		}()
	}
	// Tier after tier: when tiers stack, warming the nearest first lets
	// the farther ones answer from their cache.
feed:
	for i := range tiers {
		for _, obj := range objs {
			select {
			case jobs <- job{i, obj}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
}

// fetch GETs o through the tier at base, checks the body against o's
// digest, and returns the bytes received.
func fetch(ctx context.Context, c *http.Client, base string, o Object) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+o.path(), nil)
	if err != nil {
		return 0, err
	}
	if o.Manifest {
		req.Header.Set("Accept", Accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, &unreachableError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	h, err := hasher(o.Digest)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %v", req.URL, err)
	}
	if got := hex(h); got != o.Digest.Encoded() {
		return n, fmt.Errorf("GET %s: body does not match its digest", req.URL)
	}
	return n, nil
}

func hasher(d digest.Digest) (hash.Hash, error) {
	switch d.Algorithm() {
	case digest.SHA256:
		return sha256.New(), nil
	case digest.SHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("%s: unsupported digest algorithm", d)
}

func hex(h hash.Hash) string { return fmt.Sprintf("%x", h.Sum(nil)) }

// Tags lists the tags of repo through the tier at base (tags/list), for
// refs given by pattern rather than by name.
func Tags(ctx context.Context, c *http.Client, base, repo string) ([]string, error) {
	if c == nil {
		c = &http.Client{}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/v2/"+repo+"/tags/list", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	l, err := distribution.ParseTagsList(b)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", req.URL, err)
	}
	return slices.Clone(l.Tags), nil
}
