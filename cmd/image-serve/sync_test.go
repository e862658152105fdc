package main

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
)

// syncSource is a registry of repositories sharing a base layer: app
// with 1.0, 1.1, 2.0-rc1 and latest, tools with a multi-arch v1.
func syncSource(t *testing.T, reg *testregistry.Registry) v1.Layer {
	base := testregistry.Layer(t, 4096, types.DockerLayer)
	for _, tag := range []string{"1.0", "1.1", "2.0-rc1", "latest"} {
		reg.PushImage(t, "app:"+tag, testregistry.DockerImage(t, base, testregistry.Layer(t, 256, types.DockerLayer)))
	}
	reg.PushIndex(t, "tools:v1", types.OCIImageIndex, map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base),
		"arm64": testregistry.OCIImage(t, "arm64", base),
	})
	return base
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSyncFile: a sync file with a skopeo section and our additions
// mirrors, and a second run asks one HEAD per tag and fetches nothing;
// --dry-run leaves the tree byte for byte as it was; --digestfile names
// every tag.
func TestSyncFile(t *testing.T) {
	reg := testregistry.Start(t)
	base := syncSource(t, reg)
	root := filepath.Join(t.TempDir(), "root")
	file := writeFile(t, "sync.yaml", fmt.Sprintf(`
%s:
  tls-verify: false
  prefix: mirror
  exclude: ['-rc']
  images:
    app: []
    tools:
      tags: [v1]
      immutable: ['^v1$']
`, reg.Host))
	digests := filepath.Join(t.TempDir(), "digests")
	r := mustRun(t, "--root", root, "sync", "-f", file, "--digestfile", digests)
	if !strings.Contains(r.stderr, "synced=4") {
		t.Errorf("stderr does not say 4 synced:\n%s", r.stderr)
	}
	d, _ := base.Digest()
	if n := reg.BlobGets(d.String()); n != 1 {
		t.Errorf("the shared layer was fetched %d times", n)
	}
	list := mustRun(t, "--root", root, "list", "mirror/app").stdout
	for _, tag := range []string{"1.0", "1.1", "latest"} {
		if !strings.Contains(list, tag) {
			t.Errorf("mirror/app lacks %s:\n%s", tag, list)
		}
	}
	if strings.Contains(list, "rc") {
		t.Errorf("an excluded tag was synced:\n%s", list)
	}
	lines, _ := os.ReadFile(digests)
	if n := strings.Count(string(lines), "\n"); n != 4 || !strings.Contains(string(lines), " mirror/tools:v1\n") || !strings.HasPrefix(string(lines), "sha256:") {
		t.Errorf("digest file:\n%s", lines)
	}

	reg.ResetRequests()
	before := snapshot(t, root)
	r = mustRun(t, "--root", root, "sync", "-f", file, "--dry-run")
	if !strings.Contains(r.stderr, "would_sync=0") || snapshot(t, root) != before {
		t.Errorf("dry run of an unchanged source: tree changed, or stderr:\n%s", r.stderr)
	}
	reqs := reg.Requests()
	// app's three tags are asked for; tools:v1 is immutable and present.
	if reqs["HEAD manifests"] != 3 || reqs["GET manifests"] != 0 || reqs["GET blobs"] != 0 {
		t.Errorf("an unchanged run's requests: %v", reqs)
	}

	// A new tag upstream: a dry run names it, and changes nothing.
	reg.PushImage(t, "app:1.2", testregistry.DockerImage(t, base))
	r = mustRun(t, "--root", root, "--log-format", "json", "sync", "-f", file, "--dry-run")
	if !strings.Contains(r.stderr, `"msg":"would sync"`) || !strings.Contains(r.stderr, `"dest":"mirror/app:1.2"`) || snapshot(t, root) != before {
		t.Errorf("dry run with a new tag:\n%s", r.stderr)
	}
	r = mustRun(t, "--root", root, "sync", "-f", file, "--json")
	if !strings.Contains(r.stdout, `"dest": "mirror/app:1.2",
    "status": "synced"`) || !strings.Contains(r.stdout, `"status": "immutable"`) {
		t.Errorf("--json:\n%s", r.stdout)
	}
}

