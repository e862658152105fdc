package testserver

import (
	"fmt"
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
	modules  []string // further modules to load, by name ("status")
	extra    string   // directives for the end of the main config
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

// WithServerStatus loads mod_status too, as the system httpd of Debian and
// RHEL does for every vhost: a test can then prove that nothing planted
// in the tree (SetHandler server-status) shows the status page, which
// lists the requests of every vhost.
func WithServerStatus() ApacheOption {
	return func(o *apacheOptions) { o.modules = append(o.modules, "status") }
}

// WithServerConfig adds directives to the end of the main server config,
// as a system httpd.conf has settings of its own around the vhost: a
// test can prove the vhost holds against them.
func WithServerConfig(directives string) ApacheOption {
	return func(o *apacheOptions) { o.extra += directives + "\n" }
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
		appendConfig(t, conf, o.modules, o.extra)
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

// appendConfig adds a LoadModule line for each of modules, from the
// first of templates.ModulesDirs that has it, and then extra to the
// config at conf: what a system httpd has beyond what our config asks
// for.
func appendConfig(t testing.TB, conf string, modules []string, extra string) {
	t.Helper()
	if len(modules) == 0 && extra == "" {
		return
	}
	var lines string
	for _, name := range modules {
		file := "mod_" + name + ".so"
		path := ""
		for _, d := range templates.ModulesDirs {
			if _, err := os.Stat(filepath.Join(d, file)); err == nil {
				path = filepath.Join(d, file)
				break
			}
		}
		if path == "" {
			t.Fatalf("no %s in %q: %s", file, templates.ModulesDirs, Setup)
		}
		lines += fmt.Sprintf("<IfModule !%s_module>\n    LoadModule %s_module %q\n</IfModule>\n", name, name, path)
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(lines + extra); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
