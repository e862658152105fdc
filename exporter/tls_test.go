package exporter

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
)

// TestStrictTLSRefusesPlainHTTP: with TLS verification on (the default),
// a registry on 127.0.0.1 that speaks plain HTTP — which
// go-containerregistry would reach over http after https failed, as it
// does for every loopback and private address — is refused with one line
// naming the flag, before any HTTP request reaches it, and nothing is
// written. With Insecure the same registry exports.
func TestStrictTLSRefusesPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		insecure bool
	}{
		{"strict", false},
		{"insecure", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testregistry.Start(t)
			p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
			var requests atomic.Int64
			reg.Intercept = func(http.ResponseWriter, *http.Request) bool {
				requests.Add(1)
				return false
			}
			root := newRoot(t)
			_, err := Export(context.Background(), root, "docker://"+p.Ref, "", Options{Registry: RegistryOptions{Insecure: tc.insecure}})
			if tc.insecure {
				if err != nil || requests.Load() == 0 {
					t.Fatalf("insecure export: %v after %d requests, want success", err, requests.Load())
				}
				return
			}
			want := reg.Host + "/ns/app:v1: the registry answered plain HTTP where HTTPS is required (--src-tls-verify=false allows it)"
			if err == nil || err.Error() != want {
				t.Fatalf("strict export from a plain-HTTP registry: %v\nwant: %s", err, want)
			}
			if n := requests.Load(); n != 0 {
				t.Errorf("%d HTTP requests reached the plain-HTTP registry, want none", n)
			}
			if _, err := os.Stat(tree.Fixture(root).V2Dir()); err == nil {
				t.Error("the refused export created the tree")
			}
		})
	}
}

// TestSelfSignedRegistry: an HTTPS registry with a certificate nobody
// trusts is refused under TLS verification, before any request reaches
// it, is exported with Insecure, and is exported under verification when
// its certificate is trusted — over HTTPS only, loopback or not.
func TestSelfSignedRegistry(t *testing.T) {
	for _, tc := range []struct {
		name     string
		insecure bool
		trusted  bool
		want     string // "" for success
	}{
		{name: "strict", want: "the registry's certificate is not trusted: x509: certificate signed by unknown authority (--src-tls-verify=false skips the check)"},
		{name: "insecure", insecure: true},
		{name: "strict, trusted", trusted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testregistry.StartTLS(t)
			p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
			var requests, plain atomic.Int64
			reg.Intercept = func(_ http.ResponseWriter, r *http.Request) bool {
				requests.Add(1)
				if r.TLS == nil {
					plain.Add(1)
				}
				return false
			}
			o := RegistryOptions{Insecure: tc.insecure}
			if tc.trusted {
				o.base = reg.Transport()
			}
			_, err := Export(context.Background(), newRoot(t), "docker://"+p.Ref, "", Options{Registry: o})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("export: %v", err)
				}
				if requests.Load() == 0 || plain.Load() != 0 {
					t.Errorf("%d requests, %d of them plain HTTP: want some, none plain", requests.Load(), plain.Load())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("export: %v\nwant one line saying: %s", err, tc.want)
			}
			if n := requests.Load(); n != 0 {
				t.Errorf("%d requests reached the registry, want none", n)
			}
		})
	}
}

