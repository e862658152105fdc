package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// A bundle loads into a registry too (bundle load --to): the far site's
// Harbor, Quay or distribution instead of a tree. The descriptor lists
// the blobs the far side must hold but not which repository holds them,
// so the load asks the registry: a needed blob is looked for (HEAD) in
// each repository of the bundle's tags, then in the repositories the
// caller names (PushOptions.MountFrom, where an earlier load put the
// base), and mounted from the first that holds it (or, where the
// registry declines the mount, copied through from there). Nothing is
// written before every needed blob is found somewhere. Then the bundle's own
// blobs go up in its order, each streamed from the bundle once (checked
// against its digest by the bundle reader as it streams, and by the
// registry, which commits an upload only under the digest it was given)
// into the first repository that needs it and mounted into the others;
// then every manifest, children before the indexes naming them; tags last
// of all, so that a load stopped anywhere before them changes no tag.

// PushTarget is a registry a bundle loads into: docker://HOST[/PREFIX].
type PushTarget struct {
	Registry string // HOST[:PORT]
	// Prefix, when set, is put before every repository the bundle names:
	// PREFIX/REPO.
	Prefix string
}

// ParsePushTarget parses --to docker://HOST[/PREFIX].
func ParsePushTarget(s string) (PushTarget, error) {
	rest, ok := strings.CutPrefix(s, "docker://")
	if !ok {
		return PushTarget{}, fmt.Errorf("--to %q: want docker://HOST[/PREFIX]", s)
	}
	host, prefix, _ := strings.Cut(rest, "/")
	prefix = strings.TrimSuffix(prefix, "/")
	if _, err := name.NewRegistry(host, name.StrictValidation); err != nil || host == "" {
		return PushTarget{}, fmt.Errorf("--to %q: %q is no registry host", s, host)
	}
	if prefix != "" {
		if err := distribution.ValidateRepo(prefix); err != nil {
			return PushTarget{}, fmt.Errorf("--to %q: prefix %q: %v", s, prefix, err)
		}
	}
	return PushTarget{Registry: host, Prefix: prefix}, nil
}

// Repo is where repository repo of a bundle goes in the registry.
func (t PushTarget) Repo(repo string) string {
	if t.Prefix == "" {
		return repo
	}
	return t.Prefix + "/" + repo
}

func (t PushTarget) String() string {
	if t.Prefix == "" {
		return "docker://" + t.Registry
	}
	return "docker://" + t.Registry + "/" + t.Prefix
}

// PushOptions tune PushBundle.
type PushOptions struct {
	// Registry is the access to the destination registry, as a source's
	// (Insecure, Creds, AuthFile, CertDir, UserAgent, Timeout, Limits).
	Registry RegistryOptions
	// MountFrom are repositories, named as the bundle names its own (and
	// put under the target's prefix likewise), that may hold the blobs
	// the bundle needs: where an earlier load put the base.
	MountFrom []string
	Log       *slog.Logger
}

// PushReport is what PushBundle did.
type PushReport struct {
	Bundle digest.Digest `json:"bundle"`
	Target string        `json:"target"`
	// Tags are the REPO:TAG pushed, as the registry names them.
	Tags []string `json:"tags"`
	// Mounted are the blobs mounted into a repository from another (one
	// per repository), Uploaded those uploaded (each once), Present those
	// a repository held already.
	Mounted       int   `json:"blobs_mounted"`
	MountedBytes  int64 `json:"bytes_mounted"`
	Uploaded      int   `json:"blobs_uploaded"`
	UploadedBytes int64 `json:"bytes_uploaded"`
	Present       int   `json:"blobs_present"`
	// Copied are the mounts the registry declined, copied through this
	// host instead (read from the repository holding the blob, put into
	// the other): not in Mounted.
	Copied      int   `json:"blobs_copied"`
	CopiedBytes int64 `json:"bytes_copied"`
	Manifests   int   `json:"manifests"`
	// Carried is what the bundle carries (its members' bytes); Full the
	// images' full size.
	Carried int64 `json:"bytes_carried"`
	Full    int64 `json:"bytes_full"`
}

// mounted counts a mount of size bytes, or its copy when the registry
// declined it.
func (r *PushReport) mounted(copied bool, size int64) {
	if copied {
		r.Copied++
		r.CopiedBytes += size
		return
	}
	r.Mounted++
	r.MountedBytes += size
}

// RegistryMissingError is the refusal of a bundle whose needed blobs no
// repository searched holds: nothing was written.
type RegistryMissingError struct {
	Target   string
	Searched []string // the repositories looked in
	Missing  []bundle.Needed
}

