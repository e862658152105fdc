package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log sink the server and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// getOn sends one GET on c and reads its response.
func getOn(t *testing.T, c net.Conn, r *bufio.Reader, path string) *http.Response {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: registry\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// TestConnectionLimit: past MaxConnections open connections, a new one is
// answered 503 UNAVAILABLE with Retry-After and closed, the limit is
// logged, and a connection that closes makes room again. Guards: the
// embedded server had no connection cap, and 20,000 idle keep-alive
// connections blocked every legitimate request while nginx kept
// answering.
func TestConnectionLimit(t *testing.T) {
	f := build(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, ln, f.root, slog.New(slog.NewTextHandler(&logs, nil)), Options{MaxConnections: 3})
	}()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}

	// Three kept-alive connections, each answered: all three are held.
	var held []net.Conn
	for range 3 {
		c, r := dial()
		if resp := getOn(t, c, r, "/v2/"); resp.StatusCode != http.StatusOK {
			t.Fatalf("connection within the limit: %s", resp.Status)
		}
		held = append(held, c)
	}

	c, r := dial()
	resp := getOn(t, c, r, "/v2/")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), `"code":"UNAVAILABLE"`) || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("past the limit: %s %v %s; want 503 UNAVAILABLE with Retry-After", resp.Status, resp.Header, body)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("the refused connection stays open (%v)", err)
	}
	if !strings.Contains(logs.String(), "connection limit reached") || !strings.Contains(logs.String(), "max_connections=3") {
		t.Errorf("no WARN naming the limit in the log:\n%s", logs.String())
	}

	// One held connection closes; the server notices and gives its slot
	// back: a new connection is served again.
	held[0].Close()
	for deadline := time.Now().Add(time.Minute); ; {
		c, r := dial()
		if resp := getOn(t, c, r, "/v2/"); resp.StatusCode == http.StatusOK {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("no connection served a minute after one of the held ones closed")
		}
	}
}
