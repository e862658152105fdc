package templates_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

func TestRenderNginxCacheErrors(t *testing.T) {
	dir := t.TempDir()
	tier := func(origin, cacheDir, size string) templates.Nginx {
		return templates.Nginx{Listen: "127.0.0.1:8788", CacheFor: origin, CacheDir: cacheDir, CacheSize: size}
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	tests := []struct {
		name string
		c    templates.Nginx
		flag string
		want string
	}{
		{"ftp origin", tier("ftp://origin:8787", cache, ""), "--cache-for", "not an http(s) URL"},
		{"bare host", tier("origin:8787", cache, ""), "--cache-for", "not an http(s) URL"},
		{"no host", tier("http://", cache, ""), "--cache-for", "no host"},
		{"a path", tier("http://origin:8787/v2/", cache, ""), "--cache-for", "not a path on it"},
		{"a query", tier("http://origin:8787?x=1", cache, ""), "--cache-for", "not a path on it"},
		{"credentials", tier("http://u:p@origin:8787", cache, ""), "--cache-for", "credentials"},
		{"a variable", tier("http://$host:8787", cache, ""), "--cache-for", "not a URL nginx can be given"},
		{"a bad port", tier("http://origin:99999", cache, ""), "--cache-for", "port"},
		{"relative cache dir", tier("http://origin:8787", "cache", ""), "--cache-dir", "absolute"},
		{"cache dir with $", tier("http://origin:8787", "/var/cache/$x", ""), "--cache-dir", `nginx would read "$" as a variable`},
		{"cache dir under a file", tier("http://origin:8787", filepath.Join(file, "cache"), ""), "--cache-dir", "cannot be created: not a directory"},
		{"bad size", tier("http://origin:8787", cache, "50 GB"), "--cache-size", "want a size"},
		{"zero size", tier("http://origin:8787", cache, "0"), "--cache-size", "want a size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRenderError(t, "RenderNginx", func(w io.Writer) error { return templates.RenderNginx(w, tt.c) }, tt.want)
			var fe *templates.CacheFlagError
			if err := templates.RenderNginx(io.Discard, tt.c); !errors.As(err, &fe) || fe.Flag != tt.flag {
				t.Errorf("RenderNginx = %v, want a *CacheFlagError for %s", err, tt.flag)
			}
		})
	}
	if _, err := os.Stat(cache); err == nil {
		t.Errorf("%s created by a render that failed on another flag first", cache)
	}
}

// TestRenderNginxCache: what a tier relies on is in its configuration
// (docs/cache-tiers.md says why each line is there).
func TestRenderNginxCache(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "a", "cache")
	var buf bytes.Buffer
	if err := templates.RenderNginx(&buf, templates.Nginx{Listen: "8788", CacheFor: "http://origin.example:8787/", CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cache); err != nil || !fi.IsDir() {
		t.Errorf("the cache directory was not created: %v", err)
	}
	conf := buf.String()
	for _, want := range []string{
		"proxy_cache_path \"" + cache + "\" levels=1:2 keys_zone=image_serve_tier_8788:32m max_size=" + templates.DefaultCacheSize + " ",
		"proxy_pass http://origin.example:8787;",
		`proxy_cache_key "blob $request_method $image_serve_digest";`,
		`proxy_cache_key "manifest $request_method $image_serve_digest";`,
		"proxy_cache_convert_head off;",
		"proxy_cache_lock on;",
		"proxy_cache_lock_timeout 3600s;",
		"proxy_cache_lock_age 3600s;",
		"proxy_cache_use_stale error timeout",
		"proxy_cache_valid 200 365d;",
		"proxy_cache off;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if strings.Contains(conf, "image_serve_repo;") || strings.Contains(conf, "$uri") {
		t.Error("a cache key names the repository or the URI: a shared layer would be fetched once per repository")
	}
}

func TestNginxCacheConfigtest(t *testing.T) {
	run := t.TempDir()
	var buf bytes.Buffer
	c := templates.Nginx{Listen: "127.0.0.1:8788", Standalone: true, RunDir: run, User: "nobody", Group: "nogroup",
		CacheFor: "https://127.0.0.1:8787", CacheDir: filepath.Join(run, `odd "cache" dir`)}
	if err := templates.RenderNginx(&buf, c); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(run, "nginx.conf")
	if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxTest(t, conf, run)
}

// TestNginxCacheIncludeConfigtest: two tiers and a tree's server included
// in one nginx, as a site may run them.
func TestNginxCacheIncludeConfigtest(t *testing.T) {
	run := t.TempDir()
	for i, listen := range []string{"127.0.0.1:8788", "127.0.0.1:8789"} {
		var buf bytes.Buffer
		c := templates.Nginx{Listen: listen, CacheFor: "http://127.0.0.1:8787", CacheDir: filepath.Join(run, "cache"+string(rune('a'+i)))}
		if err := templates.RenderNginx(&buf, c); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, "image-serve"+string(rune('a'+i))+".conf"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := templates.RenderNginx(&buf, templates.Nginx{Listen: "127.0.0.1:8787", Root: oddRoot(t)}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "image-servez.conf"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	main := "pid " + run + "/pid;\nevents {}\nhttp {\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n" +
		"    gzip on;\n    client_body_temp_path " + run + "/body;\n    proxy_temp_path " + run + "/proxy;\n" +
		"    include " + run + "/image-serve*.conf;\n}\n"
	conf := filepath.Join(run, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxTest(t, conf, run)
}

// TestNginxCacheContract holds a tier in front of each origin, and two
// stacked tiers in front of the embedded server, to the HTTP contract the
// origin meets: a tier changes nothing a client sees (the rows that retag
// and delete prove it passes tags through uncached).
func TestNginxCacheContract(t *testing.T) {
	for _, tt := range []struct {
		name  string
		tiers int
		serve func(t *testing.T, root *tree.Root) string
		o     contract.Options
	}{
		{"embedded", 1, func(t *testing.T, root *tree.Root) string { return testserver.Embedded(t, root) }, contract.Embedded},
		{"embedded, two tiers", 2, func(t *testing.T, root *tree.Root) string { return testserver.Embedded(t, root) }, contract.Embedded},
		{"apache", 1, func(t *testing.T, root *tree.Root) string { return testserver.Apache(t, root) }, contract.Apache},
		{"nginx", 1, func(t *testing.T, root *tree.Root) string { return testserver.Nginx(t, root) }, contract.Nginx},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := testserver.TempRoot(t)
			f := contract.Build(t, root)
			base := tt.serve(t, root)
			for range tt.tiers {
				base = cacheTier(t, base)
			}
			contract.Run(t, base, f, tt.o)
		})
	}
}

// cacheTier starts a standalone caching tier in front of origin, from the
// configuration RenderNginx writes for it, and returns its URL.
func cacheTier(t *testing.T, origin string) string {
	t.Helper()
	cache := filepath.Join(testserver.SharedTempDir(t, "image-serve-tier-"), "cache")
	return testserver.Nginx(t, nil, testserver.WithNginxConfig(func(t testing.TB, listen, runDir string) string {
		var buf bytes.Buffer
		user, group := "", ""
		if os.Geteuid() == 0 {
			user, group = "www-data", "www-data"
		}
		c := templates.Nginx{Listen: listen, Standalone: true, RunDir: runDir, User: user, Group: group, CacheFor: origin, CacheDir: cache}
		if err := templates.RenderNginx(&buf, c); err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(runDir, "nginx.conf")
		if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}))
}
