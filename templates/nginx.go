package templates

import (
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/template"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

//go:embed nginx.conf.tmpl nginx-standalone.conf.tmpl nginx-cache.conf.tmpl
var nginxFiles embed.FS

// Parsed at first use, not at start-up: most commands render no configuration.
var nginxTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Funcs(funcs(routeFuncs, nginxFuncs, template.FuncMap{
		"q":    nginxQuote,
		"secs": seconds,
		"e":    nginxEscaper.Replace,
		"shq":  shellQuote,
		"join": filepath.Join,
		"dict": dict,
	})).ParseFS(nginxFiles, "nginx*.tmpl"))
})

// Nginx describes an nginx configuration for one tree, or, with CacheFor,
// for a caching tier in front of an image-serve origin.
type Nginx struct {
	// Listen is the address to accept connections on: "8787", ":8787",
	// "127.0.0.1:8787" or "[::1]:8787". The host, when given, must be an
	// IP address.
	Listen string
	// Root is the tree to serve; a caching tier has none.
	Root *tree.Root
	// CacheFor, when set, makes this a caching tier instead: the URL of
	// the server it caches, http(s)://HOST[:PORT], an image-serve origin
	// (Apache, nginx or embedded) or another tier. CacheDir (default
	// DefaultCacheDir) is created if missing; CacheSize (default
	// DefaultCacheSize) bounds it.
	CacheFor, CacheDir, CacheSize string
	// Standalone renders a complete nginx.conf for its own nginx process;
	// otherwise only the maps and the server block, to include inside a
	// distribution's http {} (conf.d).
	Standalone bool
	// RunDir holds the standalone instance's pid file, logs and temporary
	// directories. It must be an absolute path to a directory.
	RunDir string
	// User and Group are the account the standalone nginx's workers run
	// as; empty User omits the directive, empty Group means User's group
	// of the same name. nginx started as root needs them.
	User, Group string
	// Timeouts bound slow clients; zero fields take DefaultTimeouts.
	Timeouts Timeouts
}

// nginxData is what the nginx templates see. Paths are raw; the templates
// quote them with q, or escape them with e inside a quoted string that
// goes on with nginx variables.
type nginxData struct {
	Root      *tree.Root
	Listen    string // argument of listen
	Port      int
	Errors    errorFiles
	ErrorsURL string      // tree.ErrorsURL
	Layout    tree.Layout // names beyond the routes' files
	Types     []tree.NginxType
	// IndexTypes matches the index media types in an Accept header
	// (distribution.IndexTypesPattern).
	IndexTypes string
	Timeouts   Timeouts // resolved: every field set
	// DigestPattern is tree's: the last element of a tag link's target.
	DigestPattern string

	// Cache is the caching tier's, nil for a tree's configuration.
	Cache *nginxCache

	// standalone only
	RunDir, PidFile, ErrorLog, AccessLog string
	User, Group                          string
}

// RenderNginx writes the configuration c describes to w. It writes nothing
// if c is invalid, and its errors name the command-line flag (--listen,
// --root, --run-dir, --user, --group, and a caching tier's --cache-for,
// --cache-dir and --cache-size, as a *CacheFlagError) at fault. A caching
// tier's cache directory is created here, before anything is written.
func RenderNginx(w io.Writer, c Nginx) error {
	d, err := nginxConfig(c)
	if err != nil {
		return err
	}
	name := "nginx.conf.tmpl"
	if d.Cache != nil {
		name = "nginx-cache.conf.tmpl"
	}
	if c.Standalone {
		name = "nginx-standalone.conf.tmpl"
	}
	return execute(w, nginxTmpl(), name, d)
}

