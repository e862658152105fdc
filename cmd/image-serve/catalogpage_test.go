package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/catalog"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// chromiumTimeout bounds one run of headless Chromium.
const chromiumTimeout = 90 * time.Second

// TestCatalogPageChromium: the catalog page at / loads in headless
// Chromium (Debian's chromium) from the embedded server, Apache and
// nginx, and lists what list --long lists — every tag as REPO:TAG with
// its short digest — each with a copy button whose pull command names
// the host the browser reached. Without JavaScript the page already
// shows each REPO:TAG. On a failure a screenshot of the page is written
// into the test's temporary directory, and the message names it.
func TestCatalogPageChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run the project's test setup (make test-deps), which installs the Debian package chromium")
	}
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "ns/other:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "--platform", "linux/amd64", "oci:../../testdata/hello-oci:latest", "ns/other:amd64")
	want := listedTags(t, root)
	if len(want) != 3 {
		t.Fatalf("list --json lists %v, want the three tags exported", want)
	}

	shots := t.TempDir()
	for _, s := range []struct{ name, base string }{
		{"embedded", testserver.Embedded(t, root)},
		{"apache", testserver.Apache(t, root)},
		{"nginx", testserver.Nginx(t, root)},
	} {
		t.Run(s.name, func(t *testing.T) {
			u := s.base + "/"
			host := strings.TrimPrefix(s.base, "http://")
			fail := func(format string, args ...any) {
				t.Helper()
				shot := filepath.Join(shots, s.name+".png")
				if err := screenshot(chromium, u, shot, t.TempDir()); err != nil {
					shot = "none: " + err.Error()
				}
				t.Fatalf("%s: %s (screenshot: %s)", u, fmt.Sprintf(format, args...), shot)
			}

			// Without JavaScript: the page as served names each tag.
			raw := getPage(t, u)
			for _, tg := range want {
				if !strings.Contains(raw, "<td>"+html.EscapeString(tg.ref)+"<td>") {
					fail("the page as served (no script run) does not show %s", tg.ref)
				}
			}

			dom, err := dumpDOM(chromium, u, t.TempDir())
			if err != nil {
				fail("chromium --dump-dom: %v", err)
			}
			got := domTags(dom)
			listed := slices.Clone(got)
			for i := range listed {
				listed[i].pull = ""
			}
			if !slices.Equal(listed, want) {
				fail("the page lists %v, list --long lists %v\n%s", got, want, dom)
			}
			for _, tg := range got {
				if pull := "podman pull " + host + "/" + tg.ref; tg.pull != pull {
					fail("the copy button of %s copies %q, want %q", tg.ref, tg.pull, pull)
				}
			}
			if !strings.Contains(dom, `<span id="host">`+host+`</span>`) {
				fail("the pull hint does not name the host %s", host)
			}
		})
	}
}

// TestCatalogPageFollowsCommands: export, delete, gc and migrate each
// leave the page at / showing exactly the tags list --long lists.
func TestCatalogPageFollowsCommands(t *testing.T) {
	root := testserver.TempRoot(t)
	base := testserver.Embedded(t, root)
	check := func(after string) {
		t.Helper()
		want := listedTags(t, root)
		got := servedTags(getPage(t, base+"/"))
		var wantRefs []string
		for _, tg := range want {
			wantRefs = append(wantRefs, tg.ref)
		}
		if !slices.Equal(got, wantRefs) {
			t.Errorf("after %s the page lists %q, list --long %q", after, got, wantRefs)
		}
	}
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "ns/other:v1")
	check("export")
	if !slices.Contains(servedTags(getPage(t, base+"/")), "ns/other:v1") {
		t.Fatal("the exported tag is not on the page")
	}
	mustRun(t, "--root", root.Dir(), "-q", "delete", "ns/other:v1")
	check("delete")
	if slices.Contains(servedTags(getPage(t, base+"/")), "ns/other:v1") {
		t.Fatal("the deleted tag is still on the page")
	}
	mustRun(t, "--root", root.Dir(), "-q", "gc", "--grace", "0")
	check("gc")
	mustRun(t, "--root", root.Dir(), "-q", "migrate")
	check("migrate")
}

// pageTag is a tag as list --long and the page show it.
type pageTag struct {
	ref, digest string
	pull        string // the page's copy button's command; "" from list
}

func (p pageTag) String() string { return p.ref + "@" + p.digest }

// listedTags are the tags list --json lists (pins left out: no page row
// is a pin), with the short digest list --long prints.
func listedTags(t *testing.T, root *tree.Root) []pageTag {
	t.Helper()
	var tags []catalog.Tag
	if err := json.Unmarshal([]byte(mustRun(t, "--root", root.Dir(), "list", "--json").stdout), &tags); err != nil {
		t.Fatal(err)
	}
	var out []pageTag
	for _, tg := range tags {
		if !tg.Pinned {
			out = append(out, pageTag{ref: tg.Repository + ":" + tg.Tag, digest: shortDigest(tg.Digest.String())})
		}
	}
	return out
}

// domRow is a tag row of the page once its script ran: REPO:TAG, the
// button the script added, the digest.
var domRow = regexp.MustCompile(`<tr><td>([^<]*)<button[^>]*?data-pull="([^"]*)"[^>]*>[^<]*</button></td><td>([^<]*)</td>`)

func domTags(dom string) []pageTag {
	var out []pageTag
	for _, m := range domRow.FindAllStringSubmatch(dom, -1) {
		out = append(out, pageTag{ref: html.UnescapeString(m[1]), digest: m[3]})
		out[len(out)-1].pull = html.UnescapeString(m[2])
	}
	return out
}

// servedTags are the REPO:TAG of the page as served.
func servedTags(page string) []string {
	var refs []string
	for _, m := range regexp.MustCompile(`(?m)^<tr><td>([^<]*)<td>`).FindAllStringSubmatch(page, -1) {
		refs = append(refs, html.UnescapeString(m[1]))
	}
	return refs
}

// getPage GETs the catalog page at u: 200, HTML.
func getPage(t *testing.T, u string) string {
	t.Helper()
	resp, body := httpGet(t, u)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != tree.PageContentType {
		t.Fatalf("GET %s: Content-Type %q", u, ct)
	}
	return string(body)
}

// chromiumArgs start a headless Chromium of its own profile (profile), as
// root can (no sandbox), touching nothing of the machine's.
func chromiumArgs(profile string, args ...string) []string {
	return append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile}, args...)
}

// dumpDOM is the page at u once its script ran, serialized.
func dumpDOM(chromium, u, profile string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, chromium, chromiumArgs(profile, "--dump-dom", u)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}

// screenshot writes a PNG of the page at u into file.
func screenshot(chromium, u, file, profile string) error {
	ctx, cancel := context.WithTimeout(context.Background(), chromiumTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, chromium,
		chromiumArgs(profile, "--screenshot="+file, "--window-size=1280,900", u)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	return nil
}
