package exporter

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// What sync asks a registry beyond what an export does: the tags of a
// repository, and the digest a tag names now. Both go through the same
// client as every other request to a source (exporter/remote.go): the
// same TLS rules, retries, timeouts and credentials.

// The tag listing of a repository is bounded: a hostile or broken
// registry cannot make a sync hold unbounded tags or page without end.
const (
	// DefaultMaxTags bounds the tags of one repository a listing takes;
	// a repository with more is refused, not cut (a cut listing would
	// sync a arbitrary part of it).
	DefaultMaxTags = 10000
	// tagsPageSize is the n a listing asks for: distribution serves up
	// to 1000 a page by default, and sends a Link to the next.
	tagsPageSize = 1000
	// maxTagsPageBytes bounds one page of a listing: a thousand tags of
	// 128 bytes, quoted, are 131 kB.
	maxTagsPageBytes = 4 << 20
)

// Repository is a docker:// repository, opened to list its tags and ask
// what they name. Close it after use.
type Repository struct {
	r    *registry
	name string // HOST/REPO
}

// OpenRepository opens repo, HOST[:PORT]/REPO, with o. It sends nothing:
// the repository's first request (a listing, a HEAD) authenticates, when
// its answer asks for credentials.
func OpenRepository(ctx context.Context, repo string, o RegistryOptions) (*Repository, error) {
	if _, err := name.NewRepository(repo, name.StrictValidation); err != nil {
		return nil, fmt.Errorf("repository %q: %v", repo, err)
	}
	src, err := ParseSource("docker://" + repo + ":latest")
	if err != nil {
		return nil, err
	}
	r, err := openRegistry(ctx, src, o)
	if err != nil {
		// openRegistry names the reference it was given, with a tag
		// nobody asked for.
		if se, ok := err.(*sourceError); ok {
			return nil, &sourceError{strings.Replace(se.msg, repo+":latest", repo, 1), se.err}
		}
		return nil, err
	}
	return &Repository{r: r, name: repo}, nil
}

// at is r reading ref, a reference in r's repository, through r's
// client: no new ping or token. Closing it closes only idle connections,
// as closing r does.
func (r *registry) at(ref name.Reference) *registry {
	c := *r
	c.ref = ref
	return &c
}

// Name is the repository as opened, HOST/REPO.
func (rp *Repository) Name() string { return rp.name }

// Close releases the repository's idle connections.
func (rp *Repository) Close() error { return rp.r.Close() }

// Tags lists the repository's tags as the registry sends them, following
// its Link headers from page to page, in the order the registry gives.
// More than max tags (DefaultMaxTags when max < 1) is an error, as is a
// page that does not parse, a tag that is not valid, a next page on
// another host or one asked for before: a listing is whole, or it fails.
func (rp *Repository) Tags(ctx context.Context, max int) ([]string, error) {
	if max < 1 {
		max = DefaultMaxTags
	}
	what := "tag listing of " + rp.name
	next := rp.r.url("tags/list")
	next.RawQuery = url.Values{"n": {fmt.Sprint(tagsPageSize)}}.Encode()
	seen := map[string]bool{}
	var tags []string
	for next != nil {
		if seen[next.String()] {
			return nil, fmt.Errorf("%s: the registry links back to a page it sent (%s) after %d tags", what, next.Redacted(), len(tags))
		}
		seen[next.String()] = true
		page, link, err := rp.tagsPage(ctx, next)
		if err != nil {
			if len(tags) > 0 {
				return nil, registryError(fmt.Sprintf("%s (failed after %d tags)", what, len(tags)), err)
			}
			return nil, registryError(what, err)
		}
		for _, t := range page {
			if err := distribution.ValidateTag(t); err != nil {
				return nil, fmt.Errorf("%s: the registry lists %q: %v", what, t, err)
			}
		}
		if tags = append(tags, page...); len(tags) > max {
			return nil, fmt.Errorf("%s: over %d tags, the limit of one repository", what, max)
		}
		if next = nil; link != "" {
			u, err := url.Parse(link)
			if err != nil {
				return nil, fmt.Errorf("%s: the registry's Link to its next page, %q, is no URL", what, link)
			}
			if next = rp.r.url("").ResolveReference(u); next.Host != rp.r.repo.RegistryStr() {
				return nil, fmt.Errorf("%s: the registry's next page is on another host (%s)", what, next.Host)
			}
		}
	}
	return tags, nil
}

// tagsPage GETs one page of a listing: its tags, and the target of its
// Link rel="next" header, "" for the last page.
func (rp *Repository) tagsPage(ctx context.Context, u *url.URL) ([]string, string, error) {
	resp, err := rp.r.do(ctx, http.MethodGet, u, "application/json", "")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTagsPageBytes+1))
	if err != nil {
		return nil, "", err
	}
	if len(b) > maxTagsPageBytes {
		return nil, "", fmt.Errorf("a page of over %d bytes", maxTagsPageBytes)
	}
	var page struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, "", fmt.Errorf("the page does not parse: %v", err)
	}
	return page.Tags, nextLink(resp.Header.Values("Link")), nil
}

// linkNext matches a Link header's next page, as distribution sends it:
// `</v2/REPO/tags/list?last=X&n=N>; rel="next"`.
var linkNext = regexp.MustCompile(`<([^>]*)>\s*;\s*(?:[^,]*;\s*)?rel="?next"?`)

