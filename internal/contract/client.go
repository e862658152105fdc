package contract

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// apiVersion is the header every response of a registry carries, errors
// included: clients probe /v2/ for it, and proxies see it on everything.
const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	apiVersion       = "registry/2.0"
)

// client talks to the server as a registry client would, but shows what
// the server really sent: no transparent gunzip (Go's transport would
// hide a Content-Encoding by decoding it) and no redirects followed (a 301
// on a digest is a failure, not a detour).
type client struct {
	base string
	http *http.Client
}

func newClient(baseURL string) *client {
	return &client{
		base: strings.TrimSuffix(baseURL, "/"),
		http: &http.Client{
			Transport: &http.Transport{DisableCompression: true},
			Timeout:   30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// request is one HTTP request of the contract.
type request struct {
	method string
	path   string
	header http.Header
}

// String names the request in failures, as "GET /v2/… (Accept: …)".
func (r request) String() string {
	s := r.method + " " + r.path
	keys := make([]string, 0, len(r.header))
	for k := range r.header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s += fmt.Sprintf(" (%s: %s)", k, strings.Join(r.header[k], ", "))
	}
	return s
}

// response is what the server answered, body read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r. It fails on transport errors and on a missing API version
// header, which every response of the suite must carry.
func (c *client) do(r request) (*response, error) {
	req, err := http.NewRequest(r.method, c.base+r.path, nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	res := &response{status: resp.StatusCode, header: resp.Header, body: body}
	if got := res.header.Get(apiVersionHeader); got != apiVersion {
		return res, fmt.Errorf("%s: %q, want %q (on every response)", apiVersionHeader, got, apiVersion)
	}
	return res, nil
}