// TestSyncArgs: docker://HOST/REPO is every tag, docker://HOST/REPO:TAG
// one; --scoped puts the host in the path.
func TestSyncArgs(t *testing.T) {
	reg := testregistry.Start(t)
	syncSource(t, reg)
	root := filepath.Join(t.TempDir(), "root")
	r := mustRun(t, "--root", root, "sync", "--dry-run", "--src-tls-verify=false", "docker://"+reg.Host+"/app")
	if !strings.Contains(r.stderr, "would_sync=4") {
		t.Errorf("dry run: want 4 tags that would sync:\n%s", r.stderr)
	}
	if _, err := os.Stat(root); err == nil {
		t.Errorf("a dry run created the tree")
	}
	mustRun(t, "--root", root, "sync", "--src-tls-verify=false", "--scoped", "docker://"+reg.Host+"/app", "docker://"+reg.Host+"/tools:v1")
	host := strings.ReplaceAll(reg.Host, ":", "-")
	list := mustRun(t, "--root", root, "list").stdout
	for _, repo := range []string{host + "/app", host + "/tools"} {
		if !strings.Contains(list, repo) {
			t.Errorf("no %s in:\n%s", repo, list)
		}
	}
	tags := mustRun(t, "--root", root, "list", host+"/app").stdout
	if strings.Count(tags, "\n") < 4 {
		t.Errorf("every tag of app, want 4:\n%s", tags)
	}
}

// TestExportDefaultsToLatest: export docker://HOST/REPO exports :latest.
func TestExportDefaultsToLatest(t *testing.T) {
	reg := testregistry.Start(t)
	syncSource(t, reg)
	root := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root, "export", "--src-tls-verify=false", "docker://"+reg.Host+"/app")
	if out := mustRun(t, "--root", root, "list", "app").stdout; !strings.Contains(out, "latest") {
		t.Errorf("app:latest not exported:\n%s", out)
	}
}

// TestSrcCertDir: a registry behind a certificate no system trusts is
// reached with --src-cert-dir holding it as a CA (export and sync), and
// refused, clearly, without.
func TestSrcCertDir(t *testing.T) {
	reg := testregistry.StartTLS(t)
	syncSource(t, reg)
	certs := t.TempDir()
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), reg.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "root")
	r := run(t, "--root", root, "export", "docker://"+reg.Host+"/app:1.0")
	if r.code != 1 || !strings.Contains(r.stderr, "certificate is not trusted") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("without --src-cert-dir: exit %d\n%s", r.code, r.stderr)
	}
	mustRun(t, "--root", root, "export", "--src-cert-dir", certs, "docker://"+reg.Host+"/app:1.0")
	mustRun(t, "--root", root, "sync", "--src-cert-dir", certs, "docker://"+reg.Host+"/tools")
	file := writeFile(t, "sync.yaml", fmt.Sprintf("%s:\n  cert-dir: %s\n  images:\n    app: ['1.1']\n", reg.Host, certs))
	mustRun(t, "--root", root, "sync", "-f", file)

	r = run(t, "--root", root, "sync", "--src-cert-dir", t.TempDir(), "docker://"+reg.Host+"/app:1.0")
	if r.code != 1 || !strings.Contains(r.stderr, "no *.crt CA") {
		t.Errorf("an empty --src-cert-dir: exit %d\n%s", r.code, r.stderr)
	}
}

// TestSyncFailures: an unreachable registry, a 401 and a listing that
// fails halfway each fail the run with one line naming the entry, exit
// 1, and publish nothing; --keep-going syncs the rest and lists the
// failures at the end.
func TestSyncFailures(t *testing.T) {
	reg := testregistry.Start(t)
	syncSource(t, reg)
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v2/locked/"):
			w.WriteHeader(http.StatusUnauthorized)
			return true
		case r.URL.Path == "/v2/halfway/tags/list" && r.URL.Query().Get("last") == "":
			w.Header().Set("Link", `</v2/halfway/tags/list?last=a>; rel="next"`)
			fmt.Fprint(w, `{"tags":["a"]}`)
			return true
		case r.URL.Path == "/v2/halfway/tags/list":
			w.WriteHeader(http.StatusBadRequest)
			return true
		}
		return false
	}
	for _, tc := range []struct{ name, images, want string }{
		{"401", "    locked: ['1']\n", `line 6: ` + reg.Host + `/locked: ` + reg.Host + `/locked:1: authentication failed (HTTP 401`},
		{"listing halfway", "    halfway: []\n", `line 6: ` + reg.Host + `/halfway: tag listing of ` + reg.Host + `/halfway (failed after 1 tags)`},
		{"unreachable", "", "cannot reach the registry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			host := reg.Host
			content := fmt.Sprintf("%s:\n  tls-verify: false\n  images:\n    app: ['1.0']\n    tools: ['v1']\n%s", host, tc.images)
			if tc.name == "unreachable" {
				content += "127.0.0.1:1:\n  tls-verify: false\n  images:\n    gone: ['1']\n"
			}
			file := writeFile(t, "sync.yaml", content)
			r := run(t, "-q", "--root", root, "sync", "-f", file)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("exit %d, want 1 and one line saying %q:\n%s", r.code, tc.want, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(root, "v2", "app")); err == nil {
				t.Errorf("app published although the run failed")
			}
			r = run(t, "-q", "--root", root, "sync", "--keep-going", "-f", file)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("--keep-going: exit %d\n%s", r.code, r.stderr)
			}
			list := mustRun(t, "--root", root, "list").stdout
			if !strings.Contains(list, "app") || !strings.Contains(list, "tools") {
				t.Errorf("--keep-going did not sync the rest:\n%s", list)
			}
		})
	}
}