func nextLink(values []string) string {
	for _, v := range values {
		if m := linkNext.FindStringSubmatch(v); m != nil {
			return m[1]
		}
	}
	return ""
}

// Head is the digest tag names now, by one HEAD request: the
// Docker-Content-Digest the registry answers, "" when it sends none (the
// caller must then GET the manifest to know).
func (rp *Repository) Head(ctx context.Context, tag string) (digest.Digest, error) {
	what := rp.name + ":" + tag
	resp, err := rp.r.do(ctx, http.MethodHead, rp.r.url("manifests/"+tag), manifestAccept, "")
	if err != nil {
		return "", registryError(what, err)
	}
	resp.Body.Close()
	h := resp.Header.Get("Docker-Content-Digest")
	if h == "" {
		return "", nil
	}
	d := digest.Digest(h)
	if err := distribution.ValidateDigest(d); err != nil {
		return "", fmt.Errorf("%s: the registry answers a digest that is none (%q)", what, h)
	}
	return d, nil
}

// SyncArg is a sync argument, docker://HOST/REPO[:TAG|@DIGEST],
// containers-storage:[[STORE-SPEC]]NAME[:TAG] or docker-daemon:NAME[:TAG],
// parsed: the registry host, the repository path on it, and the tag (""
// for every tag) or the digest to pin. For a store on this machine
// (Local), Host is the registry host the store's name begins with ("" for
// a name with none: the engine's app).
type SyncArg struct {
	Host, Repo, Tag string
	Digest          digest.Digest
	Local           *LocalStore
}

// Source is the repository: HOST/REPO, or a store's name for it.
func (a SyncArg) Source() string {
	if a.Host == "" {
		return a.Repo
	}
	return a.Host + "/" + a.Repo
}

// syncArgForms names the forms of a sync argument, for errors.
const syncArgForms = "docker://HOST/REPO[:TAG], containers-storage:[[STORE-SPEC]]NAME[:TAG] or docker-daemon:NAME[:TAG]"

// ParseSyncArg parses a sync argument. A digest (REPO@DIGEST) is kept as
// a digest pin; REPO:TAG@DIGEST, which names both, is refused. A store on
// this machine is synced by tag: its name with no tag is every tag the
// store has of it.
func ParseSyncArg(s string) (SyncArg, error) {
	rest, ok := strings.CutPrefix(s, "docker://")
	if !ok {
		if t, local, ok := strings.Cut(s, ":"); ok && (t == transportContainersStorage || t == transportDockerDaemon) {
			return parseLocalSyncArg(s, t, local)
		}
		return SyncArg{}, fmt.Errorf("%q: want %s", s, syncArgForms)
	}
	var pin digest.Digest
	if r, d, ok := strings.Cut(rest, "@"); ok {
		pin = digest.Digest(d)
		if err := distribution.ValidateDigest(pin); err != nil {
			return SyncArg{}, fmt.Errorf("%q: %v", s, err)
		}
		if strings.LastIndex(r, ":") > strings.LastIndex(r, "/") {
			return SyncArg{}, fmt.Errorf("%q: want docker://HOST/REPO[:TAG] or docker://HOST/REPO@DIGEST, not both a tag and a digest", s)
		}
		rest = r
	}
	repoPart, tag := rest, ""
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		repoPart, tag = rest[:i], rest[i+1:]
	}
	repo, err := name.NewRepository(repoPart, name.StrictValidation)
	if err != nil || !strings.Contains(repoPart, "/") {
		return SyncArg{}, fmt.Errorf("%q: want docker://HOST/REPO[:TAG]", s)
	}
	if tag != "" {
		if err := distribution.ValidateTag(tag); err != nil {
			return SyncArg{}, fmt.Errorf("%q: %v", s, err)
		}
	}
	return SyncArg{Host: repo.RegistryStr(), Repo: repo.RepositoryStr(), Tag: tag, Digest: pin}, nil
}

// parseLocalSyncArg parses what follows transport in s, a store on this
// machine's argument: [[STORE-SPEC]]NAME[:TAG] for containers-storage,
// NAME[:TAG] for docker-daemon. An image ID or a digest names no
// repository whose tags to sync.
func parseLocalSyncArg(s, transport, rest string) (SyncArg, error) {
	store := LocalStore{Transport: transport}
	image := rest
	if transport == transportContainersStorage {
		spec, im, err := ParseStoreRef(rest)
		if err != nil {
			return SyncArg{}, fmt.Errorf("%q: %v", s, err)
		}
		store.Store, image = spec, im
	}
	if imageID.MatchString(image) || strings.HasPrefix(image, "sha256:") || strings.Contains(image, "@") {
		return SyncArg{}, fmt.Errorf("%q: a store on this machine is synced by name and tag, not by image ID or digest (want %s:NAME[:TAG])", s, transport)
	}
	repo, tag, err := splitLocalName(image)
	if err != nil {
		return SyncArg{}, fmt.Errorf("%q: %v", s, err)
	}
	host, path := distribution.SplitHost(repo)
	return SyncArg{Host: host, Repo: path, Tag: tag, Local: &store}, nil
}
