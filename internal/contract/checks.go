package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// A check is one assertion on a response; it says what is wrong, or nil.
type check func(r *response) error

func status(want int) check {
	return func(r *response) error {
		if r.status != want {
			return fmt.Errorf("status %d, want %d; body %.200q", r.status, want, r.body)
		}
		return nil
	}
}

// header checks a header's exact value.
func header(name, want string) check {
	return func(r *response) error {
		if got := r.header.Values(name); len(got) != 1 || got[0] != want {
			return fmt.Errorf("%s: %q, want exactly %q", name, got, want)
		}
		return nil
	}
}

// headerHas checks that a comma-separated header lists want, in any case.
func headerHas(name, want string) check {
	return func(r *response) error {
		for _, v := range r.header.Values(name) {
			for _, f := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(f), want) {
					return nil
				}
			}
		}
		return fmt.Errorf("%s: %q, want it to list %q", name, r.header.Values(name), want)
	}
}

func noHeader(name string) check {
	return func(r *response) error {
		if got := r.header.Values(name); len(got) > 0 {
			return fmt.Errorf("%s: %q, want none", name, got)
		}
		return nil
	}
}

func body(want []byte) check {
	return func(r *response) error {
		if !bytes.Equal(r.body, want) {
			return fmt.Errorf("body: %d bytes %.60q, want %d bytes %.60q", len(r.body), r.body, len(want), want)
		}
		return nil
	}
}

func emptyBody(r *response) error {
	if len(r.body) != 0 {
		return fmt.Errorf("body: %d bytes, want none", len(r.body))
	}
	return nil
}

// bodyMatchesDigest checks what a client verifying the digest header
// checks: sha256 of the body equals Docker-Content-Digest.
func bodyMatchesDigest(r *response) error {
	h := r.header.Get("Docker-Content-Digest")
	d, err := digest.Parse(h)
	if err != nil {
		return fmt.Errorf("Docker-Content-Digest %q: %v", h, err)
	}
	if got := d.Algorithm().FromBytes(r.body); got != d {
		return fmt.Errorf("body hashes to %s, Docker-Content-Digest says %s", got, d)
	}
	return nil
}

// content checks the headers of a 200 for b, and its bytes unless the
// request was a HEAD.
func content(method, contentType string, b Blob) []check {
	cs := []check{
		status(http.StatusOK),
		header("Content-Type", contentType),
		header("Docker-Content-Digest", b.Digest.String()),
		header("Content-Length", strconv.Itoa(len(b.Data))),
	}
	if method == http.MethodHead {
		return append(cs, emptyBody)
	}
	return append(cs, body(b.Data), bodyMatchesDigest)
}

const (
	immutable = "public, max-age=31536000, immutable"
	noCache   = "no-cache"
)

// servedByTag is a manifest as a tag answers: revalidated on every use,
// and without validators, which would be those of whatever manifest the tag
// named before (serving-notes §3.12).
func servedByTag(method string, m Manifest) []check {
	return append(content(method, m.MediaType, m.Blob),
		header("Cache-Control", noCache), noHeader("ETag"), noHeader("Last-Modified"))
}

// servedByDigest is a manifest by digest: immutable.
func servedByDigest(method string, m Manifest) []check {
	return append(content(method, m.MediaType, m.Blob), header("Cache-Control", immutable))
}

// servedBlob is a whole blob: raw bytes, never Content-Encoding, which Go
// clients would decode before checking the digest (serving-notes §3.7).
func servedBlob(method string, b Blob) []check {
	return append(content(method, "application/octet-stream", b),
		header("Cache-Control", immutable), header("Accept-Ranges", "bytes"), noHeader("Content-Encoding"))
}

// jsonError is an OCI error response: status, JSON type, the code, and
// not cached. HEAD responses carry no body to decode.
func jsonError(method string, st int, code distribution.ErrorCode) []check {
	cs := []check{status(st), header("Content-Type", "application/json"), header("Cache-Control", "no-store")}
	if method == http.MethodHead {
		return append(cs, emptyBody)
	}
	return append(cs, errorCode(code), noHeader("Alternates"))
}

// anyCode accepts any error code in an error body.
const anyCode distribution.ErrorCode = ""

