package server

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Why a download's progress is read from TCP itself: the write deadline,
// moved forward before every chunk (response.extend), measures how long
// one write blocks, and a write blocks until the kernel's send buffer has
// room. Linux wakes a blocked writer only once a third of that buffer is
// free, and the buffer grows to megabytes on a fast path: a client
// taking a blob steadily but slower than about a third of that buffer per
// writeIdleTimeout (some 20 KiB/s at 60 s and 4 MiB) leaves the writer
// blocked longer than the timeout, and it was cut
// (TestSlowSteadyDownloadCompletes). So while a body is sent, a watchdog
// reads the bytes the client has acknowledged (TCP_INFO) every half
// timeout and moves the deadline forward whenever they grew: only a
// client that takes nothing for writeIdleTimeout is cut.

// connKey is the context key of the connection a request came on.
type connKey struct{}

// withConn is http.Server.ConnContext: it records the connection, for
// the watchdog.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// tcpConn is the TCP connection under c, through TLS and the connection
// limit, or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	for {
		switch cc := c.(type) {
		case *net.TCPConn:
			return cc
		case *tls.Conn:
			c = cc.NetConn()
		case *limitedConn:
			c = cc.Conn
		default:
			return nil
		}
	}
}

// bytesAcked is how many bytes the peer of c has acknowledged.
func bytesAcked(c *net.TCPConn) (uint64, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var acked uint64
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		var info *unix.TCPInfo
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if gerr == nil {
			acked = info.Bytes_acked
		}
	}); err != nil || gerr != nil {
		return 0, false
	}
	return acked, true
}

// watchdog moves a response's write deadline forward while its client
// acknowledges bytes, until stop.
type watchdog struct {
	w    *response
	conn *net.TCPConn

	mu      sync.Mutex
	timer   *time.Timer
	acked   uint64
	stopped bool
}

// watch starts a watchdog for w's body, or returns nil when the request's
// connection is unknown (a handler served outside NewHTTPServer).
func watch(ctx context.Context, w *response) *watchdog {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	tc := tcpConn(c)
	if tc == nil {
		return nil
	}
	acked, ok := bytesAcked(tc)
	if !ok {
		return nil
	}
	d := &watchdog{w: w, conn: tc, acked: acked}
	d.timer = time.AfterFunc(writeIdleTimeout/2, d.check)
	return d
}

func (d *watchdog) check() {
	acked, ok := bytesAcked(d.conn)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if ok && acked > d.acked {
		d.acked = acked
		d.w.extend()
	}
	d.timer.Reset(writeIdleTimeout / 2)
}

func (d *watchdog) stop() {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopped = true
	d.timer.Stop()
}
