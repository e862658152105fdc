package contract_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
)

// TestRequestFraming sends, over one raw TCP connection, a request whose
// framing is in doubt, then a second request, and reads every response
// until the server closes the connection. A request that carries
// both Content-Length and Transfer-Encoding is read one way by a front
// proxy and another by the server behind it, and a second request hidden
// in the first gets its own response (request smuggling): each server
// answers it once and closes. The embedded server, whose reads never have
// a body, answers 400 to any GET or HEAD that carries one and closes;
// Apache and nginx read a well-framed body and answer what follows, as
// recorded here and in docs/http-contract.md. The second request asks
// for the connection to be closed, so every connection ends.
func TestRequestFraming(t *testing.T) {
	root := testserver.TempRoot(t)
	f := contract.Build(t, root)
	servers := []struct{ name, base string }{
		{"Apache", testserver.Apache(t, root)},
		{"nginx", testserver.Nginx(t, root)},
		{"embedded", testserver.Embedded(t, root)},
	}
	next := "GET /v2/" + f.Repo + "/tags/list HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	const (
		ok     = http.StatusOK
		bad    = http.StatusBadRequest
		notImp = http.StatusNotImplemented
	)
	tests := []struct {
		name  string
		first string
		// statuses of the responses, by server, before the connection ends
		want map[string][]int
	}{
		{"Content-Length and Transfer-Encoding",
			"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			map[string][]int{"Apache": {ok}, "nginx": {bad}, "embedded": {bad}}},
		{"HEAD with Content-Length and Transfer-Encoding",
			"HEAD /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			map[string][]int{"Apache": {ok}, "nginx": {bad}, "embedded": {bad}}},
		{"POST with Content-Length and Transfer-Encoding",
			"POST /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			map[string][]int{"Apache": {http.StatusMethodNotAllowed}, "nginx": {bad}, "embedded": {http.StatusMethodNotAllowed}}},
		{"two Content-Lengths",
			"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
			map[string][]int{"Apache": {bad}, "nginx": {bad}, "embedded": {bad}}},
		{"Transfer-Encoding gzip",
			"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
			map[string][]int{"Apache": {bad}, "nginx": {notImp}, "embedded": {notImp}}},
		{"Transfer-Encoding chunked",
			"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			map[string][]int{"Apache": {ok, ok}, "nginx": {ok, ok}, "embedded": {bad}}},
		{"a body",
			"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
			map[string][]int{"Apache": {ok, ok}, "nginx": {ok, ok}, "embedded": {bad}}},
		{"HTTP/1.0 keep-alive with Transfer-Encoding",
			"GET /v2/ HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			map[string][]int{"Apache": {ok, ok}, "nginx": {bad}, "embedded": {ok}}},
		{"HTTP/1.0 keep-alive with a body",
			"GET /v2/ HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
			map[string][]int{"Apache": {ok, ok}, "nginx": {ok, ok}, "embedded": {bad}}},
		// the control: a well-formed pair is answered twice everywhere
		{"no body",
			"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
			map[string][]int{"Apache": {ok, ok}, "nginx": {ok, ok}, "embedded": {ok, ok}}},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					got, err := statusesUntilClose(s.base, tc.first+next)
					if err != nil {
						t.Fatalf("after responses %v: %v", got, err)
					}
					if want := tc.want[s.name]; !slices.Equal(got, want) {
						t.Errorf("responses %v, then the connection closed; want %v", got, want)
					}
				})
			}
		})
	}
}

// closeTimeout bounds how long a server may take to answer and close; a
// server that keeps the connection open fails, it is never waited out.
const closeTimeout = 30 * time.Second

// statusesUntilClose writes raw to a new connection to the server at
// baseURL and returns the status of every response read before the
// server closed it. A reset after a complete response counts as a close:
// a server closing with unread input may send one.
func statusesUntilClose(baseURL, raw string) ([]int, error) {
	c, err := net.Dial("tcp", strings.TrimPrefix(baseURL, "http://"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(closeTimeout)); err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	var statuses []int
	method, _, _ := strings.Cut(raw, " ")
	for {
		if _, err := br.Peek(1); errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return statuses, nil
		} else if err != nil {
			return statuses, fmt.Errorf("connection still open: %w", err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return statuses, fmt.Errorf("reading a response: %w", err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return statuses, fmt.Errorf("reading a response body: %w", err)
		}
		statuses = append(statuses, resp.StatusCode)
		method = http.MethodGet // the second request
	}
}
