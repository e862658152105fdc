package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/bench"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/preheat"
)

// TestConfigNginxCacheBadInput: a --cache-for that is not an http(s) URL
// and a cache directory that cannot be created are bad command lines:
// exit 2, one line naming the flag, nothing printed, nothing created.
func TestConfigNginxCacheBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--cache-for", "ftp://origin:8787", "--cache-dir", filepath.Join(dir, "c1")}, `--cache-for "ftp://origin:8787": not an http(s) URL`},
		{[]string{"--cache-for", "origin:8787", "--cache-dir", filepath.Join(dir, "c2")}, `--cache-for "origin:8787": not an http(s) URL`},
		{[]string{"--cache-for", "", "--cache-dir", filepath.Join(dir, "c3")}, `--cache-for "": want the origin's URL`},
		{[]string{"--cache-for", "http://127.0.0.1:8787", "--cache-dir", filepath.Join(file, "cache")}, "--cache-dir \"" + filepath.Join(file, "cache") + "\": cannot be created: not a directory"},
		{[]string{"--cache-for", "http://127.0.0.1:8787", "--cache-dir", filepath.Join(dir, "c4"), "--cache-size", "lots"}, `--cache-size "lots"`},
		{[]string{"--cache-dir", filepath.Join(dir, "c5")}, "--cache-dir needs --cache-for"},
	} {
		r := run(t, append([]string{"--root", root, "config", "nginx"}, tt.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stdout != "" {
			t.Errorf("config nginx %s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.want)
		}
	}
	for _, c := range []string{"c1", "c2", "c3", "c4", "c5"} {
		if _, err := os.Stat(filepath.Join(dir, c)); err == nil {
			t.Errorf("a refused command line created the cache directory %s", c)
		}
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("config nginx --cache-for created the tree: a tier has none")
	}
}

// TestConfigNginxCache: the tier's configuration is printed, its cache
// directory created, and no tree read or written.
func TestConfigNginxCache(t *testing.T) {
	dir := t.TempDir()
	root, cache := filepath.Join(dir, "root"), filepath.Join(dir, "cache", "tier")
	r := mustRun(t, "--root", root, "config", "nginx", "--listen", "127.0.0.1:8788", "--cache-for", "http://127.0.0.1:8787", "--cache-dir", cache, "--cache-size", "5g")
	for _, want := range []string{"proxy_pass http://127.0.0.1:8787;", "max_size=5g", "listen 127.0.0.1:8788;", `proxy_cache_path "` + cache + `"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if fi, err := os.Stat(cache); err != nil || !fi.IsDir() {
		t.Errorf("cache directory: %v", err)
	}
	if _, err := os.Stat(root); err == nil {
		t.Error("config nginx --cache-for created the tree")
	}
}

// TestPreheatCommand: preheat through an unreachable tier and a live one
// names the unreachable one and exits 1, having warmed the live one (here
// the origin itself, which answers as a tier does); -f takes a sync
// file's images at the paths sync writes them to.
func TestPreheatCommand(t *testing.T) {
	imgs, err := bench.WriteImages(filepath.Join(t.TempDir(), "layout"), []bench.ImageSpec{
		{Ref: "a", Platforms: []bench.PlatformImage{{Arch: "amd64", Layers: []bench.LayerSpec{{Seed: 1, Size: 4096}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "export", imgs.Source("a"), "mirror/fleet/a:v1")
	live := testserver.Embedded(t, root)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()

	r := run(t, "preheat", "--through", dead.URL, "--through", live, "--json", "mirror/fleet/a:v1")
	if r.code != 1 || !strings.Contains(r.stderr, dead.URL) {
		t.Fatalf("preheat through a dead tier: exit %d, stderr %q; want exit 1 naming %s", r.code, r.stderr, dead.URL)
	}
	var rep preheat.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(rep.Tiers) != 2 || rep.Tiers[0].Error == "" || rep.Tiers[1].Error != "" || rep.Tiers[1].Blobs != 2 || rep.Tiers[1].Manifests != 1 {
		t.Errorf("report: %+v; want the dead tier failed, the live one served 1 manifest and 2 blobs", rep.Tiers)
	}

	sync := filepath.Join(t.TempDir(), "sync.yaml")
	if err := os.WriteFile(sync, []byte("registry.example.com:\n    images:\n        fleet/a: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, "preheat", "--through", live, "--prefix", "mirror", "--json", "-f", sync)
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if len(rep.Resolved) != 1 || rep.Resolved[0].Ref != "mirror/fleet/a:v1" || rep.Tiers[0].Blobs != 2 {
		t.Errorf("-f: %+v; want mirror/fleet/a:v1 resolved and its 2 blobs served", rep)
	}

	for _, args := range [][]string{
		{"preheat", "mirror/fleet/a:v1"},
		{"preheat", "--through", "ftp://x", "mirror/fleet/a:v1"},
		{"preheat", "--through", live},
		{"preheat", "--through", live, "-f", sync, "mirror/fleet/a:v1"},
		{"preheat", "--through", live, "Mirror/a:v1"},
	} {
		if r := run(t, args...); r.code != 2 {
			t.Errorf("%s: exit %d, want 2\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
