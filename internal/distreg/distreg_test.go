package distreg

import (
	"net/http"
	"testing"
)

func TestParse(t *testing.T) {
	line := `127.0.0.1 - - [07/Dec/2026:17:50:00 +0000] "HEAD /v2/release/svc00/manifests/1.0?x=1 HTTP/1.1" 200 0 "" "image-serve/dev"`
	got, ok := parse(line)
	want := Request{Method: "HEAD", Path: "/v2/release/svc00/manifests/1.0", Status: 200}
	if !ok || got != want {
		t.Fatalf("parse: %+v %v, want %+v", got, ok, want)
	}
	if got.Kind() != "manifests" || got.Repo() != "release/svc00" || got.Ref() != "1.0" {
		t.Errorf("kind %q repo %q ref %q", got.Kind(), got.Repo(), got.Ref())
	}
	blob := Request{Method: "GET", Path: "/v2/a/blobs/b/blobs/sha256:ab"}
	if blob.Kind() != "blobs" || blob.Repo() != "a/blobs/b" || blob.Ref() != "sha256:ab" {
		t.Errorf("kind %q repo %q ref %q", blob.Kind(), blob.Repo(), blob.Ref())
	}
	if _, ok := parse("not a log line"); ok {
		t.Error("parse took a line that is not one")
	}
}

// TestStartCounts: the registry's access log, read back between two
// marks, holds exactly the requests made in between, markers left out.
func TestStartCounts(t *testing.T) {
	r := Start(t)
	m := r.Mark(t)
	for range 3 {
		resp, err := http.Head("http://" + r.Host + "/v2/no/such/manifests/tag")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := r.Since(t, m)
	if len(got) != 3 || got.Counts()["HEAD /v2/no/such/manifests/tag"] != 3 || got[0].Status != http.StatusNotFound {
		t.Errorf("between the marks: %+v, want three HEADs answered 404", got)
	}
	if again := r.Since(t, r.Mark(t)); len(again) != 0 {
		t.Errorf("between two marks with nothing asked: %+v", again)
	}
}

// TestStartTLSUsers: over HTTPS with the test's CA, /v2/ wants the user
// Options name, and the log has both answers.
func TestStartTLSUsers(t *testing.T) {
	r := StartWith(t, Options{TLS: true, Users: map[string]string{"john": "this is a secret"}})
	if len(r.CACertPEM) == 0 || r.URL() != "https://"+r.Host {
		t.Fatalf("URL %s, CA %d bytes", r.URL(), len(r.CACertPEM))
	}
	m := r.Mark(t)
	for _, pass := range []string{"", "this is a secret"} {
		req, err := http.NewRequest(http.MethodGet, r.URL()+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if pass != "" {
			req.SetBasicAuth("john", pass)
		}
		resp, err := r.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	got := r.Since(t, m)
	if len(got) != 2 || got[0].Status != http.StatusUnauthorized || got[1].Status != http.StatusOK {
		t.Errorf("GET /v2/ without and with the password: %+v, want 401 then 200", got)
	}
}
