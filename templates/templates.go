// Package templates renders the web server configurations that serve a
// static registry tree. The configurations are the ones our reference
// setups proved against skopeo, crane, containerd and the OCI conformance
// suites; the tree layout they route over is tree's, so every path,
// pattern and file comes from a tree.Root or the route table (routes.go).
package templates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/template"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
)

//go:embed apache.conf.tmpl apache-standalone.conf.tmpl
var files embed.FS

// Parsed at first use, not at start-up: most commands render no configuration.
var tmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Funcs(funcs(routeFuncs, apacheFuncs, template.FuncMap{
		"q":     apacheQuote,
		"secs":  seconds,
		"slash": func(dir string) string { return dir + "/" },
		"shq":   shellQuote,
	})).ParseFS(files, "*.tmpl"))
})

// Apache describes an Apache httpd configuration for one tree.
type Apache struct {
	// Listen is the address to accept connections on: "8787", ":8787",
	// "127.0.0.1:8787" or "[::1]:8787". The host, when given, must be an
	// IP address.
	Listen string
	// Root is the tree to serve.
	Root *tree.Root
	// Standalone renders a complete httpd.conf for its own httpd process;
	// otherwise only the Listen and VirtualHost part, to drop into a
	// distribution's conf.d or sites-available.
	Standalone bool
	// RunDir is the standalone instance's ServerRoot and holds its pid
	// file and logs. It must be an absolute path to a directory.
	RunDir string
	// ModulesDir holds the httpd module .so files (standalone only). Empty
	// means the first of the known distribution locations that has
	// mod_rewrite.so.
	ModulesDir string
	// User and Group are the account the standalone httpd's workers run
	// as; empty omits the directive. httpd started as root needs them.
	User, Group string
	// Timeouts bound slow clients; zero fields take DefaultTimeouts.
	Timeouts Timeouts
}

// ModulesDirs are the places distributions put httpd modules, in the order
// RenderApache tries them.
var ModulesDirs = []string{
	"/usr/lib/apache2/modules", // Debian, Ubuntu
	"/usr/lib64/httpd/modules", // RHEL, Fedora (x86_64, aarch64)
	"/etc/httpd/modules",       // RHEL's symlink to the above
	"/usr/lib/httpd/modules",   // Fedora on 32-bit, Arch
}

// A module is one LoadModule line.
type module struct {
	Name string // "rewrite_module"
	Path string // absolute path of mod_rewrite.so
}

// requiredModules are what the vhost uses, plus the MPM; each must be in
// the modules directory or built in.
var requiredModules = []string{"mpm_event", "authz_core", "mime", "dir", "negotiation", "headers", "setenvif", "rewrite", "alias", "reqtimeout"}

// optionalModules are built into Debian's apache2 but shared modules on
// RHEL; they are loaded only when the modules directory has them.
var optionalModules = []string{"unixd", "log_config"}

// errorFiles are the URLs of the error bodies (ErrorsURL, mapped to
// Root.ErrorsDir) that no route answers with.
type errorFiles struct {
	BlobUnknown, ManifestUnknown, NotAcceptable, NameUnknown, Unsupported, DigestInvalid string
}

// apacheData is what the templates see. Paths are raw; the templates quote
// them with q.
type apacheData struct {
	Root        *tree.Root
	Listen      string // argument of Listen
	VirtualHost string // argument of <VirtualHost>
	Port        int
	Errors      errorFiles
	ErrorsURL   string      // tree.ErrorsURL
	Layout      tree.Layout // names beyond the routes' files
	Timeouts    Timeouts    // resolved: every field set
	// HeadersDirs are the <Directory> wildcards of the manifests' header
	// files (tree.HeadersDirGlobs) below the root, the root's own path
	// escaped for them.
	HeadersDirs []string

	// standalone only
	RunDir, PidFile, ErrorLog, AccessLog string
	ServerName                           string
	TypesConfig                          string // "" = none on this system
	Modules                              []module
	User, Group                          string
}

// RenderApache writes the configuration c describes to w. It writes
// nothing if c is invalid, and its errors name the command-line flag
// (--listen, --root, --run-dir, --modules-dir, --user, --group) at fault.
func RenderApache(w io.Writer, c Apache) error {
	d, err := apacheConfig(c)
	if err != nil {
		return err
	}
	name := "apache.conf.tmpl"
	if c.Standalone {
		name = "apache-standalone.conf.tmpl"
	}
	return execute(w, tmpl(), name, d)
}