func (e *RegistryMissingError) Error() string {
	count, list := missingBlobs(e.Missing)
	return fmt.Sprintf("%s lacks %s the bundle needs in %s (--mount-from names other repositories to look in; nothing was written): %s",
		e.Target, count, strings.Join(e.Searched, ", "), list)
}

// pushRepo is one repository of the target: what the bundle's tags in it
// need, and what it holds of that.
type pushRepo struct {
	name      string                 // as the registry names it
	manifests []bundle.Member        // in the bundle's order
	blobs     map[digest.Digest]bool // every blob its manifests name
	has       map[digest.Digest]bool // blobs found in it (HEAD), or put there
}

// PushBundle loads the bundle r reads into the registry t: needed blobs
// mounted, the bundle's blobs uploaded (and mounted between its
// repositories), manifests, then tags. It refuses before any write a
// bundle whose needed blobs no repository searched holds (a
// *RegistryMissingError listing them). A tag is put only once every
// manifest of every repository is in: a load that fails before then
// moves no tag. name names the bundle in errors.
func PushBundle(ctx context.Context, t PushTarget, r *bundle.Reader, name string, o PushOptions) (_ *PushReport, err error) {
	defer func() {
		if err != nil {
			err = destFlagsError(err)
		}
	}()
	desc := r.Descriptor()
	rep := &PushReport{Bundle: r.ID(), Target: t.String(), Carried: desc.Bytes.Members, Full: desc.Bytes.Images}
	s := &bundleStream{r: r, name: name, head: map[digest.Digest][]byte{}, index: map[digest.Digest]int{}}
	for i, m := range desc.Members {
		s.index[m.Digest] = i
	}
	if err := s.readHead(); err != nil {
		return rep, err
	}
	repos, order, err := pushPlan(t, desc, s.head)
	if err != nil {
		return rep, err
	}
	var mountFrom []string
	for _, m := range o.MountFrom {
		full := t.Repo(m)
		if err := distribution.ValidateRepo(full); err != nil {
			return rep, fmt.Errorf("--mount-from %s: %v", m, err)
		}
		if repos[full] == nil && !slices.Contains(mountFrom, full) {
			mountFrom = append(mountFrom, full)
		}
	}
	d, err := openDest(ctx, t, order, mountFrom, o)
	if err != nil {
		return rep, err
	}
	defer d.conn.closeIdle()

	// Before any write: what every repository holds of what it needs,
	// and a repository holding each needed blob it lacks.
	needed := map[digest.Digest]bundle.Needed{}
	for _, n := range desc.Needed {
		needed[n.Digest] = n
	}
	for _, name := range order {
		pr := repos[name]
		for _, b := range sortedDigests(pr.blobs) {
			ok, err := d.hasBlob(ctx, name, b)
			if err != nil {
				return rep, err
			}
			if ok {
				pr.has[b] = true
			}
		}
	}
	others := map[string]map[digest.Digest]bool{} // --mount-from repositories: found or not
	source := map[digest.Digest]string{}          // needed blob → a repository holding it
	find := func(b digest.Digest) (string, error) {
		for _, name := range order {
			if repos[name].has[b] {
				return name, nil
			}
		}
		for _, name := range mountFrom {
			if others[name] == nil {
				others[name] = map[digest.Digest]bool{}
			}
			found, asked := others[name][b]
			if !asked {
				var err error
				if found, err = d.hasBlob(ctx, name, b); err != nil {
					return "", err
				}
				others[name][b] = found
			}
			if found {
				return name, nil
			}
		}
		return "", nil
	}
	var missing []bundle.Needed
	for _, n := range desc.Needed {
		src, err := find(n.Digest)
		if err != nil {
			return rep, err
		}
		if src == "" {
			missing = append(missing, n)
			continue
		}
		source[n.Digest] = src
	}
	if len(missing) > 0 {
		slices.SortFunc(missing, func(a, b bundle.Needed) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		return rep, &RegistryMissingError{Target: t.String(), Searched: append(slices.Clone(order), mountFrom...), Missing: missing}
	}

	// Needed blobs, mounted where they are lacking.
	for _, name := range order {
		pr := repos[name]
		for _, b := range sortedDigests(pr.blobs) {
			if _, ok := needed[b]; !ok {
				continue
			}
			if pr.has[b] {
				rep.Present++
				continue
			}
			copied, err := d.mount(ctx, name, b, needed[b].Size, source[b])
			if err != nil {
				return rep, err
			}
			pr.has[b] = true
			rep.mounted(copied, needed[b].Size)
		}
	}
	// The bundle's blobs, in its order: into the first repository that
	// needs one, then mounted from there into the others.
	for _, m := range desc.Members {
		if m.Kind == bundle.KindManifest {
			continue
		}
		var want []string
		from := ""
		for _, name := range order {
			pr := repos[name]
			switch {
			case !pr.blobs[m.Digest]:
			case pr.has[m.Digest]:
				rep.Present++
				if from == "" {
					from = name
				}
			default:
				want = append(want, name)
			}
		}
		if len(want) == 0 {
			continue
		}
		if from == "" {
			from, want = want[0], want[1:]
			body, err := s.blob(m.Digest)
			if err != nil {
				return rep, err
			}
			if err := d.upload(ctx, from, m, body); err != nil {
				return rep, err
			}
			repos[from].has[m.Digest] = true
			rep.Uploaded++
			rep.UploadedBytes += m.Size
		}
		for _, name := range want {
			copied, err := d.mount(ctx, name, m.Digest, m.Size, from)
			if err != nil {
				return rep, err
			}
			repos[name].has[m.Digest] = true
			rep.mounted(copied, m.Size)
		}
	}
	// Manifests by digest, children before the indexes naming them (the
	// bundle's order), in every repository before any tag.
	for _, name := range order {
		for _, m := range repos[name].manifests {
			if err := d.putManifest(ctx, name, m.Digest.String(), m.MediaType, s.head[m.Digest]); err != nil {
				return rep, err
			}
			rep.Manifests++
		}
	}
	for _, tag := range desc.Tags {
		repo := t.Repo(tag.Repo)
		if err := d.putManifest(ctx, repo, tag.Tag, tag.MediaType, s.head[tag.Digest]); err != nil {
			return rep, err
		}
		rep.Tags = append(rep.Tags, repo+":"+tag.Tag)
	}
	return rep, nil
}

// pushPlan lists, per repository of the target, the manifests and blobs
// the bundle's tags in it name, walking each tag's manifests in the
// bundle's head. order is the repositories in the order of the tags.
func pushPlan(t PushTarget, desc *bundle.Descriptor, head map[digest.Digest][]byte) (map[string]*pushRepo, []string, error) {
	members := map[digest.Digest]bundle.Member{}
	index := map[digest.Digest]int{}
	for i, m := range desc.Members {
		members[m.Digest], index[m.Digest] = m, i
	}
	needed := map[digest.Digest]bool{}
	for _, n := range desc.Needed {
		needed[n.Digest] = true
	}
	repos := map[string]*pushRepo{}
	var order []string
	for _, tag := range desc.Tags {
		repo := t.Repo(tag.Repo)
		if err := distribution.ValidateRepo(repo); err != nil {
			return nil, nil, fmt.Errorf("tag %s:%s in %s: %v", tag.Repo, tag.Tag, t, err)
		}
		pr := repos[repo]
		if pr == nil {
			pr = &pushRepo{name: repo, blobs: map[digest.Digest]bool{}, has: map[digest.Digest]bool{}}
			repos[repo] = pr
			order = append(order, repo)
		}
		seen := map[digest.Digest]bool{}
		for _, m := range pr.manifests {
			seen[m.Digest] = true
		}
		todo := []digest.Digest{tag.Digest}
		for len(todo) > 0 {
			md := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if seen[md] {
				continue
			}
			seen[md] = true
			m, ok := members[md]
			if !ok || m.Kind != bundle.KindManifest {
				return nil, nil, fmt.Errorf("tag %s:%s names manifest %s, which the bundle does not carry", tag.Repo, tag.Tag, md)
			}
			refs, err := distribution.ParseReferences(head[md])
			if err != nil {
				return nil, nil, fmt.Errorf("manifest %s: %v", md, err)
			}
			pr.manifests = append(pr.manifests, m)
			todo = append(todo, refs.Children...)
			for _, b := range refs.Blobs {
				if _, ok := members[b]; !ok && !needed[b] {
					return nil, nil, fmt.Errorf("manifest %s names blob %s, which the bundle neither carries nor lists as needed", md, b)
				}
				pr.blobs[b] = true
			}
		}
		slices.SortFunc(pr.manifests, func(a, b bundle.Member) int { return index[a.Digest] - index[b.Digest] })
	}
	return repos, order, nil
}

func sortedDigests(set map[digest.Digest]bool) []digest.Digest {
	out := make([]digest.Digest, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// dest is the destination registry's client: the source's machinery
// (sourceConn: the first request probes the scheme and stands for the
// ping; retries of GET and HEAD; TLS rules, certs.d, limits) with push
// scopes for the target's repositories and pull for those mounted from.
type dest struct {
	reg  name.Registry
	conn *sourceConn
	pool *transportPool
}

func openDest(ctx context.Context, t PushTarget, push, pull []string, o PushOptions) (*dest, error) {
	ro := o.Registry
	opts := []name.Option{name.StrictValidation}
	if ro.Insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(t.Registry, opts...)
	if err != nil {
		return nil, fmt.Errorf("--to %s: %v", t, err)
	}
	keychain, err := destKeychain(ro)
	if err != nil {
		return nil, err
	}
	auth, err := authn.Resolve(ctx, keychain, reg)
	if err != nil {
		return nil, fmt.Errorf("--to %s: credentials: %v", t, err)
	}
	timeout := ro.Timeout
	if timeout <= 0 {
		timeout = DefaultSourceTimeout
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool := &transportPool{}
	inner, err := pool.getWithCerts(ro.Insecure, timeout, ro.base, ro.CertDir)
	if err != nil {
		return nil, err
	}
	inner = &limitedTransport{inner: inner, lim: pool.limiter(reg.RegistryStr(), ro.Limits, log)}
	var tr http.RoundTripper = &retryTransport{inner: inner, policy: defaultRetry, log: log}
	if ro.UserAgent != "" {
		tr = transport.NewUserAgent(tr, ro.UserAgent)
	}
	var scopes []string
	for _, r := range push {
		scopes = append(scopes, reg.Repo(r).Scope(transport.PushScope))
	}
	for _, r := range pull {
		scopes = append(scopes, reg.Repo(r).Scope(transport.PullScope))
	}
	conn := &sourceConn{bare: tr, reg: reg, auth: auth, scopes: scopes, insecure: ro.Insecure, pool: pool}
	return &dest{reg: reg, conn: conn, pool: pool}, nil
}

// destKeychain is keychainFor with the destination's flags named in its
// errors.
func destKeychain(o RegistryOptions) (authn.Keychain, error) {
	switch {
	case o.Creds != "":
		user, pass, _ := strings.Cut(o.Creds, ":")
		if user == "" {
			return nil, errors.New("--dest-creds: empty user name")
		}
		return staticKeychain{authn.FromConfig(authn.AuthConfig{Username: user, Password: pass})}, nil
	case o.AuthFile != "":
		f, err := os.Open(o.AuthFile)
		if err != nil {
			return nil, fmt.Errorf("--dest-authfile: %w", err)
		}
		defer f.Close()
		if _, err := config.LoadFromReader(f); err != nil {
			return nil, fmt.Errorf("--dest-authfile %s: %v", o.AuthFile, err)
		}
		return fileKeychain{o.AuthFile}, nil
	default:
		return authn.DefaultKeychain, nil
	}
}

// url is the URL of path below repository repo; the scheme is the one
// the first request found (https until then, which the first request
// replaces with each scheme it tries).
func (d *dest) url(repo, path string) *url.URL {
	scheme := d.pool.scheme(d.reg.RegistryStr())
	if scheme == "" {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: d.reg.RegistryStr(), Path: "/v2/" + repo + "/" + path}
}

// send sends a request with body (nil for none) of size bytes.
func (d *dest) send(ctx context.Context, method string, u *url.URL, body io.Reader, size int64, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
		req.Header.Set("Content-Type", contentType)
	}
	return d.conn.do(req)
}

// check returns nil when resp has one of codes, else its error (a
// *transport.Error read from at most 64 KiB of body); resp's body is
// closed either way.
func check(resp *http.Response, what string, codes ...int) error {
	defer resp.Body.Close()
	if slices.Contains(codes, resp.StatusCode) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	resp.Body = io.NopCloser(io.LimitReader(resp.Body, 64<<10))
	return registryError(what, transport.CheckError(resp, codes...))
}

// hasBlob asks (HEAD) whether repo holds blob b.
func (d *dest) hasBlob(ctx context.Context, repo string, b digest.Digest) (bool, error) {
	what := fmt.Sprintf("%s/%s@%s", d.reg.RegistryStr(), repo, b)
	resp, err := d.send(ctx, http.MethodHead, d.url(repo, "blobs/"+b.String()), nil, 0, "")
	if err != nil {
		return false, registryError(what, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return false, nil
	}
	if err := check(resp, what, http.StatusOK); err != nil {
		return false, err
	}
	return true, nil
}

// mount mounts blob b, of size bytes, into repo from repository from. A
// registry that declines the mount (one that does not do cross-repository
// mounts, or not between those two) starts an upload instead (202): the
// blob is then copied through this host into that upload — read from
// from, put under its digest, which the registry checks before it
// commits it. copied reports that.
func (d *dest) mount(ctx context.Context, repo string, b digest.Digest, size int64, from string) (copied bool, err error) {
	what := fmt.Sprintf("mounting %s into %s/%s from %s", b, d.reg.RegistryStr(), repo, from)
	u := d.url(repo, "blobs/uploads/")
	u.RawQuery = url.Values{"mount": {b.String()}, "from": {from}}.Encode()
	resp, err := d.send(ctx, http.MethodPost, u, nil, 0, "")
	if err != nil {
		return false, registryError(what, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return false, check(resp, what, http.StatusCreated)
	}
	loc, err := location(resp)
	resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("%s: %v", what, err)
	}
	what = fmt.Sprintf("copying %s (%d bytes) into %s/%s from %s (the registry declined to mount it)", b, size, d.reg.RegistryStr(), repo, from)
	get, err := d.send(ctx, http.MethodGet, d.url(from, "blobs/"+b.String()), nil, 0, "")
	if err != nil {
		return false, registryError(what, err)
	}
	if get.StatusCode != http.StatusOK {
		return false, check(get, what, http.StatusOK)
	}
	defer get.Body.Close()
	return true, d.commit(ctx, loc, b, size, get.Body, what)
}

// commit puts the whole of blob b, size bytes of body, into the upload
// session at loc (monolithic), under the digest the registry checks the
// bytes against before it commits them.
func (d *dest) commit(ctx context.Context, loc *url.URL, b digest.Digest, size int64, body io.Reader, what string) error {
	q := loc.Query()
	q.Set("digest", b.String())
	loc.RawQuery = q.Encode()
	resp, err := d.send(ctx, http.MethodPut, loc, body, size, "application/octet-stream")
	if err != nil {
		return registryError(what, err)
	}
	return check(resp, what, http.StatusCreated)
}

// upload uploads member m into repo: POST for a session, then one PUT of
// the whole blob (monolithic), with the digest the registry checks the
// bytes against before it commits them.
func (d *dest) upload(ctx context.Context, repo string, m bundle.Member, body io.ReadCloser) error {
	defer body.Close()
	what := fmt.Sprintf("uploading %s (%d bytes) into %s/%s", m.Digest, m.Size, d.reg.RegistryStr(), repo)
	resp, err := d.send(ctx, http.MethodPost, d.url(repo, "blobs/uploads/"), nil, 0, "")
	if err != nil {
		return registryError(what, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return check(resp, what, http.StatusAccepted)
	}
	loc, err := location(resp)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	return d.commit(ctx, loc, m.Digest, m.Size, body, what)
}

// location is the upload session URL of a 202, resolved against the
// request's.
func location(resp *http.Response) (*url.URL, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return nil, errors.New("the registry answered 202 without a Location")
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("upload location %q: %v", loc, err)
	}
	return u, nil
}

// putManifest puts raw as repo's manifest ref (a digest or a tag).
func (d *dest) putManifest(ctx context.Context, repo, ref, mediaType string, raw []byte) error {
	what := fmt.Sprintf("putting manifest %s/%s:%s", d.reg.RegistryStr(), repo, ref)
	if strings.HasPrefix(ref, "sha256:") {
		what = fmt.Sprintf("putting manifest %s/%s@%s", d.reg.RegistryStr(), repo, ref)
	}
	resp, err := d.send(ctx, http.MethodPut, d.url(repo, "manifests/"+ref), bytes.NewReader(raw), int64(len(raw)), mediaType)
	if err != nil {
		return registryError(what, err)
	}
	return check(resp, what, http.StatusCreated)
}

// destFlagsError names the destination's flags in err where the source
// machinery it came from names the source's (--src-tls-verify, ...): a
// load into a registry has no source registry, so every such mention is
// about the destination. The original stays in the chain for errors.As.
func destFlagsError(err error) error {
	msg := err.Error()
	if !strings.Contains(msg, "--src-") {
		return err
	}
	return &sourceError{strings.ReplaceAll(msg, "--src-", "--dest-"), err}
}
