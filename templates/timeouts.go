package templates

import (
	"fmt"
	"time"
)

// Timeouts bound how long a client may hold a connection without making
// progress: the slow-client (slowloris) protection of a configuration.
// Apache reads each request's line and headers in a worker thread, so
// without them a hundred clients trickling a header byte every few
// seconds hold every worker, and pulls time out; nginx reads without a
// worker of its own, but each such client still holds a connection and
// its buffers. A zero field takes its DefaultTimeouts value; a set one
// must be a whole number of seconds, 1 s or more (httpd counts in
// seconds).
type Timeouts struct {
	// Header is how long a client may take to send its request line and
	// headers: from the connection's start, or from the first byte of
	// a request that follows on a kept-alive connection. Apache lets a
	// client that keeps sending at least 500 bytes a second take up to
	// HeaderMax (mod_reqtimeout's MinRate); nginx closes at Header.
	Header time.Duration
	// Body is how long a client may pause while sending a request body,
	// which the server reads only to discard it: registry reads have
	// none, but a client may announce one. nginx discards a body it does
	// not need with lingering reads, so Body is its lingering_timeout too.
	Body time.Duration
	// Send is how long one write to a client that has stopped reading
	// may block; a slow reader that keeps reading is never cut. Apache's
	// Timeout also bounds its other waits on a client.
	Send time.Duration
	// Idle is how long a kept-alive connection may wait for its next
	// request.
	Idle time.Duration
}

// DefaultTimeouts are the production values: a client on a slow link has
// 20 s for its headers (Apache: 40 s while it keeps sending), may pause
// 10 s in a body and 60 s in reading a blob, and a kept-alive connection
// waits 15 s for its next request. Registry clients send a few hundred
// bytes of headers in one write, no body, and reconnect when an idle
// connection was closed.
var DefaultTimeouts = Timeouts{
	Header: 20 * time.Second,
	Body:   10 * time.Second,
	Send:   60 * time.Second,
	Idle:   15 * time.Second,
}

// HeaderMax is the longest Apache lets a client take over its request
// line and headers while it keeps sending: twice Header.
func (t Timeouts) HeaderMax() time.Duration { return 2 * t.Header }

// resolve fills in the defaults and checks what is set.
func (t Timeouts) resolve() (Timeouts, error) {
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Header", &t.Header, DefaultTimeouts.Header},
		{"Body", &t.Body, DefaultTimeouts.Body},
		{"Send", &t.Send, DefaultTimeouts.Send},
		{"Idle", &t.Idle, DefaultTimeouts.Idle},
	} {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < time.Second || *f.v%time.Second != 0:
			return t, fmt.Errorf("timeout %s %v: must be a whole number of seconds, 1s or more", f.name, *f.v)
		}
	}
	return t, nil
}

// seconds writes d for a configuration, as a number of seconds.
func seconds(d time.Duration) int64 { return int64(d / time.Second) }
