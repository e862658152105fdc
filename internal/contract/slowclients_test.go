package contract_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/templates"
)

// slowTimeouts are the timeouts TestSlowClients configures: short, so
// that the test can wait for them, and far below each server's own
// default (Apache 60 s without mod_reqtimeout, nginx 60 s, the embedded
// server 10 s), so that a bound derived from them fails when the
// configuration does not take.
var slowTimeouts = templates.Timeouts{Header: 2 * time.Second, Body: 2 * time.Second, Idle: 2 * time.Second}

// closeSlack is how much later than its configured timeout a server may
// close a connection: timers fire late on a busy machine. It is well
// below the defaults, and it is waited out only when a server fails.
const closeSlack = 5 * time.Second

// TestSlowClients holds a connection the way a slow client does (a
// request line or headers sent in part, or a byte at a time, a body
// announced and never sent, a kept-alive connection left idle) and waits
// for the server to close it, no longer than its configured timeout
// allows plus closeSlack. Meanwhile the server must still answer a normal
// request.
func TestSlowClients(t *testing.T) {
	root := testserver.TempRoot(t)
	contract.Build(t, root)
	to := slowTimeouts
	servers := []slowServer{
		// mod_reqtimeout gives a client that keeps sending up to HeaderMax
		{"Apache", testserver.Apache(t, root, testserver.WithTimeouts(to)), to.HeaderMax(), to.Body, to.Idle},
		{"nginx", testserver.Nginx(t, root, testserver.WithNginxTimeouts(to)), to.Header, to.Body, to.Idle},
		// it refuses a body at once (TestRequestFraming)
		{"embedded", testserver.Embedded(t, root, testserver.WithEmbeddedTimeouts(to)), to.Header, 0, to.Idle},
	}
	header := func(s slowServer) time.Duration { return s.header }
	body := func(s slowServer) time.Duration { return s.body }
	idle := func(s slowServer) time.Duration { return s.idle }
	ping := "GET /v2/ HTTP/1.1\r\nHost: x\r\n"
	tests := []slowClient{
		{"request line, then nothing", "GET /v2/ HT", "", header},
		{"headers, then nothing", ping + "Accept: appl", "", header},
		{"headers a byte at a time", ping + "X-Slow: ", strings.Repeat("x", 1<<10), header},
		{"body announced, never sent", ping + "Content-Length: 100\r\n\r\n", "", body},
		{"idle after a request", ping + "\r\n", "", idle},
	}
	// Every connection at once, whatever -parallel allows: the test lasts
	// as long as its slowest wait, not their sum.
	concurrently(t, servers, func(s slowServer) string { return s.name }, func(t *testing.T, s slowServer) {
		concurrently(t, tests, func(c slowClient) string { return c.name }, func(t *testing.T, tc slowClient) {
			c, err := net.Dial("tcp", strings.TrimPrefix(s.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if tc.trickle != "" {
				go trickle(c, tc.trickle)
			}
			mustPing(t, s.base)
			limit := tc.limit(s)
			err = waitClosed(c, start.Add(limit+closeSlack))
			t.Logf("closed after %v; the configured timeout allows %v", time.Since(start).Round(10*time.Millisecond), limit)
			if err != nil {
				t.Errorf("%v after %v, where the configured timeout allows %v (+%v)", err, time.Since(start).Round(10*time.Millisecond), limit, closeSlack)
			}
		})
	})
}

// slowServer is a server of TestSlowClients and the longest it may keep
// each kind of slow client, by its configuration.
type slowServer struct {
	name, base         string
	header, body, idle time.Duration
}

// slowClient is a way of holding a connection.
type slowClient struct {
	name    string
	send    string // sent at once
	trickle string // then sent a byte at a time, until the server closes
	// limit is the configured timeout that must end it
	limit func(slowServer) time.Duration
}

// concurrently runs f on each of items, each as a subtest of t named by
// name, all at once, and returns when every one has.
func concurrently[T any](t *testing.T, items []T, name func(T) string, f func(*testing.T, T)) {
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Go(func() { t.Run(name(it), func(t *testing.T) { f(t, it) }) })
	}
	wg.Wait()
}

// trickle writes s to c a byte every 200 ms until a write fails or s is
// sent: a client that keeps a header line growing, too slowly for any
// minimum rate.
func trickle(c net.Conn, s string) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for i := range len(s) {
		<-tick.C
		if _, err := io.WriteString(c, s[i:i+1]); err != nil {
			return
		}
	}
}

// mustPing fails t unless the server at base answers /v2/ on a connection
// of its own.
func mustPing(t *testing.T, base string) {
	t.Helper()
	c := &http.Client{Timeout: closeTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(base + "/v2/")
	if err != nil {
		t.Fatalf("a normal request while a slow client holds a connection: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a normal request while a slow client holds a connection: %s", resp.Status)
	}
}

// waitClosed reads c, discarding what the server sends, until the server
// closes it (end of file, or a reset) or deadline passes.
func waitClosed(c net.Conn, deadline time.Time) error {
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, c)
	switch {
	case err == nil, errors.Is(err, syscall.ECONNRESET):
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errors.New("the server still holds the connection")
	default:
		return err
	}
}
