package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCountRequests reads the distribution registry's access log format
// (gorilla's combined log) past an offset, ignoring its other lines.
func TestCountRequests(t *testing.T) {
	file := filepath.Join(t.TempDir(), "registry.log")
	before := `127.0.0.1 - - [07/Dec/2026:17:50:00 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "skopeo/1.18"` + "\n"
	after := `127.0.0.1 - - [07/Dec/2026:17:50:01 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "image-serve"
127.0.0.1 - - [07/Dec/2026:17:50:01 +0000] "HEAD /v2/ns/a/manifests/current-tripleo HTTP/1.1" 200 529 "" "image-serve"
127.0.0.1 - - [07/Dec/2026:17:50:01 +0000] "HEAD /v2/ns/b/manifests/current-tripleo HTTP/1.1" 200 529 "" "image-serve"
time="2026-12-07T17:50:01Z" level=error msg="response completed with error" err.code="manifest unknown"
127.0.0.1 - - [07/Dec/2026:17:50:01 +0000] "GET /v2/ns/b/blobs/sha256:0a HTTP/1.1" 200 9 "" "image-serve"
127.0.0.1 - - [07/Dec/2026:17:50:01 +0000] "GET /v2/ns/b/tags/list?n=1000 HTTP/1.1" 200 9 "" "image-serve"
`
	if err := os.WriteFile(file, []byte(before+after), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := countRequests(file, int64(len(before)))
	if err != nil {
		t.Fatal(err)
	}
	if n.total != 5 {
		t.Errorf("total %d, want 5 (%s)", n.total, n)
	}
	want := "1 GET /v2/, 1 GET blob, 1 GET tags/list, 2 HEAD manifest"
	if n.String() != want {
		t.Errorf("got %q, want %q", n.String(), want)
	}
}