// TestSyncSkopeoExample: the example file of skopeo-sync(1)
// (syncfile/testdata), with only its two hosts and its cert-dir changed
// to local registries, syncs: registry.example.com is an HTTPS registry
// whose CA is in the cert-dir (tls-verify: true, credentials sent),
// quay.io a plain HTTP one (tls-verify: false). Its digest entry, a
// placeholder no registry holds, is adapted too, to the digest of an
// image pushed to redis: it lands as a digest pin, with no tag.
func TestSyncSkopeoExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "syncfile", "testdata", "skopeo-sync-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	secure, plain := testregistry.StartTLS(t), testregistry.Start(t)
	img := func() v1.Image { return testregistry.DockerImage(t, testregistry.Layer(t, 128, types.DockerLayer)) }
	for _, ref := range []string{"busybox:1", "busybox:latest", "redis:1.0", "redis:2.0", "redis:3.0",
		"nginx:1.13.1-alpine-perl", "nginx:1.13.2-alpine-perl", "nginx:1.13.3-alpine-perl", "nginx:1.13.2",
		"alpine:3.11.0", "alpine:3.12.5", "alpine:3.14.0", "alpine:3.17.1", "alpine:edge"} {
		secure.PushImage(t, ref, img())
	}
	pinned := secure.PushImage(t, "redis:pinned-by-digest", img())
	plain.PushImage(t, "coreos/etcd:latest", img())
	plain.PushImage(t, "coreos/etcd:v3", img())
	certs := t.TempDir()
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), secure.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	adapted := strings.NewReplacer("registry.example.com:", secure.Host+":", "quay.io:", plain.Host+":", "/home/john/certs", certs,
		"sha256:0000000000000000000000000000000011111111111111111111111111111111", pinned.Digest).Replace(string(example))
	file := writeFile(t, "sync.yml", adapted)
	root := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root, "sync", "-f", file)
	if out := mustRun(t, "--root", root, "list", "--long", "redis").stdout; !strings.Contains(out, "redis@"+pinned.Digest) || !strings.Contains(out, "(pinned)") {
		t.Errorf("the digest entry is not pinned:\n%s", out)
	}
	want := map[string]string{
		"busybox":     "1 latest",
		"redis":       "1.0 2.0",
		"nginx":       "1.13.1-alpine-perl 1.13.2-alpine-perl",
		"alpine":      "3.12.5 3.17.1",
		"coreos/etcd": "latest",
	}
	for repo, tags := range want {
		out := mustRun(t, "--root", root, "list", repo).stdout
		if got := strings.Join(strings.Fields(out), " "); got != tags {
			t.Errorf("%s: tags %q, want %q", repo, got, tags)
		}
	}
}

// TestSyncCredentials: a registry that wants a password gets the file's
// credentials, or --src-authfile's; a wrong one is one line naming the
// entry, exit 1, nothing published.
func TestSyncCredentials(t *testing.T) {
	reg := testregistry.Start(t)
	syncSource(t, reg)
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if u, pw, ok := r.BasicAuth(); ok && u == "alice" && pw == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
	withCreds := func(pw string) string {
		return writeFile(t, "sync.yaml", fmt.Sprintf("%s:\n  tls-verify: false\n  credentials: {username: alice, password: %s}\n  images:\n    app: []\n", reg.Host, pw))
	}
	root := filepath.Join(t.TempDir(), "root")
	r := run(t, "-q", "--root", root, "sync", "-f", withCreds("wrong"))
	if r.code != 1 || !strings.Contains(r.stderr, "line 5: "+reg.Host+"/app: ") || !strings.Contains(r.stderr, "authentication failed") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("a wrong password: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(root); err == nil {
		if out := mustRun(t, "--root", root, "list").stdout; strings.TrimSpace(out) != "" {
			t.Errorf("published with a wrong password:\n%s", out)
		}
	}
	mustRun(t, "--root", root, "sync", "-f", withCreds("s3cret"))

	authFile := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	if err := os.WriteFile(authFile, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.Host, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	root2 := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root2, "sync", "--src-tls-verify=false", "--src-authfile", authFile, "docker://"+reg.Host+"/tools:v1")
}