// TestStrictTLSRefusesPlainHTTPHops: under TLS verification an HTTPS
// registry cannot send the exporter to plain HTTP, neither for tokens (a
// Bearer realm over http) nor for a blob (a redirect to http): the plain
// server is never asked, and the error names the flag.
func TestStrictTLSRefusesPlainHTTPHops(t *testing.T) {
	for _, tc := range []struct {
		name string
		hop  func(reg *testregistry.Registry, plainURL string, layer string) func(http.ResponseWriter, *http.Request) bool
		want string
	}{
		{
			name: "token realm",
			hop: func(reg *testregistry.Registry, plainURL, _ string) func(http.ResponseWriter, *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if r.Header.Get("Authorization") != "" {
						return false
					}
					w.Header().Set("WWW-Authenticate", `Bearer realm="`+plainURL+`/token",service="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return true
				}
			},
			want: "the registry's token realm is plain HTTP where HTTPS is required (--src-tls-verify=false allows it)",
		},
		{
			name: "blob redirect",
			hop: func(reg *testregistry.Registry, plainURL, layer string) func(http.ResponseWriter, *http.Request) bool {
				return func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
						return false
					}
					http.Redirect(w, r, plainURL+r.URL.Path, http.StatusTemporaryRedirect)
					return true
				}
			},
			want: "refused to send a request to " + "http://",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var plainHits atomic.Int64
			plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				plainHits.Add(1)
				w.WriteHeader(http.StatusOK)
			}))
			t.Cleanup(plain.Close)
			reg := testregistry.StartTLS(t)
			layer := testregistry.Layer(t, 1024, types.DockerLayer)
			ld, _ := layer.Digest()
			p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, layer))
			reg.Intercept = tc.hop(reg, plain.URL, ld.String())
			_, err := Export(context.Background(), newRoot(t), "docker://"+p.Ref, "", Options{Registry: RegistryOptions{base: reg.Transport()}})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "--src-tls-verify=false") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("export: %v\nwant one line saying %q and naming the flag", err, tc.want)
			}
			if n := plainHits.Load(); n != 0 {
				t.Errorf("the plain-HTTP server got %d requests, want none", n)
			}
		})
	}
}

// fakeNet is a network in a test: it answers every request with handler,
// and records the URLs it was given.
type fakeNet struct {
	handler http.Handler
	mu      sync.Mutex
	urls    []string
}

func (f *fakeNet) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.urls = append(f.urls, req.URL.String())
	f.mu.Unlock()
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func (f *fakeNet) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.urls...)
}

// TestPrivateAddressesUseHTTPS: go-containerregistry names the scheme
// "http" for loopback, localhost and RFC 1918 hosts; under TLS
// verification every request the exporter sends them — the manifest, its
// first, which serves as the ping — is https all the same, and no http URL is ever handed to
// the network. No server is needed: the network is fake.
func TestPrivateAddressesUseHTTPS(t *testing.T) {
	for _, host := range []string{"10.99.0.1:5000", "172.16.3.4:5000", "192.168.1.2", "127.0.0.1:5000", "localhost:5000", "[::1]:5000", "registry.example:5000"} {
		t.Run(host, func(t *testing.T) {
			net := &fakeNet{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					w.WriteHeader(http.StatusOK)
					return
				}
				http.NotFound(w, r)
			})}
			_, err := Export(context.Background(), newRoot(t), "docker://"+host+"/ns/app:v1", "", Options{Registry: RegistryOptions{base: net}})
			if err == nil || !strings.Contains(err.Error(), "not found") {
				t.Fatalf("export: %v, want the fake network's 404 for the manifest", err)
			}
			seen := net.seen()
			want := []string{"https://" + host + "/v2/ns/app/manifests/v1"}
			if strings.Join(seen, " ") != strings.Join(want, " ") {
				t.Errorf("requests sent:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestGuardRefusesPlainHTTP: the transport under every source request
// refuses an http URL unless insecure, without touching the network.
func TestGuardRefusesPlainHTTP(t *testing.T) {
	for _, tc := range []struct {
		insecure bool
		url      string
		refused  bool
	}{
		{false, "http://10.99.0.1:5000/v2/", true},
		{false, "http://registry.example/v2/", true},
		{false, "https://10.99.0.1:5000/v2/", false},
		{true, "http://10.99.0.1:5000/v2/", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			net := &fakeNet{handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
			req, err := http.NewRequest(http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := sourceTransport(tc.insecure, DefaultSourceTimeout, net).RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			var pe *plainHTTPError
			if refused := errors.As(err, &pe); refused != tc.refused || (refused && len(net.seen()) != 0) {
				t.Errorf("insecure=%v %s: error %v, network saw %v; want refused=%v", tc.insecure, tc.url, err, net.seen(), tc.refused)
			}
		})
	}
}
