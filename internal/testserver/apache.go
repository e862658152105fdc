package testserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

// ApacheOption changes how Apache is started.
type ApacheOption func(*apacheOptions)

type apacheOptions struct {
	defines  []string // -D names
	render   ConfigRenderer
	timeouts templates.Timeouts
}

// ConfigRenderer writes a standalone server configuration listening on
// listen, with runDir as its run directory, and returns its path.
type ConfigRenderer func(t testing.TB, listen, runDir string) (conf string)

// WithConfig starts Apache from the configuration render writes, instead of
// one rendered in-process: end-to-end tests render it with the
// image-serve binary, as an operator does.
func WithConfig(render ConfigRenderer) ApacheOption {
	return func(o *apacheOptions) { o.render = render }
}

// WithHostileEncoding starts Apache with -D ADDENCODING, which turns on the
// server-wide "AddEncoding x-gzip .gz .tgz" some distributions and admins
// have. The blob rules must keep Content-Encoding off legacy .gz blobs
// anyway.
func WithHostileEncoding() ApacheOption {
	return func(o *apacheOptions) { o.defines = append(o.defines, "ADDENCODING") }
}

// WithTimeouts renders Apache's slow-client timeouts from t instead of the
// production defaults, so that a test can wait for them.
func WithTimeouts(t templates.Timeouts) ApacheOption {
	return func(o *apacheOptions) { o.timeouts = t }
}

// apacheBinaries are httpd's names: Debian's, then everyone else's.
var apacheBinaries = []string{"apache2", "httpd"}

// ApacheBinary returns the path of the httpd binary and fails t when it is
// not installed.
func ApacheBinary(t testing.TB) string {
	t.Helper()
	for _, name := range apacheBinaries {
		// Debian's apache2 is in /usr/sbin, which a non-root PATH lacks.
		for _, p := range []string{name, "/usr/sbin/" + name} {
			if path, err := exec.LookPath(p); err == nil {
				return path
			}
		}
	}
	t.Fatalf("Apache httpd (apache2 or httpd) is not installed: %s", Setup)
	return ""
}

// serverEnv is the whole environment servers get. Debian's apache2 needs
// APACHE_RUN_DIR and friends only for its own apache2.conf (apache2ctl
// sources them); our config names every path itself, and starting with
// nothing else proves it.
var serverEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}

// Apache serves root with a standalone Apache rendered by
// templates.RenderApache, on a free 127.0.0.1 port, until the test ends.
// It returns the base URL, "http://127.0.0.1:<port>".
func Apache(t testing.TB, root *tree.Root, opts ...ApacheOption) (baseURL string) {
	t.Helper()
	var o apacheOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin := ApacheBinary(t)
	account, group := serverAccount(t)
	url, _ := startOnFreePort(t, "apache", func(listen, runDir string) (*exec.Cmd, string, []string) {
		var conf string
		if o.render != nil {
			conf = o.render(t, listen, runDir)
		} else {
			conf = writeApacheConfig(t, templates.Apache{
				Listen:     listen,
				Root:       root,
				Standalone: true,
				RunDir:     runDir,
				User:       account,
				Group:      group,
				Timeouts:   o.timeouts,
			})
		}
		args := []string{"-f", conf, "-D", "FOREGROUND"}
		for _, d := range o.defines {
			args = append(args, "-D", d)
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = serverEnv
		logs := []string{filepath.Join(runDir, "error.log"), filepath.Join(runDir, "access.log")}
		return cmd, filepath.Join(runDir, "output.log"), logs
	})
	return url
}

// writeApacheConfig renders c into RunDir/httpd.conf.
func writeApacheConfig(t testing.TB, c templates.Apache) string {
	t.Helper()
	conf := filepath.Join(c.RunDir, "httpd.conf")
	f, err := os.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := templates.RenderApache(f, c); err != nil {
		t.Fatalf("render Apache config: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return conf
}
