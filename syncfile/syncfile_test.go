package syncfile

import (
	"os"
	"strings"
	"testing"
)

func TestSkopeoExample(t *testing.T) {
	b, err := os.ReadFile("testdata/skopeo-sync-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Registries) != 2 {
		t.Fatalf("%d registries, want 2", len(f.Registries))
	}
	r := f.Registries[0]
	if r.Host != "registry.example.com" || r.CertDir != "/home/john/certs" || r.TLSVerify == nil || !*r.TLSVerify {
		t.Errorf("registry %+v", r)
	}
	if r.Credentials == nil || r.Credentials.Username != "john" || r.Credentials.Password != "this is a secret" {
		t.Errorf("credentials %+v", r.Credentials)
	}
	var got []string
	for _, im := range r.Images {
		got = append(got, im.Repo)
	}
	if strings.Join(got, " ") != "busybox redis nginx alpine" {
		t.Errorf("images %v, want busybox redis nginx alpine", got)
	}
	busybox, redis, nginx, alpine := r.Images[0], r.Images[1], r.Images[2], r.Images[3]
	if !busybox.AllTags() || !busybox.Selects("anything") {
		t.Errorf("busybox: not every tag")
	}
	if redis.AllTags() || len(redis.Tags) != 2 || len(redis.Digests) != 1 || !redis.Selects("1.0") || redis.Selects("3.0") {
		t.Errorf("redis %+v", redis)
	}
	if !nginx.Selects("1.13.2-alpine-perl") || nginx.Selects("1.13.3-alpine-perl") {
		t.Errorf("nginx regex selects wrongly")
	}
	for tag, want := range map[string]bool{"3.12.1": true, "3.13": true, "3.14.0": false, "3.17.2": true, "v3.18": true, "latest": false} {
		if alpine.Selects(tag) != want {
			t.Errorf("alpine semver: Selects(%q) = %v, want %v", tag, !want, want)
		}
	}
	q := f.Registries[1]
	if q.Host != "quay.io" || q.TLSVerify == nil || *q.TLSVerify || len(q.Images) != 1 || q.Images[0].Repo != "coreos/etcd" || q.Images[0].Tags[0] != "latest" {
		t.Errorf("quay.io %+v", q)
	}
}

func TestAdditions(t *testing.T) {
	f, err := Parse([]byte(`
reg.example:5000:
  prefix: /mirror/upstream/
  platforms: [linux/amd64, linux/arm64/v8]
  exclude: ['-rc', '^dev-']
  immutable: ['^v\d+\.\d+\.\d+$']
  referrers: false
  images:
    app: []
    tools:
      tags: [a, b]
      platforms: [linux/s390x]
      exclude: []
      referrers: true
`))
	if err != nil {
		t.Fatal(err)
	}
	r := f.Registries[0]
	if r.Prefix != "mirror/upstream" {
		t.Errorf("prefix %q", r.Prefix)
	}
	app, tools := r.Images[0], r.Images[1]
	if len(app.Platforms) != 2 || app.WantsReferrers() || !app.IsImmutable("v1.2.3") || app.IsImmutable("latest") {
		t.Errorf("app did not inherit the registry's options: %+v", app.Options)
	}
	if app.Selects("1.0-rc1") || app.Selects("dev-x") || !app.Selects("1.0") {
		t.Errorf("app's exclude patterns do not apply")
	}
	if len(tools.Platforms) != 1 || tools.Platforms[0] != "linux/s390x" || !tools.WantsReferrers() || !tools.Selects("a") || tools.Selects("c") {
		t.Errorf("tools: its own options do not replace the registry's: %+v", tools)
	}
	if !tools.IsImmutable("v1.0.0") {
		t.Errorf("tools did not inherit immutable")
	}
}

func TestAliasesAndMerge(t *testing.T) {
	f, err := Parse([]byte(`
reg.one: &d
  tls-verify: false
  images:
    a: []
reg.two:
  <<: *d
  cert-dir: /certs
`))
	if err != nil {
		t.Fatal(err)
	}
	two := f.Registries[1]
	if two.TLSVerify == nil || *two.TLSVerify || two.CertDir != "/certs" || len(two.Images) != 1 {
		t.Errorf("merged registry %+v", two)
	}
}

