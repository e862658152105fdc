package exporter

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tokenFront puts a token service in front of a registry, as Docker Hub,
// Harbor or Quay do: every /v2/ request needs a bearer token for its
// repository, which /token hands out against user:pass; a request
// without one gets a 401 with the Bearer challenge. It counts what it is
// sent, by kind.
type tokenFront struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]int
}

func startTokenFront(t *testing.T, backend string) *tokenFront {
	f := &tokenFront{seen: map[string]int{}}
	up, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			f.count("token")
			user, pass, ok := r.BasicAuth()
			scope := r.URL.Query().Get("scope")
			if !ok || user != "alice" || pass != "s3cret" || scope == "" {
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"token": "tok " + scope})
			return
		}
		repo := strings.TrimPrefix(r.URL.Path, "/v2/")
		for _, sep := range []string{"/manifests/", "/blobs/", "/tags/", "/referrers/"} {
			if i := strings.Index(repo, sep); i >= 0 {
				repo = repo[:i]
				break
			}
		}
		if r.Header.Get("Authorization") != "Bearer tok repository:"+repo+":pull" {
			f.count("401 " + r.Method + " " + kindOf(r.URL.Path))
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="front",scope="repository:%s:pull"`, f.srv.URL, repo))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		f.count(r.Method + " " + kindOf(r.URL.Path))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func kindOf(path string) string {
	switch {
	case path == "/v2/":
		return "ping"
	case strings.Contains(path, "/manifests/"):
		return "manifests"
	case strings.Contains(path, "/blobs/"):
		return "blobs"
	case strings.Contains(path, "/tags/"):
		return "tags"
	case strings.Contains(path, "/referrers/"):
		return "referrers"
	}
	return path
}

func (f *tokenFront) count(k string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[k]++
}

func (f *tokenFront) take() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.seen
	f.seen = map[string]int{}
	return out
}

// A registry behind a token service: a sync lists, checks and exports
// through the token its first request's 401 called for, with no ping;
// a rerun asks each repository for a token once, and then one HEAD per
// tag. Wrong credentials fail naming the repository.
func TestSyncBehindTokenService(t *testing.T) {
	reg, _ := syncRegistry(t)
	front := startTokenFront(t, reg.Host)
	host := strings.TrimPrefix(front.srv.URL, "http://")
	root := newRoot(t)
	entries := []SyncEntry{
		{Entry: "app", Source: host + "/app", Dest: "mirror/app", Tags: []string{"1.0", "1.1"}},
		{Entry: "tools", Source: host + "/tools", Dest: "mirror/tools"},
	}
	o := syncOptions()
	o.Export.Registry.Creds = "alice:s3cret"
	rep, err := Sync(context.Background(), root, entries, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != SyncSynced {
			t.Errorf("first run: %s %s, want synced", r.Dest, r.Status)
		}
	}
	first := front.take()
	if first["GET ping"] != 0 || first["401 GET ping"] != 0 {
		t.Errorf("first run pinged: %v", first)
	}
	if first["token"] != 2 {
		t.Errorf("first run: %d token requests, want 2 (one per repository): %v", first["token"], first)
	}

	rep, err = Sync(context.Background(), root, entries, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != SyncUnchanged {
			t.Errorf("rerun: %s %s, want unchanged", r.Dest, r.Status)
		}
	}
	// app: a 401 for its first HEAD, a token, the two HEADs; tools: a
	// 401 for its listing, a token, the listing, a HEAD per tag.
	want := map[string]int{"401 HEAD manifests": 1, "401 GET tags": 1, "token": 2, "HEAD manifests": 2 + 2, "GET tags": 1}
	if got := front.take(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rerun requests %v, want %v", got, want)
	}

	o.Export.Registry.Creds = "alice:wrong"
	_, err = Sync(context.Background(), newRoot(t), entries[:1], o)
	if err == nil || !strings.Contains(err.Error(), host+"/app") || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("wrong password: %v, want the repository named and authentication failed", err)
	}
}

// helloFront is a TCP front for a plain-HTTP registry that counts the TLS
// hellos it is sent and answers them as the registry would (a 400 in
// plain HTTP); other connections pass through. It holds each hello until a second one arrives or
// holdFor passes, so that a batch whose first requests each try https
// is caught whatever the scheduling.
type helloFront struct {
	ln     net.Listener
	hangUp bool // close on a hello instead of answering it
	hellos atomic.Int32
	second chan struct{}
	once   sync.Once
}

const holdFor = 2 * time.Second

func startHelloFront(t *testing.T, backend string, hangUp bool) *helloFront {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &helloFront{ln: ln, hangUp: hangUp, second: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c, backend)
		}
	}()
	return f
}

func (f *helloFront) serve(c net.Conn, backend string) {
	defer c.Close()
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 0x16 { // a TLS handshake record
		if f.hellos.Add(1) > 1 {
			f.once.Do(func() { close(f.second) })
		}
		select {
		case <-f.second:
		case <-time.After(holdFor):
		}
		if !f.hangUp {
			// What a plain-HTTP server answers to a TLS hello.
			_, _ = io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\n")
		}
		return
	}
	up, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer up.Close()
	go func() { _, _ = io.Copy(up, br); up.(*net.TCPConn).CloseWrite() }()
	_, _ = io.Copy(c, up)
}

// An insecure registry's scheme is found once per run: the first
// repositories of a batch, starting together, do not each send a TLS
// hello to a registry that speaks plain http (each hello costs a key
// exchange and a connection; a no-op rerun is a handful of HEADs) —
// whether the registry answers the hello in plain HTTP (the others then
// go straight to http) or hangs up (which says nothing of the scheme: the
// others wait for the http try).
func TestInsecureSchemeFoundOnce(t *testing.T) {
	reg, _ := syncRegistry(t)
	for _, hangUp := range []bool{false, true} {
		t.Run(fmt.Sprintf("hangUp=%v", hangUp), func(t *testing.T) {
			front := startHelloFront(t, reg.Host, hangUp)
			host := front.ln.Addr().String()
			var entries []SyncEntry
			for _, tag := range []string{"1.0", "1.1", "2.0-rc1", "latest"} {
				entries = append(entries, SyncEntry{Entry: "app " + tag, Source: host + "/app", Dest: "mirror/app-" + strings.ReplaceAll(tag, ".", "-"), Tags: []string{tag}})
			}
			entries = append(entries, SyncEntry{Entry: "tools", Source: host + "/tools", Dest: "mirror/tools", Tags: []string{"v1", "v2"}})
			o := syncOptions()
			o.Export.Jobs = 4
			syncAll(t, newRoot(t), entries, o)
			if n := front.hellos.Load(); n != 1 {
				t.Errorf("%d TLS hellos for one insecure plain-HTTP registry in one run, want 1", n)
			}
		})
	}
}

// A TLS hello a plain-HTTP server answers is told from one it refuses.
func TestAnswersPlainHTTP(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	_, err := http.Get("https://" + strings.TrimPrefix(plain.URL, "http://") + "/v2/")
	if !answersPlainHTTP(err) {
		t.Errorf("https to a plain-HTTP server: %v, not told as a plain-HTTP answer", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := http.Get("https://" + addr + "/v2/"); err == nil || answersPlainHTTP(err) {
		t.Errorf("https to a closed port: %v, want an error not told as a plain-HTTP answer", err)
	}
}
