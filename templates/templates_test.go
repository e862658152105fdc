package templates_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

func openRoot(t *testing.T, dir string) *tree.Root {
	t.Helper()
	r, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fakeModules makes a modules directory holding only the named files.
func fakeModules(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRenderApacheErrors(t *testing.T) {
	root := openRoot(t, "/srv/tree")
	run := t.TempDir()
	std := func(c templates.Apache) templates.Apache {
		c.Listen, c.Standalone = "127.0.0.1:8787", true
		if c.Root == nil {
			c.Root = root
		}
		return c
	}
	tests := []struct {
		name string
		c    templates.Apache
		want string
	}{
		{"no root", templates.Apache{Listen: "8787"}, "--root"},
		{"no listen", templates.Apache{Root: root}, "--listen: empty"},
		{"host name", templates.Apache{Root: root, Listen: "localhost:8787"}, `"localhost" is not an IP address`},
		{"bare IPv6", templates.Apache{Root: root, Listen: "::1:8787"}, "in brackets"},
		{"half bracket", templates.Apache{Root: root, Listen: "[::1:8787"}, "unbalanced brackets"},
		{"port range", templates.Apache{Root: root, Listen: "65536"}, "port must be"},
		{"port not a number", templates.Apache{Root: root, Listen: "127.0.0.1:http"}, "port must be"},
		{"zone", templates.Apache{Root: root, Listen: "[fe80::1%eth0]:8787"}, "scoped"},
		{"root with ${", templates.Apache{Root: openRoot(t, "/srv/${HOME}"), Listen: "8787"}, `--root "/srv/${HOME}"`},
		{"root with wildcard", templates.Apache{Root: openRoot(t, "/srv/tree*"), Listen: "8787"}, "wildcard"},
		{"root with newline", templates.Apache{Root: openRoot(t, "/srv/a\nb"), Listen: "8787"}, "control characters"},
		{"no run dir", std(templates.Apache{}), "--run-dir is required"},
		{"relative run dir", std(templates.Apache{RunDir: "run"}), `--run-dir "run": must be an absolute path`},
		{"missing run dir", std(templates.Apache{RunDir: filepath.Join(run, "nope")}), "--run-dir: stat"},
		{"run dir is a file", std(templates.Apache{RunDir: "/etc/hostname"}), "not a directory"},
		{"missing modules dir", std(templates.Apache{RunDir: run, ModulesDir: filepath.Join(run, "nope")}), "--modules-dir"},
		{"modules dir without mod_rewrite", std(templates.Apache{RunDir: run, ModulesDir: fakeModules(t, "mod_mime.so")}), "no mod_rewrite.so there"},
		{"modules dir without a needed module", std(templates.Apache{RunDir: run, ModulesDir: fakeModules(t, "mod_rewrite.so")}), "no mod_mpm_event.so"},
		{"user with newline", std(templates.Apache{RunDir: run, User: "www-data\nGroup root"}), "--user"},
		{"timeout not whole seconds", templates.Apache{Root: root, Listen: "8787", Timeouts: templates.Timeouts{Header: 1500 * time.Millisecond}},
			"timeout Header 1.5s: must be a whole number of seconds"},
		{"timeout below a second", templates.Apache{Root: root, Listen: "8787", Timeouts: templates.Timeouts{Idle: -time.Second}}, "timeout Idle -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRenderError(t, "RenderApache", func(w io.Writer) error { return templates.RenderApache(w, tt.c) }, tt.want)
		})
	}
}

// checkRenderError asserts that render fails with an error containing
// want and writes nothing: a half-written config must never reach a file.
func checkRenderError(t *testing.T, name string, render func(io.Writer) error, want string) {
	t.Helper()
	var buf bytes.Buffer
	err := render(&buf)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("%s = %v, want an error containing %q", name, err, want)
	}
	if buf.Len() != 0 {
		t.Errorf("%s wrote %d bytes despite the error", name, buf.Len())
	}
}

