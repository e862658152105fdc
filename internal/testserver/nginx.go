package testserver

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

// NginxBinary returns the path of the nginx binary and fails t when it is
// not installed.
func NginxBinary(t testing.TB) string {
	t.Helper()
	// Debian's nginx is in /usr/sbin, which a non-root PATH lacks.
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	t.Fatalf("nginx is not installed: %s", Setup)
	return ""
}

// NginxOption changes how nginx is started.
type NginxOption func(*nginxOptions)

type nginxOptions struct {
	render   ConfigRenderer
	timeouts templates.Timeouts
	expected *regexp.Regexp // crit lines the test provokes
}

// WithNginxConfig starts nginx from the configuration render writes,
// instead of one rendered in-process: end-to-end tests render it with the
// image-serve binary, as an operator does.
func WithNginxConfig(render ConfigRenderer) NginxOption {
	return func(o *nginxOptions) { o.render = render }
}

// WithNginxTimeouts renders nginx's slow-client timeouts from t instead of
// the production defaults, so that a test can wait for them.
func WithNginxTimeouts(t templates.Timeouts) NginxOption {
	return func(o *nginxOptions) { o.timeouts = t }
}

// WithExpectedNginxLog lets nginx log lines matching re at crit level,
// which otherwise fail the test: a test that provokes them on purpose,
// such as requests through symlinks the configuration refuses.
func WithExpectedNginxLog(re *regexp.Regexp) NginxOption {
	return func(o *nginxOptions) { o.expected = re }
}

// Nginx serves root with a standalone nginx rendered by
// templates.RenderNginx, on a free 127.0.0.1 port, until the test ends. It
// returns the base URL, "http://127.0.0.1:<port>". nginx is started as the
// config's header says, with -g 'daemon off;' to keep it our child, and -e
// so that not even its start-up errors leave the run directory. Anything
// nginx logs at crit level or worse fails t.
func Nginx(t testing.TB, root *tree.Root, opts ...NginxOption) (baseURL string) {
	t.Helper()
	var o nginxOptions
	for _, opt := range opts {
		opt(&o)
	}
	bin := NginxBinary(t)
	account, group := serverAccount(t)
	url, runDir := startOnFreePort(t, "nginx", func(listen, runDir string) (*exec.Cmd, string, []string) {
		var conf string
		if o.render != nil {
			conf = o.render(t, listen, runDir)
		} else {
			conf = writeNginxConfig(t, templates.Nginx{
				Listen:     listen,
				Root:       root,
				Standalone: true,
				RunDir:     runDir,
				User:       account,
				Group:      group,
				Timeouts:   o.timeouts,
			})
		}
		errorLog := filepath.Join(runDir, "error.log")
		cmd := exec.Command(bin, "-c", conf, "-p", runDir, "-e", errorLog, "-g", "daemon off;")
		cmd.Env = serverEnv
		return cmd, filepath.Join(runDir, "output.log"), []string{errorLog, filepath.Join(runDir, "access.log")}
	})
	t.Cleanup(func() { checkNginxLog(t, filepath.Join(runDir, "error.log"), o.expected) })
	return url
}

// checkNginxLog fails t if nginx logged anything at crit level or above
// that expected (if not nil) does not match: a request the config
// mishandles, such as realpath() on a missing tag link, which the tag
// location must guard against, shows there and nowhere else.
func checkNginxLog(t testing.TB, errorLog string, expected *regexp.Regexp) {
	t.Helper()
	data, err := os.ReadFile(errorLog)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Error(err)
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		for _, level := range []string{"[crit]", "[alert]", "[emerg]"} {
			if strings.Contains(line, level) && (expected == nil || !expected.MatchString(line)) {
				t.Errorf("nginx logged: %s", line)
			}
		}
	}
}

// writeNginxConfig renders c into RunDir/nginx.conf.
func writeNginxConfig(t testing.TB, c templates.Nginx) string {
	t.Helper()
	conf := filepath.Join(c.RunDir, "nginx.conf")
	f, err := os.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := templates.RenderNginx(f, c); err != nil {
		t.Fatalf("render nginx config: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return conf
}