// nginxConfig validates c and derives the template data from it.
func nginxConfig(c Nginx) (*nginxData, error) {
	if c.CacheFor != "" {
		return nginxCacheData(c)
	}
	if c.Root == nil {
		return nil, errors.New("--root: no tree given")
	}
	if err := checkNginxPath("--root", c.Root.Dir()); err != nil {
		return nil, err
	}
	listen, _, port, err := parseListen(c.Listen)
	if err != nil {
		return nil, err
	}
	timeouts, err := c.Timeouts.resolve()
	if err != nil {
		return nil, err
	}
	d := &nginxData{
		Root:          c.Root,
		Listen:        listen,
		Port:          port,
		Errors:        theErrorFiles(),
		ErrorsURL:     tree.ErrorsURL,
		Layout:        tree.Names(),
		Types:         tree.NginxTypes(),
		IndexTypes:    distribution.IndexTypesPattern(),
		DigestPattern: tree.DigestPattern,
		Timeouts:      timeouts,
	}
	if !c.Standalone {
		return d, nil
	}
	if err := nginxStandalone(d, c); err != nil {
		return nil, err
	}
	return d, nil
}

// nginxCacheData validates a caching tier's c and derives the template
// data from it.
func nginxCacheData(c Nginx) (*nginxData, error) {
	listen, _, port, err := parseListen(c.Listen)
	if err != nil {
		return nil, err
	}
	timeouts, err := c.Timeouts.resolve()
	if err != nil {
		return nil, err
	}
	d := &nginxData{Listen: listen, Port: port, Timeouts: timeouts}
	if c.Standalone {
		// the run directory before the cache directory is created
		if err := nginxStandalone(d, c); err != nil {
			return nil, err
		}
	}
	if d.Cache, err = nginxCacheConfig(c, port); err != nil {
		return nil, err
	}
	return d, nil
}

// nginxStandalone fills in what only a complete nginx.conf needs.
func nginxStandalone(d *nginxData, c Nginx) error {
	switch {
	case c.RunDir == "":
		return errors.New("--run-dir is required for a standalone nginx config")
	case !filepath.IsAbs(c.RunDir):
		return fmt.Errorf("--run-dir %q: must be an absolute path", c.RunDir)
	}
	if err := checkNginxPath("--run-dir", c.RunDir); err != nil {
		return err
	}
	fi, err := os.Stat(c.RunDir)
	if err != nil {
		return fmt.Errorf("--run-dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--run-dir %s: not a directory", c.RunDir)
	}
	if c.User == "" && c.Group != "" {
		return fmt.Errorf("--group %q: needs --user", c.Group)
	}
	for flag, v := range map[string]string{"--user": c.User, "--group": c.Group} {
		if strings.IndexFunc(v, isControl) >= 0 || strings.Contains(v, "$") {
			return fmt.Errorf("%s %q: not a valid name", flag, v)
		}
	}
	d.RunDir = c.RunDir
	d.PidFile = filepath.Join(c.RunDir, "nginx.pid")
	d.ErrorLog = filepath.Join(c.RunDir, "error.log")
	d.AccessLog = filepath.Join(c.RunDir, "access.log")
	d.User, d.Group = c.User, c.Group
	if d.Group == "" {
		d.Group = d.User
	}
	return nil
}

// checkNginxPath refuses paths nginx would not read back as the same path:
// control characters end or split a directive, and "$" starts a variable in
// root, alias and the other directives that take one; nginx has no escape
// for it. Spaces, quotes, braces, semicolons and backslashes are fine:
// nginxQuote escapes them.
func checkNginxPath(flag, p string) error {
	if strings.IndexFunc(p, isControl) >= 0 {
		return fmt.Errorf("%s %q: control characters cannot be written into an nginx config", flag, p)
	}
	if strings.Contains(p, "$") {
		return fmt.Errorf("%s %q: nginx would read \"$\" as a variable", flag, p)
	}
	return nil
}

// dict is a map of its key and value arguments, which range visits in the
// order of the keys.
func dict(kv ...string) (map[string]string, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("dict: odd number of arguments")
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m, nil
}

// nginxQuote makes s one double-quoted nginx argument. nginx's parser turns
// \" into ", \' into ' and \\ into \ in every argument; inside quotes
// nothing else is special (but $, which checkNginxPath refuses).
func nginxQuote(s string) string { return `"` + nginxEscaper.Replace(s) + `"` }

var nginxEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
