package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// accessFlushDelay is how long a logged request may wait in the access
// log's buffer: the buffer is written out this long after the first line
// put into it, so a quiet server's last requests reach the file within
// it, and a busy one writes once per buffer or per delay, not per request.
const accessFlushDelay = 200 * time.Millisecond

// accessBufferSize is the access log's buffer: about a hundred lines.
const accessBufferSize = 32 << 10

// An AccessLog writes one line per request: the Combined Log Format with
// the request's duration appended (appendCombined), or one JSON object
// per line (appendJSON). Lines are buffered and written out at most
// accessFlushDelay after they are logged, when the buffer fills, and by
// Close; a request never waits for the file.
type AccessLog struct {
	path string // "" for stdout
	json bool

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	pending bool  // a flush is scheduled
	err     error // the last write error, reported once by Close
	now     func() time.Time
}

// OpenAccessLog opens the access log at path, appending, created 0640 if
// missing; "-" is standard output. JSON selects JSON lines. The file is
// opened now, so that a path that cannot be written is an error at start.
func OpenAccessLog(path string, json bool) (*AccessLog, error) {
	l := &AccessLog{json: json, now: time.Now}
	if path == "-" {
		l.f = os.Stdout
	} else {
		l.path = path
		f, err := openAppend(path)
		if err != nil {
			return nil, err
		}
		l.f = f
	}
	l.w = bufio.NewWriterSize(l.f, accessBufferSize)
	return l, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Reopen writes out what is buffered to the file the log had open, then
// opens its path again: after logrotate renamed the file, the next lines
// go to a new file by the old name. The old file stays open when the path
// cannot be opened, and the error says why. Standard output is not
// reopened.
func (l *AccessLog) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
	old := l.f
	l.f = f
	l.w.Reset(f)
	return old.Close()
}

// Close writes out what is buffered and closes the file (not standard
// output). It returns the first write error the log met, if any.
func (l *AccessLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = err
	}
	if l.path != "" {
		if err := l.f.Close(); err != nil && l.err == nil {
			l.err = err
		}
	}
	return l.err
}

// flush writes out what is buffered; run accessFlushDelay after a line
// found the buffer empty.
func (l *AccessLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = false
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = err
	}
}

// accessRecord is what one request logs.
type accessRecord struct {
	Time      time.Time
	Remote    string
	Method    string
	URI       string
	Proto     string
	Status    int
	Bytes     int64
	Duration  time.Duration
	Referer   string
	UserAgent string
}

// linePool holds the buffers lines are formatted in, outside the lock.
var linePool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// log formats r's line and buffers it.
func (l *AccessLog) log(r *http.Request, status int, bytes int64, start time.Time) {
	rec := accessRecord{
		Time:      start,
		Remote:    clientHost(r.RemoteAddr),
		Method:    r.Method,
		URI:       r.RequestURI,
		Proto:     r.Proto,
		Status:    status,
		Bytes:     bytes,
		Duration:  l.now().Sub(start),
		Referer:   r.Header.Get("Referer"),
		UserAgent: r.Header.Get("User-Agent"),
	}
	bp := linePool.Get().(*[]byte)
	b := (*bp)[:0]
	if l.json {
		b = appendJSON(b, &rec)
	} else {
		b = appendCombined(b, &rec)
	}
	l.write(b)
	*bp = b
	linePool.Put(bp)
}

// write buffers one line and schedules its flush.
func (l *AccessLog) write(line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(line); err != nil && l.err == nil {
		l.err = err
	}
	if !l.pending && l.w.Buffered() > 0 {
		l.pending = true
		time.AfterFunc(accessFlushDelay, l.flush)
	}
}

// clientHost is the host of a RemoteAddr, as %h logs it.
func clientHost(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// clfTime is the Combined Log Format's time, Apache's %t without brackets.
const clfTime = "02/Jan/2006:15:04:05 -0700"

// appendCombined appends rec as a line of the Combined Log Format
// followed by the duration in seconds with millisecond resolution, as
// nginx's
//
//	$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time
//
// writes it: the size is the body's bytes (0 for none), an absent referer
// or user agent is "-", and a quote, a backslash or a byte outside
// printable ASCII in the quoted fields is escaped \xHH, as nginx does.
func appendCombined(b []byte, rec *accessRecord) []byte {
	b = append(b, rec.Remote...)
	b = append(b, " - - ["...)
	b = rec.Time.AppendFormat(b, clfTime)
	b = append(b, "] \""...)
	b = appendEscaped(b, rec.Method)
	b = append(b, ' ')
	b = appendEscaped(b, rec.URI)
	b = append(b, ' ')
	b = appendEscaped(b, rec.Proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(rec.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, rec.Bytes, 10)
	b = append(b, " \""...)
	b = appendEscaped(b, orDash(rec.Referer))
	b = append(b, "\" \""...)
	b = appendEscaped(b, orDash(rec.UserAgent))
	b = append(b, "\" "...)
	b = strconv.AppendFloat(b, rec.Duration.Seconds(), 'f', 3, 64)
	return append(b, '\n')
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

// jsonAccess is the JSON line's schema: the combined format's fields by
// name, the time in RFC 3339 with nanoseconds, the duration in seconds
// (as every duration of --log-format json).
type jsonAccess struct {
	Time      string  `json:"time"`
	Remote    string  `json:"remote_addr"`
	Method    string  `json:"method"`
	URI       string  `json:"uri"`
	Proto     string  `json:"protocol"`
	Status    int     `json:"status"`
	Bytes     int64   `json:"bytes"`
	Duration  float64 `json:"duration"`
	Referer   string  `json:"referer"`
	UserAgent string  `json:"user_agent"`
}

// appendJSON appends rec as one JSON object and a newline. Strings that
// are not valid UTF-8 have their bad bytes replaced by U+FFFD, as
// encoding/json does.
func appendJSON(b []byte, rec *accessRecord) []byte {
	j, err := json.Marshal(jsonAccess{
		Time:      rec.Time.Format(time.RFC3339Nano),
		Remote:    rec.Remote,
		Method:    rec.Method,
		URI:       rec.URI,
		Proto:     rec.Proto,
		Status:    rec.Status,
		Bytes:     rec.Bytes,
		Duration:  rec.Duration.Seconds(),
		Referer:   rec.Referer,
		UserAgent: rec.UserAgent,
	})
	if err != nil { // strings and numbers always marshal
		panic(fmt.Sprintf("server: access record: %v", err))
	}
	b = append(b, j...)
	return append(b, '\n')
}