func TestBadInput(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty", "", "no registry"},
		{"comment only", "# nothing\n", "no registry"},
		{"not yaml", "reg.io:\n  images: [\n", "not valid YAML: line"},
		{"tabs", "reg.io:\n\timages: {}\n", "not valid YAML"},
		{"list at top", "- reg.io\n", "line 1: want a mapping of registries"},
		{"two documents", "reg.io: {images: {a: []}}\n---\nx.io: {images: {a: []}}\n", "line 2: a second YAML document"},
		{"scheme", "https://reg.io:\n  images: {a: []}\n", `line 1: registry "https://reg.io": not a registry host`},
		{"path in host", "reg.io/ns:\n  images: {a: []}\n", `registry "reg.io/ns": not a registry host`},
		{"twice", "reg.io:\n  images: {a: []}\nreg.io:\n  images: {b: []}\n", `line 3: registry "reg.io" given twice (first on line 1)`},
		{"no images", "reg.io:\n  tls-verify: true\n", `line 1: registry "reg.io": no images`},
		{"unknown registry key", "reg.io:\n  images: {a: []}\n  tls-verfy: false\n", `line 3: registry "reg.io": unknown key "tls-verfy"`},
		{"unknown image key", "reg.io:\n  images:\n    a:\n      tags: [x]\n      platform: [linux/amd64]\n", `line 5: registry "reg.io": images: "a": unknown key "platform"`},
		{"unknown credentials key", "reg.io:\n  images: {a: []}\n  credentials:\n    user: x\n", `line 4: registry "reg.io": credentials: unknown key "user"`},
		{"no username", "reg.io:\n  images: {a: []}\n  credentials: {password: x}\n", "credentials: no username"},
		{"bad regex", "reg.io:\n  images-by-tag-regex:\n    nginx: '^1\\.(13'\n", `line 3: registry "reg.io": images-by-tag-regex: "nginx": regex "^1\\.(13" does not compile: missing closing )`},
		{"bad exclude", "reg.io:\n  images: {a: []}\n  exclude: ['[']\n", `line 3: registry "reg.io": exclude: regex "[" does not compile`},
		{"bad immutable", "reg.io:\n  images:\n    a: {immutable: ['a(']}\n", `registry "reg.io": images: "a": immutable (line 3): regex "a(" does not compile`},
		{"bad semver", "reg.io:\n  images-by-semver:\n    alpine: '>= banana'\n", `line 3: registry "reg.io": images-by-semver: "alpine": semver range ">= banana" does not parse`},
		{"bad semver in list", "reg.io:\n  images-by-semver:\n    alpine: ['>= 3', '~> x.y']\n", `images-by-semver: "alpine": semver range "~> x.y"`},
		{"empty semver list", "reg.io:\n  images-by-semver:\n    alpine: []\n", "no semver range"},
		{"bad repo", "reg.io:\n  images:\n    App: []\n", `line 3: registry "reg.io": images: "App": not a repository name`},
		{"bad tag", "reg.io:\n  images:\n    app: ['-x']\n", `images: "app": line 3: "-x" is not a valid tag`},
		{"bad digest", "reg.io:\n  images:\n    app: ['sha256:abc']\n", `"sha256:abc" is not a valid digest`},
		{"images a list", "reg.io:\n  images: [a, b]\n", `line 2: registry "reg.io": images: want a mapping, got a list`},
		{"image a string", "reg.io:\n  images:\n    app: latest\n", `images: "app": want a list of tags and digests`},
		{"tls-verify string", "reg.io:\n  images: {a: []}\n  tls-verify: 'no'\n", `tls-verify: want true or false, got "no"`},
		{"bad platform", "reg.io:\n  images: {a: []}\n  platforms: [linux]\n", `platforms: "linux": want OS/ARCH[/VARIANT]`},
		{"bad prefix", "reg.io:\n  images: {a: []}\n  prefix: Mirror\n", `prefix "Mirror": not a repository path`},
		{"empty cert-dir", "reg.io:\n  images: {a: []}\n  cert-dir: ''\n", "cert-dir: empty"},
		{"merge of a list", "reg.io:\n  <<: [1]\n  images: {a: []}\n", "merge key"},
		{"store with credentials", "docker-daemon:\n  images: {app: []}\n  credentials: {username: x}\n", `line 3: "docker-daemon": credentials: not for a store on this machine`},
		{"store with tls-verify", "containers-storage:\n  images: {app: []}\n  tls-verify: false\n", `line 3: "containers-storage": tls-verify: not for a store on this machine`},
		{"store with platforms", "containers-storage:\n  platforms: [linux/amd64]\n  images: {app: []}\n", `line 2: "containers-storage": platforms: not for a store`},
		{"store image with referrers", "docker-daemon:\n  images:\n    app: {tags: [x], referrers: false}\n", `line 3: "docker-daemon": images: "app": referrers: not for a store on this machine (want tags, exclude or immutable)`},
		{"store digest", "containers-storage:\n  images:\n    localhost/app: ['sha256:" + strings.Repeat("a", 64) + "']\n", `"containers-storage": images: "localhost/app": line 3: "sha256:aaaa` + strings.Repeat("a", 60) + `": a store on this machine is synced by tag`},
		{"store bad repo", "docker-daemon:\n  images:\n    'reg.io:x/app': []\n", `line 3: "docker-daemon": images: "reg.io:x/app": not a repository name as the store names it`},
		{"store spec unclosed", "containers-storage:[/var/lib/s:\n  images: {app: []}\n", `line 1: "containers-storage:[/var/lib/s": want containers-storage or containers-storage:[STORE-SPEC]`},
		{"store spec unopened", "containers-storage:/var/lib/s]:\n  images: {app: []}\n", `want containers-storage or containers-storage:[STORE-SPEC]`},
		{"store spec empty", "'containers-storage:[]':\n  images: {app: []}\n", `want containers-storage or containers-storage:[STORE-SPEC]`},
		{"daemon with spec", "'docker-daemon:[/x]':\n  images: {app: []}\n", `docker-daemon takes no store specifier`},
		{"store without images", "docker-daemon:\n  prefix: x\n", `line 1: "docker-daemon": no images`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("parsed: %+v", f)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is several lines: %q", err)
			}
		})
	}
}

