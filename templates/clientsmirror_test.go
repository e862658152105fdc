package templates

import (
	"errors"
	"strings"
	"testing"
)

// TestClientMirrors: --mirror lists caching tiers in the order nodes try
// them, before the registry, for its own repositories and for those of
// the upstreams it mirrors; an http:// tier is insecure.
func TestClientMirrors(t *testing.T) {
	c := Client{Registry: "192.0.2.1:8787", MirrorOf: []string{"docker.io"},
		Mirrors: []string{"http://192.0.2.20:8787/", "https://site.example:8787", "http://192.0.2.20:8787"}}
	order := func(t *testing.T, text string, want ...string) {
		t.Helper()
		at := 0
		for _, w := range want {
			i := strings.Index(text[at:], w)
			if i < 0 {
				t.Fatalf("%q not found after offset %d in\n%s", w, at, text)
			}
			at += i + len(w)
		}
	}
	files, err := ClientFiles("podman", c)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(files[0].Content)
	order(t, conf, `location = "192.0.2.1:8787"`,
		"[[registry.mirror]]\nlocation = \"192.0.2.20:8787\"\ninsecure = true\n",
		"[[registry.mirror]]\nlocation = \"site.example:8787\"\n\n",
		`prefix = "docker.io"`,
		"[[registry.mirror]]\nlocation = \"192.0.2.20:8787\"\ninsecure = true\n",
		"[[registry.mirror]]\nlocation = \"site.example:8787\"\n\n",
		"[[registry.mirror]]\nlocation = \"192.0.2.1:8787\"\ninsecure = true\n")
	if n := strings.Count(conf, `location = "192.0.2.20:8787"`); n != 2 {
		t.Errorf("the repeated tier is listed %d times, want once per [[registry]]", n)
	}

	files, err = ClientFiles("containerd", c)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		order(t, string(f.Content), `[host."http://192.0.2.20:8787"]`, `[host."https://site.example:8787"]`, `[host."http://192.0.2.1:8787"]`)
	}

	files, err = ClientFiles("docker", c)
	if err != nil {
		t.Fatal(err)
	}
	order(t, string(files[0].Content), `"192.0.2.1:8787"`, `"192.0.2.20:8787"`, `"registry-mirrors"`,
		`"http://192.0.2.20:8787"`, `"https://site.example:8787"`, `"http://192.0.2.1:8787"`)
}

func TestClientMirrorErrors(t *testing.T) {
	for _, tt := range []struct {
		kind   string
		c      Client
		reason string
	}{
		{"podman", Client{Registry: "192.0.2.1:8787", Mirrors: []string{"192.0.2.20:8787"}}, "not a caching tier's URL"},
		{"podman", Client{Registry: "192.0.2.1:8787", Mirrors: []string{"ftp://192.0.2.20:8787"}}, "not a caching tier's URL"},
		{"podman", Client{Registry: "192.0.2.1:8787", Mirrors: []string{"http://192.0.2.20:8787/v2/"}}, "not a caching tier's URL"},
		{"podman", Client{Registry: "192.0.2.1:8787", Mirrors: []string{"http://192.0.2.1:8787"}}, "is --registry itself"},
		{"docker", Client{Registry: "192.0.2.1:8787", Mirrors: []string{"http://192.0.2.20:8787"}}, "Docker Hub"},
	} {
		_, err := ClientFiles(tt.kind, tt.c)
		var ce *ClientError
		if !errors.As(err, &ce) || ce.Flag != "--mirror" || !strings.Contains(ce.Why, tt.reason) {
			t.Errorf("%s %v: %v, want a --mirror error: %s", tt.kind, tt.c.Mirrors, err, tt.reason)
		}
	}
}