// execute renders template name into memory first, so that a failing
// template writes nothing to w.
func execute(w io.Writer, t *template.Template, name string, data any) error {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// theErrorFiles names the tree's error bodies for the templates.
func theErrorFiles() errorFiles {
	return errorFiles{
		BlobUnknown:     errorURL(distribution.ErrBlobUnknown),
		ManifestUnknown: errorURL(distribution.ErrManifestUnknown),
		NotAcceptable:   errorURL(distribution.ErrNotAcceptable),
		NameUnknown:     errorURL(distribution.ErrNameUnknown),
		Unsupported:     errorURL(distribution.ErrUnsupported),
		DigestInvalid:   errorURL(distribution.ErrDigestInvalid),
	}
}

// apacheConfig validates c and derives the template data from it.
func apacheConfig(c Apache) (*apacheData, error) {
	if c.Root == nil {
		return nil, errors.New("--root: no tree given")
	}
	if err := checkPath("--root", c.Root.Dir()); err != nil {
		return nil, err
	}
	listen, vhost, port, err := parseListen(c.Listen)
	if err != nil {
		return nil, err
	}
	timeouts, err := c.Timeouts.resolve()
	if err != nil {
		return nil, err
	}
	d := &apacheData{
		Root:        c.Root,
		Listen:      listen,
		VirtualHost: vhost,
		Port:        port,
		Errors:      theErrorFiles(),
		ErrorsURL:   tree.ErrorsURL,
		Layout:      tree.Names(),
		Timeouts:    timeouts,
		HeadersDirs: headersDirs(c.Root),
	}
	if !c.Standalone {
		return d, nil
	}
	if err := standaloneConfig(d, c); err != nil {
		return nil, err
	}
	return d, nil
}

// standaloneConfig fills in what only a complete httpd.conf needs.
func standaloneConfig(d *apacheData, c Apache) error {
	if err := checkRunDir(c.RunDir); err != nil {
		return err
	}
	mods, err := modules(c.ModulesDir)
	if err != nil {
		return err
	}
	if err := checkWord("--user", c.User); err != nil {
		return err
	}
	if err := checkWord("--group", c.Group); err != nil {
		return err
	}
	d.RunDir = c.RunDir
	d.PidFile = filepath.Join(c.RunDir, "httpd.pid")
	d.ErrorLog = filepath.Join(c.RunDir, "error.log")
	d.AccessLog = filepath.Join(c.RunDir, "access.log")
	d.ServerName = "localhost"
	d.Modules = mods
	d.User, d.Group = c.User, c.Group
	if _, err := os.Stat("/etc/mime.types"); err == nil {
		d.TypesConfig = "/etc/mime.types"
	}
	return nil
}

// headersDirs are root's tree.HeadersDirGlobs as absolute wildcards.
// httpd matches a wildcard <Directory> with apr_fnmatch, which reads a
// backslash as an escape: the root's own backslashes are doubled, and
// checkPath has refused the root's *, ? and [ ].
func headersDirs(root *tree.Root) []string {
	dir := strings.ReplaceAll(root.Dir(), `\`, `\\`)
	var dirs []string
	for _, g := range tree.HeadersDirGlobs() {
		dirs = append(dirs, strings.TrimSuffix(dir, "/")+"/"+g)
	}
	return dirs
}

// checkRunDir makes sure httpd can use dir as its ServerRoot: relative
// paths would be taken relative to httpd's compiled-in root.
func checkRunDir(dir string) error {
	switch {
	case dir == "":
		return errors.New("--run-dir is required for a standalone Apache config")
	case !filepath.IsAbs(dir):
		return fmt.Errorf("--run-dir %q: must be an absolute path", dir)
	}
	if err := checkPath("--run-dir", dir); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--run-dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("--run-dir %s: not a directory", dir)
	}
	return nil
}

// modules finds the modules directory and the LoadModule lines for it.
func modules(dir string) ([]module, error) {
	dir, err := modulesDir(dir)
	if err != nil {
		return nil, err
	}
	var mods []module
	for _, name := range requiredModules {
		p := filepath.Join(dir, "mod_"+name+".so")
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("--modules-dir %s: no mod_%s.so, which the config needs", dir, name)
		}
		mods = append(mods, module{name + "_module", p})
	}
	for _, name := range optionalModules {
		p := filepath.Join(dir, "mod_"+name+".so")
		if _, err := os.Stat(p); err == nil {
			mods = append(mods, module{name + "_module", p})
		}
	}
	return mods, nil
}

// modulesDir returns dir made absolute, or the first known directory with
// mod_rewrite.so when dir is empty.
func modulesDir(dir string) (string, error) {
	if dir == "" {
		for _, d := range ModulesDirs {
			if hasRewrite(d) {
				return d, nil
			}
		}
		return "", fmt.Errorf("no Apache httpd modules directory found (looked for mod_rewrite.so in %s): install apache2 or httpd, or pass --modules-dir",
			strings.Join(ModulesDirs, ", "))
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("--modules-dir %s: %w", dir, err)
	}
	if err := checkPath("--modules-dir", abs); err != nil {
		return "", err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("--modules-dir %s: no such directory", dir)
	}
	if !hasRewrite(abs) {
		return "", fmt.Errorf("--modules-dir %s: no mod_rewrite.so there; is it the httpd modules directory (Debian: %s, RHEL: %s)?",
			dir, ModulesDirs[0], ModulesDirs[1])
	}
	return abs, nil
}

func hasRewrite(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "mod_rewrite.so"))
	return err == nil && fi.Mode().IsRegular()
}

// parseListen turns the --listen value into the arguments of Listen and
// <VirtualHost>. A bare port listens on every address, so its vhost is
// "*:port"; a specific address gets a vhost on exactly that address, which
// takes precedence over any "*:port" vhost another config has. Host names
// are refused: httpd would resolve them once, at start-up.
func parseListen(s string) (listen, vhost string, port int, err error) {
	if s == "" {
		return "", "", 0, errors.New("--listen: empty; give a port (8787) or an address and port (127.0.0.1:8787)")
	}
	host, portStr := "", s
	if strings.Contains(s, ":") {
		h, p, err := splitHostPort(s)
		if err != nil {
			return "", "", 0, err
		}
		host, portStr = h, p
	}
	port, err = strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", "", 0, fmt.Errorf("--listen %q: port must be a number from 1 to 65535", s)
	}
	if host == "" || host == "*" {
		return portStr, "*:" + portStr, port, nil
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return "", "", 0, fmt.Errorf("--listen %q: %q is not an IP address (host names are not accepted)", s, host)
	}
	if addr.Zone() != "" {
		return "", "", 0, fmt.Errorf("--listen %q: scoped IPv6 addresses are not supported", s)
	}
	a := addr.String()
	if addr.Is6() {
		a = "[" + a + "]"
	}
	listen = a + ":" + portStr
	if addr.IsUnspecified() {
		// 0.0.0.0 or [::]: one address family, every address
		return listen, "*:" + portStr, port, nil
	}
	return listen, listen, port, nil
}

// splitHostPort splits "host:port", "[v6]:port" and ":port". Unlike
// net.SplitHostPort it names the flag in its error.
func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndex(s, ":")
	host, port = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return "", "", fmt.Errorf("--listen %q: unbalanced brackets", s)
	}
	if strings.HasPrefix(host, "[") {
		host = host[1 : len(host)-1]
	} else if strings.Contains(host, ":") {
		return "", "", fmt.Errorf("--listen %q: write an IPv6 address in brackets, as [::1]:8787", s)
	}
	return host, port, nil
}

// checkPath refuses paths httpd would not read back as the same path:
// control characters end or split a directive, "${" is expanded from the
// environment, and *, ? and [ ] make <Directory> a wildcard pattern.
// Spaces, quotes and backslashes are fine: apacheQuote escapes them.
func checkPath(flag, p string) error {
	if i := strings.IndexFunc(p, isControl); i >= 0 {
		return fmt.Errorf("%s %q: control characters cannot be written into an Apache config", flag, p)
	}
	if strings.Contains(p, "${") {
		return fmt.Errorf("%s %q: httpd would expand \"${\" as an environment variable", flag, p)
	}
	if strings.ContainsAny(p, "*?[]") {
		return fmt.Errorf("%s %q: httpd would read *, ? or [ ] as a wildcard in <Directory>", flag, p)
	}
	return nil
}

// checkWord refuses user and group names that could not be a single
// directive argument.
func checkWord(flag, s string) error {
	if strings.IndexFunc(s, isControl) >= 0 || strings.Contains(s, "${") {
		return fmt.Errorf("%s %q: not a valid name", flag, s)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// apacheQuote makes s one double-quoted httpd argument. Inside double
// quotes httpd's ap_getword_conf turns \" into " and \\ into \; nothing
// else is special.
func apacheQuote(s string) string {
	return `"` + apacheEscaper.Replace(s) + `"`
}

var apacheEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// shellQuote quotes s for a POSIX shell, for the commands the config's
// comments suggest.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
