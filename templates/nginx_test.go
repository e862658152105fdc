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

func TestRenderNginxErrors(t *testing.T) {
	root := openRoot(t, "/srv/tree")
	run := t.TempDir()
	std := func(c templates.Nginx) templates.Nginx {
		c.Listen, c.Standalone, c.Root = "127.0.0.1:8787", true, root
		return c
	}
	tests := []struct {
		name string
		c    templates.Nginx
		want string
	}{
		{"no root", templates.Nginx{Listen: "8787"}, "--root"},
		{"no listen", templates.Nginx{Root: root}, "--listen: empty"},
		{"host name", templates.Nginx{Root: root, Listen: "localhost:8787"}, `"localhost" is not an IP address`},
		{"root with $", templates.Nginx{Root: openRoot(t, "/srv/$tree"), Listen: "8787"}, `--root "/srv/$tree": nginx would read "$" as a variable`},
		{"root with newline", templates.Nginx{Root: openRoot(t, "/srv/a\nb"), Listen: "8787"}, "control characters"},
		{"no run dir", std(templates.Nginx{}), "--run-dir is required"},
		{"relative run dir", std(templates.Nginx{RunDir: "run"}), `--run-dir "run": must be an absolute path`},
		{"missing run dir", std(templates.Nginx{RunDir: filepath.Join(run, "nope")}), "--run-dir: stat"},
		{"run dir is a file", std(templates.Nginx{RunDir: "/etc/hostname"}), "not a directory"},
		{"run dir with $", std(templates.Nginx{RunDir: "/run/$x"}), "--run-dir"},
		{"user with newline", std(templates.Nginx{RunDir: run, User: "www-data\nuser root"}), "--user"},
		{"group without user", std(templates.Nginx{RunDir: run, Group: "www-data"}), "--group \"www-data\": needs --user"},
		{"timeout not whole seconds", templates.Nginx{Root: root, Listen: "8787", Timeouts: templates.Timeouts{Send: 500 * time.Millisecond}},
			"timeout Send 500ms: must be a whole number of seconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRenderError(t, "RenderNginx", func(w io.Writer) error { return templates.RenderNginx(w, tt.c) }, tt.want)
		})
	}
}

// TestRenderNginxListen checks what each --listen form becomes.
func TestRenderNginxListen(t *testing.T) {
	root := openRoot(t, "/srv/tree")
	for listen, want := range map[string]string{
		"8787":           "8787",
		":8787":          "8787",
		"127.0.0.1:8787": "127.0.0.1:8787",
		"[::1]:8787":     "[::1]:8787",
		"[::]:8787":      "[::]:8787",
	} {
		var buf bytes.Buffer
		if err := templates.RenderNginx(&buf, templates.Nginx{Listen: listen, Root: root}); err != nil {
			t.Fatalf("%s: %v", listen, err)
		}
		if !strings.Contains(buf.String(), "\n    listen "+want+";\n") {
			t.Errorf("--listen %s: config lacks \"listen %s;\"", listen, want)
		}
	}
}

// TestNginxRepoPattern: the repository grammar of the nginx locations is
// the tree package's, so nginx serves exactly the repositories the catalog writes.
func TestNginxRepoPattern(t *testing.T) {
	var buf bytes.Buffer
	if err := templates.RenderNginx(&buf, templates.Nginx{Listen: "8787", Root: openRoot(t, "/srv/tree")}); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\(\?<image_serve_repo>(.*?)\)/blobs/`).FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatal("no blob location with a repository capture")
	}
	re := regexp.MustCompile(`^(?:` + m[1] + `)$`)
	for _, name := range []string{"app", "ns/app", "a/b/c/d", "a.b_c__d--e", "tripleomaster/openstack-nova-api",
		"", "../etc", "ns/.hidden", "NS/app", "ns//app", "ns/app/", "a___b", "a..b", "-a", ".tags", "ns/app/manifests/.tags"} {
		want := tree.ValidateRepo(name) == nil
		if got := re.MatchString(name); got != want {
			t.Errorf("nginx matches repository %q: %v, catalog accepts it: %v", name, got, want)
		}
	}
}

// nginxTest runs nginx's syntax check on conf.
func nginxTest(t *testing.T, conf, prefix string) {
	t.Helper()
	cmd := exec.Command(testserver.NginxBinary(t), "-t", "-c", conf, "-p", prefix, "-e", filepath.Join(prefix, "error.log"))
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		data, _ := os.ReadFile(conf)
		t.Fatalf("%s: %v\n%s\n--- %s:\n%s", cmd, err, out, conf, data)
	}
}

func TestNginxStandaloneConfigtest(t *testing.T) {
	run := t.TempDir()
	conf := filepath.Join(run, "nginx.conf")
	var buf bytes.Buffer
	c := templates.Nginx{Listen: "127.0.0.1:8787", Root: oddRoot(t), Standalone: true, RunDir: run, User: "nobody", Group: "nogroup"}
	if err := templates.RenderNginx(&buf, c); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxTest(t, conf, run)
}

// TestNginxIncludeConfigtest proves the deployable part works where
// distributions put it: included inside http {} after their own settings
// (Debian's stock nginx.conf turns gzip on), twice, as two trees in one
// nginx would be.
func TestNginxIncludeConfigtest(t *testing.T) {
	run := t.TempDir()
	for i, listen := range []string{"[::1]:8787", "127.0.0.1:8788"} {
		var buf bytes.Buffer
		if err := templates.RenderNginx(&buf, templates.Nginx{Listen: listen, Root: oddRoot(t)}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(run, "image-serve"+string(rune('a'+i))+".conf"), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := "pid " + run + "/pid;\nevents {}\nhttp {\n    include /etc/nginx/mime.types;\n    default_type application/octet-stream;\n" +
		"    gzip on;\n    open_file_cache max=100;\n    client_body_temp_path " + run + "/body;\n" +
		"    include " + run + "/image-serve*.conf;\n}\n"
	conf := filepath.Join(run, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	nginxTest(t, conf, run)
}

// TestNginxOddRoot serves the whole contract from a tree whose path needs
// quoting, so every quoted path in the config is proven to name the tree.
func TestNginxOddRoot(t *testing.T) {
	root := oddRoot(t)
	f := contract.Build(t, root)
	contract.Run(t, testserver.Nginx(t, root), f, contract.Nginx)
}
