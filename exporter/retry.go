package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// The one retry policy of registry sources. An operation — the ping, a
// token request, a manifest, a blob with the ranged requests that resume
// it — gets retryPolicy.tries tries in a row that fail; a try fails when
// its request fails before a body arrives (see retryCause) or when its
// body is cut (a manifest is then fetched again, a blob resumed from the
// byte it stopped at). Every layer that retries counts in the operation's
// one *tries, so the retries of the request and of the body never
// multiply: three tries are three requests, whichever failed. A blob try
// that brought at least resumeProgress new bytes before it was cut
// starts the count again, so a large blob on a link that drops now and
// then still arrives, while a source that never makes progress is given
// up on after three requests.

// retryPolicy is how many tries an operation gets and how long apart.
type retryPolicy struct {
	// tries is how many failed tries in a row end an operation.
	tries int
	// waits[i] is the wait after the (i+1)th failed try; the last one
	// repeats.
	waits []time.Duration
	// maxRetryAfter caps the wait a Retry-After header asks for.
	maxRetryAfter time.Duration
	// waited, when set, is told of every wait chosen, before it starts
	// (tests record them rather than measure time).
	waited func(retryWait)
}

// retryWait is one wait the policy chose: after failed try number try of
// what, because of cause.
type retryWait struct {
	what  string
	try   int
	wait  time.Duration
	cause string
}

// defaultRetry is the policy README states: three tries, 1 s then 3 s
// apart, a Retry-After honoured up to 30 s.
var defaultRetry = &retryPolicy{
	tries:         3,
	waits:         []time.Duration{time.Second, 3 * time.Second},
	maxRetryAfter: 30 * time.Second,
}

// resumeProgress is how many new bytes a cut blob try must have brought
// for the count of failed tries to start again.
const resumeProgress = 1 << 20

// wait is the wait after failed try number failed (from 1): the policy's
// backoff, raised to retryAfter (at most maxRetryAfter) when the source
// asked for longer.
func (p *retryPolicy) wait(failed int, retryAfter time.Duration) time.Duration {
	w := p.waits[min(failed, len(p.waits))-1]
	return max(w, min(retryAfter, p.maxRetryAfter))
}

// next counts a failed try of t's operation and returns how long to wait
// before the next one, or false when no try is left.
func (p *retryPolicy) next(t *tries, what, cause string, retryAfter time.Duration) (time.Duration, bool) {
	failed := t.fail()
	if failed >= p.tries {
		return 0, false
	}
	w := p.wait(failed, retryAfter)
	if p.waited != nil {
		p.waited(retryWait{what: what, try: failed, wait: w, cause: cause})
	}
	return w, true
}

// tries counts the failed tries of one operation. It is shared by the
// layers that retry the operation through its context (withTries).
type tries struct {
	mu     sync.Mutex
	failed int // failed tries since the last progress
	made   int // failed tries in all, for the error message
}

func (t *tries) fail() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed++
	t.made++
	return t.failed
}

// progress starts the count of failed tries again.
func (t *tries) progress() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = 0
}

// count is how many tries failed in all.
func (t *tries) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.made
}

type triesKey struct{}

// withTries returns ctx carrying a new count of tries for one operation,
// and the count.
func withTries(ctx context.Context) (context.Context, *tries) {
	t := &tries{}
	return context.WithValue(ctx, triesKey{}, t), t
}

// triesOf is the count of tries ctx carries; a new one, for this request
// alone, when it carries none.
func triesOf(ctx context.Context) *tries {
	if t, ok := ctx.Value(triesKey{}).(*tries); ok {
		return t
	}
	return &tries{}
}

type tryOnceKey struct{}

// tryOnce returns ctx asking the retries to send its request once: a
// scheme tried before another fails over to it at once.
func tryOnce(ctx context.Context) context.Context {
	return context.WithValue(ctx, tryOnceKey{}, true)
}

// retriedError is the failure of an operation that was tried more than
// once: err is the last try's.
type retriedError struct {
	err   error
	tries int
}