// TestLocalStores: a store on this machine as a top-level key — podman's
// configured store, another by its STORE-SPEC, the Docker Engine's — with
// repositories named as the store names them, a port included, and the
// options a local image takes.
func TestLocalStores(t *testing.T) {
	f, err := Parse([]byte(`
containers-storage:
  prefix: hotfix
  immutable: ['^v']
  images:
    localhost/app: [hotfix, "1.2"]
    registry.local:5000/team/base: []
  images-by-tag-regex:
    localhost/nova: ^hotfix-
containers-storage:[vfs@/srv/store+/run/store:vfs.ignore_chown_errors=true]:
  images:
    localhost/app: {tags: [v2], exclude: ['^v1']}
docker-daemon:
  images-by-semver:
    app: '>= 1.0'
reg.io:
  images: {app: [v1]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Registries) != 4 {
		t.Fatalf("%d entries, want 4", len(f.Registries))
	}
	cs, other, daemon, reg := f.Registries[0], f.Registries[1], f.Registries[2], f.Registries[3]
	if cs.Local != ContainersStorage || cs.Store != "" || cs.Prefix != "hotfix" || len(cs.Images) != 3 {
		t.Errorf("containers-storage: %+v", cs)
	}
	if im := cs.Images[0]; im.Repo != "localhost/app" || strings.Join(im.Tags, " ") != "hotfix 1.2" || !im.IsImmutable("v3") {
		t.Errorf("containers-storage localhost/app: %+v", im)
	}
	if im := cs.Images[1]; im.Repo != "registry.local:5000/team/base" || !im.AllTags() {
		t.Errorf("containers-storage registry.local:5000/team/base: %+v", im)
	}
	if im := cs.Images[2]; im.Kind != ByRegex || !im.Selects("hotfix-2") || im.Selects("v1") {
		t.Errorf("containers-storage localhost/nova: %+v", im)
	}
	if other.Local != ContainersStorage || other.Store != "vfs@/srv/store+/run/store:vfs.ignore_chown_errors=true" {
		t.Errorf("containers-storage:[…]: %+v", other)
	}
	if im := other.Images[0]; im.Selects("v1.1") || !im.Selects("v2") {
		t.Errorf("containers-storage:[…] localhost/app: %+v", im)
	}
	if daemon.Local != DockerDaemon || daemon.Images[0].Kind != BySemver || !daemon.Images[0].Selects("1.2.0") {
		t.Errorf("docker-daemon: %+v", daemon)
	}
	if reg.Local != "" {
		t.Errorf("reg.io read as a store: %+v", reg)
	}
}

func TestReadBound(t *testing.T) {
	big := "reg.io:\n  images: {a: []}\n#" + strings.Repeat("x", MaxSize)
	if _, err := Read(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "over") {
		t.Fatalf("a file over MaxSize: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("testdata/skopeo-sync-example.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("reg.io:\n  images:\n    a: {tags: [x], exclude: ['^y']}\n  <<: {tls-verify: true}\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("containers-storage:[vfs@/s]:\n  images: {localhost/a: [x]}\ndocker-daemon: {images: {a: []}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of several lines: %q", err)
			}
			return
		}
		for _, r := range file.Registries {
			for _, im := range r.Images {
				im.Selects("latest")
				im.IsImmutable("v1")
			}
		}
	})
}

// TestREADMEExample: the file README's "Mirroring a release" shows parses.
func TestREADMEExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "## Mirroring a release")
	if start < 0 {
		t.Fatal("README has no Mirroring a release section")
	}
	s = s[start:]
	begin := strings.Index(s, "```yaml\n")
	end := strings.Index(s[begin+8:], "```")
	if begin < 0 || end < 0 {
		t.Fatal("no YAML example in the section")
	}
	f, err := Parse([]byte(s[begin+8 : begin+8+end]))
	if err != nil {
		t.Fatalf("README's example: %v", err)
	}
	if len(f.Registries) != 2 || f.Registries[0].Prefix != "rhosp17" || len(f.Registries[0].Images) != 4 {
		t.Errorf("README's example parsed as %+v", f)
	}
	im := f.Registries[0].Images[1]
	if im.Selects("17.1-rc1") || !im.Selects("17.1") || !f.Registries[0].Images[0].IsImmutable("17.1.4") {
		t.Errorf("README's example: filters do not do what it says")
	}
}

// The load a run may put on a registry: max-requests and
// requests-per-second, and what they refuse.
func TestRegistryLimits(t *testing.T) {
	f, err := Parse([]byte("reg.io:\n  images: {a: []}\n  max-requests: 4\n  requests-per-second: 2.5\nother.io:\n  images: {b: []}\n  requests-per-second: 10\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := f.Registries[0]; r.MaxRequests != 4 || r.RequestsPerSecond != 2.5 {
		t.Errorf("reg.io: max-requests %d, requests-per-second %v", r.MaxRequests, r.RequestsPerSecond)
	}
	if r := f.Registries[1]; r.MaxRequests != 0 || r.RequestsPerSecond != 10 {
		t.Errorf("other.io: max-requests %d, requests-per-second %v", r.MaxRequests, r.RequestsPerSecond)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"max-requests: 0", `line 3: registry "reg.io": max-requests: want a whole number of requests, at least 1, got "0"`},
		{"max-requests: 2.5", `max-requests: want a whole number`},
		{"max-requests: many", `max-requests: want a whole number`},
		{"requests-per-second: 0", `line 3: registry "reg.io": requests-per-second: want a rate above 0, got "0"`},
		{"requests-per-second: -1", `requests-per-second: want a rate above 0`},
		{"requests-per-second: .inf", `requests-per-second: want a rate above 0`},
		{"requests-per-second: fast", `requests-per-second: want a rate above 0`},
	} {
		_, err := Parse([]byte("reg.io:\n  images: {a: []}\n  " + tc.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

// TestREADMELocalExample: the file README shows for images built on this
// machine parses, each key a store.
func TestREADMELocalExample(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	at := strings.Index(s, "```yaml\ncontainers-storage:")
	if at < 0 {
		t.Fatal("README has no example of a store in a sync file")
	}
	s = s[at+len("```yaml\n"):]
	f, err := Parse([]byte(s[:strings.Index(s, "```")]))
	if err != nil {
		t.Fatalf("README's example: %v", err)
	}
	if len(f.Registries) != 2 || f.Registries[0].Local != ContainersStorage || f.Registries[0].Store != "overlay@/var/lib/containers/storage" ||
		f.Registries[0].Prefix != "hotfix" || len(f.Registries[0].Images) != 2 || f.Registries[1].Local != DockerDaemon {
		t.Errorf("README's example parsed as %+v", f)
	}
	if im := f.Registries[0].Images[1]; !im.Selects("17.1-hotfix2") || im.Selects("17.1") {
		t.Errorf("README's example: the regex does not do what it says")
	}
}
