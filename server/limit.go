package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/image-serve/image-serve/distribution"
)

// DefaultMaxConnections is how many client connections the embedded
// server holds open at once: far more than a fleet's pulls need at a time
// (each client keeps a few), and far fewer than the file descriptors a
// service gets (LimitNOFILE), so that idle connections a client hoards
// can never starve the others of a descriptor or a goroutine.
const DefaultMaxConnections = 4096

const (
	// refuseTimeout bounds the answer to a connection past the limit: its
	// request is read (so that closing does not reset the connection
	// before the client reads the 503) and answered within it.
	refuseTimeout = 2 * time.Second
	// maxRefusing bounds the connections being answered 503 at once;
	// past it a new one is closed unanswered.
	maxRefusing = 64
	// limitLogEvery is how often the limit's warning is repeated while
	// connections keep being refused.
	limitLogEvery = time.Minute
)

// limitListener accepts at most cap(slots) connections at a time. A
// connection past the limit is answered 503 UNAVAILABLE, with
// Retry-After, and closed, and the limit is logged at WARN: once, then at
// most every limitLogEvery with the number refused meanwhile.
type limitListener struct {
	net.Listener
	slots    chan struct{}
	refusing chan struct{}
	log      *slog.Logger
	// silent closes connections past the limit unanswered (TLS).
	silent bool

	mu       sync.Mutex
	lastLog  time.Time
	refused  atomic.Int64
	response []byte
}

func newLimitListener(ln net.Listener, max int, log *slog.Logger) *limitListener {
	e := distribution.ErrTooManyConnections
	body := e.Body()
	resp := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"+
		"Docker-Distribution-API-Version: registry/2.0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
		e.Status, http.StatusText(e.Status), len(body), body)
	return &limitListener{
		Listener: ln,
		slots:    make(chan struct{}, max),
		refusing: make(chan struct{}, maxRefusing),
		log:      log,
		response: []byte(resp),
	}
}

// Accept returns the next connection within the limit; it answers and
// closes those past it itself.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			l.refuse(c)
		}
	}
}

func (l *limitListener) refuse(c net.Conn) {
	l.refused.Add(1)
	l.warn()
	if l.silent {
		c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close() // already answering as many as it may: no answer
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		// One read takes a registry request's headers, which clients send
		// in one write; what it leaves is dropped with the connection.
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write(l.response)
	}()
}

func (l *limitListener) warn() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); l.lastLog.IsZero() || now.Sub(l.lastLog) >= limitLogEvery {
		l.log.Warn("connection limit reached: answering new connections 503 until some close",
			"max_connections", cap(l.slots), "refused", l.refused.Swap(0))
		l.lastLog = now
	}
}

// limitedConn gives its slot back when closed, once. It forwards the
// TCP connection's ReadFrom, through which net/http sends files with
// sendfile(2), and CloseWrite, with which it ends a connection cleanly.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// net/http sends files through its connection's ReadFrom: without it,
// every blob would be copied through user space.
var _ io.ReaderFrom = (*limitedConn)(nil)