func errorCode(want distribution.ErrorCode) check {
	return func(r *response) error {
		var e struct {
			Errors []struct {
				Code    distribution.ErrorCode `json:"code"`
				Message string                 `json:"message"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) == 0 {
			return fmt.Errorf("body %.200q is not an OCI error document (%v)", r.body, err)
		}
		if want != anyCode && e.Errors[0].Code != want {
			return fmt.Errorf("error code %s, want %s", e.Errors[0].Code, want)
		}
		return nil
	}
}

// jsonBody decodes the body into v and then runs test on it.
func jsonBody[T any](test func(v T) error) check {
	return func(r *response) error {
		var v T
		if err := json.Unmarshal(r.body, &v); err != nil {
			return fmt.Errorf("body %.200q: %v", r.body, err)
		}
		return test(v)
	}
}

// tagsList checks a tags/list body: the repository and its tags, sorted.
func tagsList(repo string, tags []string) check {
	type list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	return jsonBody(func(l list) error {
		if l.Name != repo || !slices.Equal(l.Tags, tags) {
			return fmt.Errorf("tags/list %+v, want name %q and tags %q (sorted)", l, repo, tags)
		}
		return nil
	})
}

// catalogIs checks a _catalog body: exactly repos.
func catalogIs(repos []string) check {
	type cat struct {
		Repositories []string `json:"repositories"`
	}
	return jsonBody(func(c cat) error {
		if !slices.Equal(c.Repositories, repos) {
			return fmt.Errorf("_catalog %q, want %q", c.Repositories, repos)
		}
		return nil
	})
}

// linkNext checks the RFC 8288 Link to the next page: the listing at
// path, n entries after last (query encoding aside).
func linkNext(path string, n int, last string) check {
	return func(r *response) error {
		const name = "Link"
		v := r.header.Get(name)
		target, params, ok := strings.Cut(v, ";")
		if !ok || strings.TrimSpace(params) != `rel="next"` || !strings.HasPrefix(target, "<") || !strings.HasSuffix(target, ">") {
			return fmt.Errorf("%s: %q, want <…>; rel=\"next\"", name, v)
		}
		u, err := url.Parse(strings.Trim(target, "<>"))
		if err != nil {
			return fmt.Errorf("%s: %q: %v", name, v, err)
		}
		q := u.Query()
		if u.Path != path || q.Get("n") != strconv.Itoa(n) || q.Get("last") != last {
			return fmt.Errorf("%s: %q, want %s?n=%d&last=%s", name, v, path, n, last)
		}
		return nil
	}
}

// servedReferrers is a referrers response listing want: an OCI index,
// revalidated on every use, without validators (the index changes in
// place, like a tag), and as long as the index the tree holds.
func servedReferrers(method string, want []Referrer) []check {
	cs := []check{
		status(http.StatusOK),
		header("Content-Type", MediaTypeOCIIndex),
		header("Content-Length", strconv.Itoa(len(referrersIndex(want).Marshal()))),
		header("Cache-Control", noCache),
		noHeader("ETag"), noHeader("Last-Modified"),
	}
	if method == http.MethodHead {
		return append(cs, emptyBody)
	}
	return append(cs, referrersList(want))
}

func referrersIndex(rs []Referrer) distribution.ReferrersIndex {
	x := distribution.ReferrersIndex{SchemaVersion: 2, MediaType: MediaTypeOCIIndex}
	for _, r := range rs {
		x.Manifests = append(x.Manifests, distribution.ReferrerDescriptor{MediaType: r.MediaType, Digest: r.Digest,
			Size: int64(len(r.Data)), ArtifactType: r.ArtifactType, Annotations: r.Annotations})
	}
	return x
}

// referrersList checks a referrers body as a client reads it: an OCI
// index whose entries are want, in order, each with its media type,
// digest, size, artifactType and annotations.
func referrersList(want []Referrer) check {
	return jsonBody(func(got distribution.ReferrersIndex) error {
		w := referrersIndex(want)
		if w.Manifests == nil {
			w.Manifests = []distribution.ReferrerDescriptor{}
		}
		if fmt.Sprint(got) != fmt.Sprint(w) || got.Manifests == nil {
			return fmt.Errorf("referrers index %+v, want %+v", got, w)
		}
		return nil
	})
}

// bodyContains checks that the body holds s.
func bodyContains(s string) check {
	return func(r *response) error {
		if !strings.Contains(string(r.body), s) {
			return fmt.Errorf("body does not contain %q", s)
		}
		return nil
	}
}

// catalogHas checks a _catalog body: sorted, listing repo.
func catalogHas(repo string) check {
	type cat struct {
		Repositories []string `json:"repositories"`
	}
	return jsonBody(func(c cat) error {
		if !slices.IsSorted(c.Repositories) || !slices.Contains(c.Repositories, repo) {
			return fmt.Errorf("_catalog %q, want it sorted and listing %q", c.Repositories, repo)
		}
		return nil
	})
}