// TestRenderApacheListen checks what each --listen form means for Listen
// and for the VirtualHost address.
func TestRenderApacheListen(t *testing.T) {
	root := openRoot(t, "/srv/tree")
	tests := []struct{ listen, wantListen, wantVHost string }{
		{"8787", "8787", "*:8787"},
		{":8787", "8787", "*:8787"},
		{"*:8787", "8787", "*:8787"},
		{"127.0.0.1:8787", "127.0.0.1:8787", "127.0.0.1:8787"},
		{"0.0.0.0:8787", "0.0.0.0:8787", "*:8787"},
		{"[::1]:8787", "[::1]:8787", "[::1]:8787"},
		{"[::]:8787", "[::]:8787", "*:8787"},
		{"[0:0::1]:8787", "[::1]:8787", "[::1]:8787"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := templates.RenderApache(&buf, templates.Apache{Listen: tt.listen, Root: root}); err != nil {
			t.Fatalf("%s: %v", tt.listen, err)
		}
		conf := buf.String()
		for _, want := range []string{"\nListen " + tt.wantListen + "\n", "\n<VirtualHost " + tt.wantVHost + ">\n"} {
			if !strings.Contains(conf, want) {
				t.Errorf("--listen %s: config lacks %q", tt.listen, want)
			}
		}
	}
}

// oddRoot makes an initialised tree under a directory name that needs
// quoting in httpd.conf: spaces, both quotes and a backslash.
func oddRoot(t *testing.T) *tree.Root {
	t.Helper()
	root := openRoot(t, testserver.SharedTempDir(t, `image-serve "odd" 'root' \ `))
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	return root
}

// configtest runs httpd's syntax check on conf.
func configtest(t *testing.T, conf string, args ...string) {
	t.Helper()
	cmd := exec.Command(testserver.ApacheBinary(t), append([]string{"-t", "-f", conf}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		data, _ := os.ReadFile(conf)
		t.Fatalf("%s: %v\n%s\n--- %s:\n%s", cmd, err, out, conf, data)
	}
}

func TestApacheStandaloneConfigtest(t *testing.T) {
	run := t.TempDir()
	conf := filepath.Join(run, "httpd.conf")
	var buf bytes.Buffer
	c := templates.Apache{Listen: "127.0.0.1:8787", Root: oddRoot(t), Standalone: true, RunDir: run, User: "nobody"}
	if err := templates.RenderApache(&buf, c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	configtest(t, conf)
	configtest(t, conf, "-D", "ADDENCODING")
	if strings.Contains(buf.String(), "\nGroup ") {
		t.Error("Group written though none was given")
	}
}

// TestApacheVhostConfigtest proves the deployable part is complete with
// only the modules its header names: it is included from a bare httpd.conf
// that loads just those.
func TestApacheVhostConfigtest(t *testing.T) {
	run := t.TempDir()
	var vhost bytes.Buffer
	if err := templates.RenderApache(&vhost, templates.Apache{Listen: "[::1]:8787", Root: oddRoot(t)}); err != nil {
		t.Fatal(err)
	}
	mods := regexp.MustCompile(`# Required modules: (.*)\n`).FindStringSubmatch(vhost.String())
	if mods == nil {
		t.Fatal("the vhost's header names no required modules")
	}
	modDir := modulesDir(t)
	var main strings.Builder
	main.WriteString("ServerRoot " + run + "\nPidFile " + run + "/pid\nErrorLog " + run + "/error.log\nTypesConfig /dev/null\n")
	for _, m := range append([]string{"mpm_event"}, strings.Fields(mods[1])...) {
		main.WriteString("LoadModule " + m + "_module " + filepath.Join(modDir, "mod_"+m+".so") + "\n")
	}
	main.WriteString("Include " + filepath.Join(run, "vhost.conf") + "\n")
	for name, data := range map[string]string{"vhost.conf": vhost.String(), "httpd.conf": main.String()} {
		if err := os.WriteFile(filepath.Join(run, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	configtest(t, filepath.Join(run, "httpd.conf"))
}

func modulesDir(t *testing.T) string {
	t.Helper()
	for _, d := range templates.ModulesDirs {
		if _, err := os.Stat(filepath.Join(d, "mod_rewrite.so")); err == nil {
			return d
		}
	}
	t.Fatalf("no httpd modules directory in %q: %s", templates.ModulesDirs, testserver.Setup)
	return ""
}

// TestApacheOddRoot serves the whole contract from a tree whose path needs
// quoting, so every quoted path in the config is proven to name the tree.
func TestApacheOddRoot(t *testing.T) {
	root := oddRoot(t)
	f := contract.Build(t, root)
	contract.Run(t, testserver.Apache(t, root), f, contract.Apache)
}
