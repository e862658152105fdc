package templates

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Defaults of a caching tier (config nginx --cache-for).
const (
	// DefaultCacheDir is where a tier keeps what it cached.
	DefaultCacheDir = "/var/cache/image-serve-tier"
	// DefaultCacheSize bounds it; nginx evicts the least recently used
	// entries beyond it.
	DefaultCacheSize = "50g"
)

// Fixed properties of a tier, written into its configuration; the doc
// (docs/cache-tiers.md) says why each is what it is.
const (
	// cacheLockSeconds is how long a request waits for the one request
	// that is filling the cache with the same entry (proxy_cache_lock_timeout),
	// and how long that one may take before another is let through
	// (proxy_cache_lock_age): an hour is a 36 GB layer at 10 MB/s. nginx's
	// 5 s default sends everyone waiting for a large layer to the origin.
	cacheLockSeconds = 3600
	// cacheKeepDays is how long content by digest stays cached without
	// being asked for (proxy_cache_path inactive=) and how long it is
	// fresh: it never changes, so only the space bounds it.
	cacheKeepDays = 365
)

// CacheFlagError refuses the value of one of the caching tier's flags
// (--cache-for, --cache-dir, --cache-size): a bad command line.
type CacheFlagError struct{ Flag, Value, Why string }

func (e *CacheFlagError) Error() string { return fmt.Sprintf("%s %q: %s", e.Flag, e.Value, e.Why) }

// nginxCache is what the caching tier's template sees besides nginxData.
type nginxCache struct {
	Origin string // scheme://host[:port], proxy_pass's argument
	TLS    bool   // the origin is https
	Dir    string // proxy_cache_path
	Size   string // its max_size
	Zone   string // the keys_zone, unique per listening port
	// LockSeconds and KeepDays are cacheLockSeconds and cacheKeepDays.
	LockSeconds, KeepDays int
}

// cacheSizePattern is nginx's size syntax: a number, optionally k, m or g.
var cacheSizePattern = regexp.MustCompile(`^[1-9][0-9]*[kKmMgG]?$`)

// nginxCacheConfig validates the caching tier's fields of c, creating the
// cache directory, and returns what the template needs of them.
func nginxCacheConfig(c Nginx, port int) (*nginxCache, error) {
	origin, tls, err := parseOrigin(c.CacheFor)
	if err != nil {
		return nil, err
	}
	dir, size := c.CacheDir, c.CacheSize
	if dir == "" {
		dir = DefaultCacheDir
	}
	if size == "" {
		size = DefaultCacheSize
	}
	if !cacheSizePattern.MatchString(size) {
		return nil, &CacheFlagError{"--cache-size", size, "want a size as nginx writes it: a number of bytes, or of k, m or g (50g)"}
	}
	if !filepath.IsAbs(dir) {
		return nil, &CacheFlagError{"--cache-dir", dir, "must be an absolute path"}
	}
	if err := checkNginxPath("--cache-dir", dir); err != nil {
		return nil, &CacheFlagError{"--cache-dir", dir, strings.TrimPrefix(err.Error(), fmt.Sprintf("--cache-dir %q: ", dir))}
	}
	// nginx creates the directory itself, but only when it starts: a
	// directory it cannot create is better refused now, while the
	// operator is at the command line. nginx started as root makes it
	// its workers' own (ngx_create_paths).
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &CacheFlagError{"--cache-dir", dir, "cannot be created: " + unwrapPathError(err)}
	}
	return &nginxCache{
		Origin:      origin,
		TLS:         tls,
		Dir:         dir,
		Size:        size,
		Zone:        fmt.Sprintf("image_serve_tier_%d", port),
		LockSeconds: cacheLockSeconds,
		KeepDays:    cacheKeepDays,
	}, nil
}

// unwrapPathError is err's cause without the path the caller names.
func unwrapPathError(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseOrigin checks that s is an http(s) URL of a server and nothing
// more, and returns it as proxy_pass takes it: a URL with a path would
// make nginx replace the location's part of each request's URI with it.
func parseOrigin(s string) (origin string, tls bool, err error) {
	bad := func(why string) (string, bool, error) {
		return "", false, &CacheFlagError{"--cache-for", s, why}
	}
	if s == "" {
		return bad("want the origin's URL, http://HOST[:PORT] or https://HOST[:PORT]")
	}
	if strings.IndexFunc(s, isControl) >= 0 || strings.ContainsAny(s, "$\"'\\ ;{}") {
		return bad("not a URL nginx can be given")
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("not a URL: " + err.Error())
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("not an http(s) URL: want http://HOST[:PORT] or https://HOST[:PORT]")
	case u.Host == "" || u.Hostname() == "":
		return bad("no host")
	case u.User != nil:
		return bad("credentials cannot be given in the URL")
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return bad("the origin is a server, not a path on it: want http://HOST[:PORT]")
	}
	if p := u.Port(); p != "" {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 1 || n > 65535 {
			return bad("the port must be a number from 1 to 65535")
		}
	}
	return u.Scheme + "://" + u.Host, u.Scheme == "https", nil
}