func (e *retriedError) Error() string { return e.err.Error() + triedSuffix(e.tries) }
func (e *retriedError) Unwrap() error { return e.err }

// Timeout is the last try's: *url.Error asks the error it wraps directly.
func (e *retriedError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

func triedSuffix(n int) string { return fmt.Sprintf(" (tried %d times)", n) }

// triedTimes is how many times the operation that failed with err was
// tried, 1 when it was not retried.
func triedTimes(err error) int {
	var re *retriedError
	if errors.As(err, &re) {
		return re.tries
	}
	return 1
}

// retryTransport tries a GET or HEAD again, as policy says, when it fails
// before a body arrives. It sits below go-containerregistry's ping, token
// and auth transports and above guardedTransport, so every request to a
// source goes through it. The count of tries is the operation's when the
// request's context carries one (withTries), else the request's own. A
// response retried is drained (at most 64 KiB) and closed. When no try
// is left, a response that deserved another becomes its *transport.Error,
// and the last error is wrapped in a *retriedError when there were several
// tries, so that callers name the status and the tries.
type retryTransport struct {
	inner  http.RoundTripper
	policy *retryPolicy
	log    *slog.Logger
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return t.inner.RoundTrip(req)
	}
	ctx := req.Context()
	if _, once := ctx.Value(tryOnceKey{}).(bool); once {
		return t.inner.RoundTrip(req)
	}
	tr := triesOf(ctx)
	for {
		resp, err := t.inner.RoundTrip(req)
		cause, retryAfter := retryCause(ctx, resp, err, time.Now())
		if cause == "" {
			return resp, err
		}
		wait, ok := t.policy.next(tr, req.URL.Redacted(), cause, retryAfter)
		if !ok {
			return nil, giveUp(resp, err, tr.count())
		}
		if resp != nil {
			drain(resp.Body)
		}
		t.log.Warn("retrying", "url", req.URL.Redacted(), "cause", cause, "wait", wait)
		if err := sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// giveUp is the error of a request given up on after n tries: the last
// try's error, or its status as a *transport.Error.
func giveUp(resp *http.Response, err error, n int) error {
	if resp != nil {
		defer resp.Body.Close()
		resp.Body = io.NopCloser(io.LimitReader(resp.Body, 64<<10))
		err = transport.CheckError(resp, http.StatusOK)
	}
	if n > 1 {
		err = &retriedError{err: err, tries: n}
	}
	return err
}

// retryCause says why a try deserves another ("" when it does not), and
// the wait its response asks for with Retry-After. Retried: connections
// refused, reset or closed before a response, timeouts, 408, 429 and
// 500, 502, 503, 504. Never: a cancelled context, TLS and certificate
// failures, refusals of ours (plain HTTP, redirect loops), any other
// status.
func retryCause(ctx context.Context, resp *http.Response, err error, now time.Time) (string, time.Duration) {
	if ctx.Err() != nil {
		return "", 0
	}
	if err != nil {
		if retryableError(err) {
			return oneLine(err.Error()), 0
		}
		return "", 0
	}
	switch resp.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return fmt.Sprintf("HTTP %d", resp.StatusCode), retryAfter(resp.Header.Get("Retry-After"), now)
	}
	return "", 0
}

// retryableError reports a failure of the network that another try may
// not meet.
func retryableError(err error) bool {
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.IsTimeout || dns.IsTemporary
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// maxRetryAfterSeconds keeps a Retry-After of many seconds from
// overflowing a time.Duration; the policy's cap is far below it anyway.
const maxRetryAfterSeconds = 24 * 60 * 60

// retryAfter is the wait a Retry-After header value asks for, in seconds
// or as an HTTP date; 0 when it asks for none or cannot be read.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(min(max(s, 0), maxRetryAfterSeconds)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfterSeconds*time.Second)
	}
	return 0
}

// drain reads what is left of a body, at most 64 KiB, so that its
// connection can be reused, and closes it.
func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, 64<<10))
	rc.Close()
}

// sleep waits for d, or returns ctx's error as soon as it is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
