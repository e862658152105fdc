package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// The crash-point tests stop a writer at every durable step it takes
// (tree/crashpoint.go), one run per step, and check the tree each stop
// leaves: what a power cut or a SIGKILL at that instant would leave, and
// what a client reading at that instant would see. For each scenario:
//
//  1. The starting tree is built once and copied aside.
//  2. A clean run of the command, traced, gives its N steps; the steps
//     the writer is known to take must be among them.
//  3. For k = 1..N the starting tree is restored and the command run with
//     IMAGE_SERVE_CRASH_AT=k. It must die at step k, the same step as in
//     the clean run, and then:
//     - every tag that has a type map or is in a tags/list pulls completely
//     (go-containerregistry, every blob checked against its digest)
//     through the embedded server and Apache, both to the same digest,
//     and through nginx to that digest too — except for the tags the
//     command itself changes, which nginx may serve as before or after
//     (its links and Apache's type map are two files) or not yet at all;
//     - tags/list and _catalog parse on every server, and no temporary
//     file is served;
//     - running the command again completes (or, for a delete whose
//     target is already gone, refuses with its one line), verify is
//     clean, gc --dry-run reports exactly what gc then does, and the
//     tree is then the one the clean run left.
type crashScenario struct {
	name  string
	setup func(t *testing.T, c *crashCase) // builds the starting tree
	// args builds the command, after "--root ROOT".
	args func(c *crashCase) []string
	// moving are the REPO:TAG the command changes.
	moving []string
	// steps must each match a step of the clean run: "<kind> <path
	// relative to the root>", as regular expressions.
	steps []string
	// minSteps is the fewest steps a clean run may take.
	minSteps int
	// refusal: a rerun after the step matching after may exit 1 with
	// message, because what it deletes is gone already.
	refusal *rerunRefusal
	// gcAfterCrash runs gc --grace 0 on the tree each crash leaves, before
	// the command runs again, and checks what is served once more: a
	// collection never takes what a pin the crash left names.
	gcAfterCrash bool
	// afterCrash, when set, checks the tree each crash leaves, before the
	// command runs again.
	afterCrash func(t *testing.T, c *crashCase) error
	// onePage: the command rewrites the catalog page once, so each crash
	// leaves the page of the starting tree or the one the clean run
	// leaves, never a third.
	onePage bool
	// interleaved: the command does several things at once (--jobs > 1),
	// so its steps come in another order from run to run, and their count
	// varies: two workers making the same directory may each take a mkdir
	// step, and a catalog refresh may find _catalog and the page already
	// written by another worker's. A run killed
	// at step k must then have taken k steps, each of a kind and path the
	// clean run took; a run that takes fewer than k steps in all
	// completes instead of dying, and its tree is checked all the same.
	interleaved bool
}

type rerunRefusal struct{ after, message string }

// crashCase is one scenario's world: a source registry, a root served by
// all three servers, and the starting tree kept aside.
type crashCase struct {
	reg     *testregistry.Registry
	root    *tree.Root
	servers []crashServer
	start   string // a copy of the starting tree
	pushed  map[string]testregistry.Pushed
	bundle  string // a bundle file setup made, for bundle load
}

type crashServer struct{ name, host string }

func TestCrashPoints(t *testing.T) {
	for _, sc := range crashScenarios() {
		t.Run(sc.name, func(t *testing.T) { runCrashScenario(t, sc) })
	}
}

func crashScenarios() []crashScenario {
	exp := func(src, dest string) func(c *crashCase) []string {
		return func(c *crashCase) []string {
			return []string{"-q", "export", "--jobs", "1", "--src-tls-verify=false", "docker://" + c.reg.Ref(src), dest}
		}
	}
	fixed := func(args ...string) func(c *crashCase) []string {
		return func(*crashCase) []string { return args }
	}
	const manifest = `manifests/sha256:[0-9a-f]{64}/index.json`
	return []crashScenario{
		{
			name: "export a new image",
			setup: func(t *testing.T, c *crashCase) {
				c.push(t, "src/new:v1", testregistry.OCIImage(t, "amd64", layer(t), layer(t)))
				c.push(t, "src/other:v1", testregistry.DockerImage(t, layer(t)))
				c.export(t, "src/other:v1", "other/app:v1")
			},
			args:   exp("src/new:v1", "new/app:v1"),
			moving: []string{"new/app:v1"},
			steps: []string{
				`^lock \.image-serve/tree\.lock$`,
				`^lock \.image-serve/locks/blob-sha256-`,
				`^rename v2/new/app/blobs/sha256:`,
				`^rename v2/new/app/` + manifest + `$`,
				`^link v2/new/app/manifests/sha256:[0-9a-f]{64}/manifest\.oci-manifest$`,
				`^rename v2/new/app/manifests/\.tags/v1$`,
				`^rename v2/new/app/manifests/v1\.type-map$`,
				`^rename v2/new/app/tags/list$`,
				`^rename v2/_catalog$`,
				`^rename index\.html$`,
			},
			minSteps: 30,
			onePage:  true,
		},
		{
			name: "export an index whose children share layers with a tag",
			setup: func(t *testing.T, c *crashCase) {
				base, own := layer(t), layer(t)
				amd := testregistry.OCIImage(t, "amd64", base, own)
				c.push(t, "src/app:v1", amd)
				c.pushIndex(t, "src/multi:v1", map[string]v1.Image{"amd64": amd, "arm64": testregistry.OCIImage(t, "arm64", base, layer(t))})
				c.export(t, "src/app:v1", "ns/app:v1")
			},
			args:   exp("src/multi:v1", "ns/web:v2"),
			moving: []string{"ns/web:v2"},
			steps: []string{
				`^link v2/ns/web/blobs/sha256:`, // shared layers: hard links from ns/app
				`^rename v2/ns/web/blobs/sha256:`,
				`^link v2/ns/web/manifests/sha256:[0-9a-f]{64}/manifest\.oci-index$`,
				`^rename v2/ns/web/manifests/\.tags-fallback/v2$`,
				`^rename v2/ns/web/manifests/v2\.type-map$`,
			},
			minSteps: 40,
		},
		{
			name: "re-export moves a tag from an image to an index",
			setup: func(t *testing.T, c *crashCase) {
				amd := testregistry.OCIImage(t, "amd64", layer(t))
				c.push(t, "src/img:v1", amd)
				c.pushIndex(t, "src/idx:v1", map[string]v1.Image{"amd64": amd, "arm64": testregistry.OCIImage(t, "arm64", layer(t))})
				c.export(t, "src/img:v1", "app:live")
			},
			args:     exp("src/idx:v1", "app:live"),
			moving:   []string{"app:live"},
			steps:    []string{`^rename v2/app/manifests/\.tags/live$`, `^rename v2/app/manifests/live\.type-map$`},
			minSteps: 20,
		},
		{
			name: "re-export moves a tag from an index back to an image",
			setup: func(t *testing.T, c *crashCase) {
				amd := testregistry.OCIImage(t, "amd64", layer(t))
				c.push(t, "src/img:v1", amd)
				c.pushIndex(t, "src/idx:v1", map[string]v1.Image{"amd64": amd, "arm64": testregistry.OCIImage(t, "arm64", layer(t))})
				c.export(t, "src/idx:v1", "app:live")
			},
			args:     exp("src/img:v1", "app:live"),
			moving:   []string{"app:live"},
			steps:    []string{`^rename v2/app/manifests/\.tags/live$`, `^rename v2/app/manifests/live\.type-map$`},
			minSteps: 9,
		},
		{
			name: "export a referrer of a tagged image",
			setup: func(t *testing.T, c *crashCase) {
				img := c.push(t, "src/app:v1", testregistry.OCIImage(t, "amd64", layer(t)))
				raw, blobs := testregistry.ArtifactFor(t, img)
				c.pushed["src/app:sbom"] = c.reg.PushRaw(t, "src/app:sbom", distribution.MediaTypeOCIManifest, raw, blobs...)
				c.export(t, "src/app:v1", "ns/app:v1")
			},
			args:     exp("src/app:sbom", "ns/app:sbom"),
			moving:   []string{"ns/app:sbom"},
			steps:    []string{`^rename v2/ns/app/referrers/sha256:[0-9a-f]{64}$`, `^rename v2/ns/app/manifests/sbom\.type-map$`},
			minSteps: 20,
		},
		{
			name: "delete a multi-arch tag with prune",
			setup: func(t *testing.T, c *crashCase) {
				base := layer(t)
				amd := testregistry.OCIImage(t, "amd64", base, layer(t))
				c.pushIndex(t, "src/multi:v1", map[string]v1.Image{"amd64": amd, "arm64": testregistry.OCIImage(t, "arm64", base, layer(t))})
				c.push(t, "src/amd:v1", amd)
				c.push(t, "src/other:v1", testregistry.OCIImage(t, "amd64", base, layer(t)))
				c.export(t, "src/multi:v1", "ns/app:t1")
				c.export(t, "src/amd:v1", "ns/app:t2") // t1's amd64 child, tagged
				c.export(t, "src/other:v1", "other/app:v1")
			},
			args:   fixed("-q", "delete", "ns/app:t1"),
			moving: []string{"ns/app:t1"},
			steps: []string{
				`^rename v2/ns/app/tags/list$`,
				`^unlink v2/ns/app/manifests/\.tags/t1$`,
				`^unlink v2/ns/app/manifests/t1\.type-map$`,
				`^lock \.image-serve/tree\.lock$`,
				`^unlink v2/ns/app/` + manifest + `$`,
				`^unlink v2/ns/app/blobs/sha256:`,
				`^rmdir v2/ns/app/manifests/sha256:`,
			},
			minSteps: 25,
			refusal:  &rerunRefusal{after: `^unlink v2/ns/app/manifests/t1\.type-map$`, message: "tag unknown"},
		},
		{
			name: "delete an untagged manifest by digest",
			setup: func(t *testing.T, c *crashCase) {
				c.push(t, "src/a:v1", testregistry.OCIImage(t, "amd64", layer(t)))
				c.push(t, "src/b:v1", testregistry.OCIImage(t, "amd64", layer(t)))
				c.export(t, "src/a:v1", "ns/app:v1")
				c.export(t, "src/b:v1", "ns/app:v2")
				mustRun(t, "--root", c.root.Dir(), "-q", "delete", "--no-prune", "ns/app:v2")
			},
			args: func(c *crashCase) []string {
				return []string{"-q", "delete", "ns/app@" + c.pushed["src/b:v1"].Digest}
			},
			steps:    []string{`^unlink v2/ns/app/` + manifest + `$`, `^unlink v2/ns/app/blobs/sha256:`},
			minSteps: 8,
			refusal:  &rerunRefusal{after: `^unlink v2/ns/app/` + manifest + `$`, message: "manifest unknown"},
		},
		{
			name: "gc across repositories sharing blobs, with a referrer",
			setup: func(t *testing.T, c *crashCase) {
				base, shared := layer(t), layer(t)
				img := c.push(t, "src/a:v1", testregistry.OCIImage(t, "amd64", base, shared))
				c.push(t, "src/a:v2", testregistry.OCIImage(t, "amd64", base, layer(t)))
				c.push(t, "src/b:v1", testregistry.OCIImage(t, "arm64", base, shared))
				raw, blobs := testregistry.ArtifactFor(t, img)
				c.reg.PushRaw(t, "src/a:sbom", distribution.MediaTypeOCIManifest, raw, blobs...)
				c.export(t, "src/a:v1", "a/app:t1")
				c.export(t, "src/a:v2", "a/app:t2")
				c.export(t, "src/a:sbom", "a/app:sbom")
				c.export(t, "src/b:v1", "b/app:t1")
				mustRun(t, "--root", c.root.Dir(), "-q", "delete", "--no-prune", "a/app:t1", "a/app:sbom", "b/app:t1")
			},
			args: fixed("gc", "--quiet", "--grace", "0", "--jobs", "1"),
			steps: []string{
				`^lock \.image-serve/locks/gc\.lock$`,
				`^unlink v2/a/app/referrers/sha256:`,
				`^unlink v2/a/app/` + manifest + `$`,
				`^unlink v2/a/app/blobs/sha256:`,
				`^unlink v2/b/app/blobs/sha256:`,
				`^rmdir v2/b/app$`,
			},
			minSteps: 40,
		},
		{
			// What repair restores, it restores through the tree's durable
			// steps: a crash at any of them loses nothing, and running it
			// again finishes the job.
			name: "verify --repair restores lost type maps and headers",
			setup: func(t *testing.T, c *crashCase) {
				amd := testregistry.OCIImage(t, "amd64", layer(t))
				c.pushIndex(t, "src/multi:v1", map[string]v1.Image{"amd64": amd, "arm64": testregistry.OCIImage(t, "arm64", layer(t))})
				c.push(t, "src/img:v1", testregistry.DockerImage(t, layer(t)))
				c.export(t, "src/multi:v1", "ns/app:t1")
				c.export(t, "src/img:v1", "ns/app:t2")
				img := digest.Digest(c.pushed["src/img:v1"].Digest)
				child := digest.Digest(c.pushed["src/multi:v1"].Children["linux/amd64"])
				fx := tree.Fixture(c.root)
				for _, p := range []string{fx.TypeMapPath("ns/app", "t1"), fx.TypeMapPath("ns/app", "t2"),
					fx.TagsListPath("ns/app"), fx.HeadersPath("ns/app", img), fx.HeadersPath("ns/app", child)} {
					if err := os.Remove(p); err != nil {
						t.Fatal(err)
					}
				}
			},
			args:   fixed("-q", "verify", "--repair"),
			moving: []string{"ns/app:t1", "ns/app:t2"},
			steps: []string{
				`^lock \.image-serve/tree\.lock$`,
				`^rename v2/ns/app/manifests/sha256:[0-9a-f]{64}/\.htaccess$`,
				`^rename v2/ns/app/manifests/t1\.type-map$`,
				`^rename v2/ns/app/manifests/t2\.type-map$`,
				`^rename v2/ns/app/tags/list$`,
			},
			minSteps: 6,
		},
		{
			name: "export --atomic moves two tags together",
			setup: func(t *testing.T, c *crashCase) {
				c.push(t, "src/a:v1", testregistry.OCIImage(t, "amd64", layer(t)))
				c.push(t, "src/a:v2", testregistry.OCIImage(t, "amd64", layer(t)))
				c.push(t, "src/b:v2", testregistry.DockerImage(t, layer(t)))
				c.export(t, "src/a:v1", "a:live")
			},
			args: func(c *crashCase) []string {
				list := filepath.Join(c.start, "..", "atomic.txt")
				if err := os.WriteFile(list, []byte("docker://"+c.reg.Ref("src/a:v2")+" a:live\ndocker://"+c.reg.Ref("src/b:v2")+" b:live\n"), 0o644); err != nil {
					panic(err)
				}
				return []string{"-q", "export", "--atomic", "--jobs", "1", "--src-tls-verify=false", "--from-file", list}
			},
			moving: []string{"a:live", "b:live"},
			steps: []string{
				`^rename \.image-serve/journal/#\.json$`,
				`^rename v2/a/manifests/live\.type-map$`,
				`^rename v2/b/manifests/live\.type-map$`,
				`^unlink \.image-serve/journal/#\.json$`,
			},
			minSteps: 30,
		},
		{
			// Images of different repositories are published at once
			// (tree's publishEach), those of one repository in order: a
			// stop anywhere in the interleaving leaves every tag whole.
			name: "export --from-file publishes repositories concurrently",
			setup: func(t *testing.T, c *crashCase) {
				shared := layer(t)
				c.push(t, "src/a:v1", testregistry.OCIImage(t, "amd64", shared, layer(t)))
				c.push(t, "src/a:v2", testregistry.OCIImage(t, "amd64", shared, layer(t)))
				c.push(t, "src/b:v1", testregistry.DockerImage(t, shared, layer(t)))
				c.push(t, "src/c:v1", testregistry.OCIImage(t, "amd64", layer(t)))
				c.export(t, "src/a:v1", "a:live")
			},
			args: func(c *crashCase) []string {
				list := filepath.Join(c.start, "..", "batch.txt")
				lines := "docker://" + c.reg.Ref("src/a:v2") + " a:live\n" +
					"docker://" + c.reg.Ref("src/b:v1") + " b:v1\n" +
					"docker://" + c.reg.Ref("src/c:v1") + " ns/c:v1\n" +
					"docker://" + c.reg.Ref("src/a:v1") + " a:old\n"
				if err := os.WriteFile(list, []byte(lines), 0o644); err != nil {
					panic(err)
				}
				return []string{"-q", "export", "--jobs", "3", "--src-tls-verify=false", "--from-file", list}
			},
			moving: []string{"a:live", "a:old", "b:v1", "ns/c:v1"},
			steps: []string{
				`^rename v2/a/manifests/live\.type-map$`,
				`^rename v2/a/manifests/old\.type-map$`,
				`^rename v2/b/manifests/v1\.type-map$`,
				`^rename v2/ns/c/manifests/v1\.type-map$`,
				`^rename v2/_catalog$`,
			},
			minSteps:    60,
			interleaved: true,
		},
		{
			// A sync rerun after a crash in the middle of its journalled
			// move finds a type map that already names what the source
			// does: the move must still be finished (tags/list, nginx's
			// links), not taken for done.
			name: "sync --atomic moves two tags together",
			setup: func(t *testing.T, c *crashCase) {
				c.push(t, "src/a:live", testregistry.OCIImage(t, "amd64", layer(t)))
				c.export(t, "src/a:live", "src/a:live")
				c.push(t, "src/a:live", testregistry.OCIImage(t, "amd64", layer(t)))
				c.push(t, "src/b:live", testregistry.DockerImage(t, layer(t)))
			},
			args: func(c *crashCase) []string {
				return []string{"-q", "sync", "--atomic", "--jobs", "1", "--no-referrers", "--src-tls-verify=false",
					"docker://" + c.reg.Ref("src/a:live"), "docker://" + c.reg.Ref("src/b:live")}
			},
			moving: []string{"src/a:live", "src/b:live"},
			steps: []string{
				`^rename \.image-serve/journal/#\.json$`,
				`^rename v2/src/a/manifests/live\.type-map$`,
				`^rename v2/src/b/manifests/live\.type-map$`,
				`^unlink \.image-serve/journal/#\.json$`,
			},
			minSteps: 30,
		},
		{
			// A pin is written after the manifests it keeps, in one rename:
			// after any crash it is there wholly or not at all, what it
			// names pulls by digest, and gc (no grace) keeps all of it.
			name: "export by digest pins an index",
			setup: func(t *testing.T, c *crashCase) {
				base := layer(t)
				c.pushIndex(t, "src/multi:v1", map[string]v1.Image{"amd64": testregistry.OCIImage(t, "amd64", base, layer(t)), "arm64": testregistry.OCIImage(t, "arm64", base)})
				c.push(t, "src/other:v1", testregistry.OCIImage(t, "amd64", base))
				c.export(t, "src/other:v1", "pin/app:v1")
			},
			args: func(c *crashCase) []string {
				return []string{"-q", "export", "--jobs", "1", "--src-tls-verify=false", "docker://" + c.reg.Ref("src/multi@"+c.pushed["src/multi:v1"].Digest), "pin/app"}
			},
			steps: []string{
				`^rename v2/pin/app/` + manifest + `$`,
				`^mkdir \.image-serve/pins/pin\+app$`,
				`^rename \.image-serve/pins/pin\+app/sha256:[0-9a-f]{64}$`,
				`^syncdir \.image-serve/pins/pin\+app$`,
			},
			minSteps:     20,
			gcAfterCrash: true,
		},
		{
			// The index's amd64 child is tagged too, so that the prune
			// removes one child: the order in which it removes siblings
			// is not fixed, and the steps must be.
			name: "delete a pin with prune",
			setup: func(t *testing.T, c *crashCase) {
				base := layer(t)
				amd := testregistry.OCIImage(t, "amd64", base, layer(t))
				c.pushIndex(t, "src/multi:v1", map[string]v1.Image{"amd64": amd, "arm64": testregistry.OCIImage(t, "arm64", base, layer(t))})
				c.push(t, "src/amd:v1", amd)
				c.export(t, "src/amd:v1", "pin/app:v1")
				mustRun(t, "--root", c.root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+c.reg.Ref("src/multi@"+c.pushed["src/multi:v1"].Digest), "pin/app")
			},
			args: func(c *crashCase) []string {
				return []string{"-q", "delete", "pin/app@" + c.pushed["src/multi:v1"].Digest}
			},
			steps: []string{
				`^lock \.image-serve/tree\.lock$`,
				`^unlink \.image-serve/pins/pin\+app/sha256:[0-9a-f]{64}$`,
				`^rmdir \.image-serve/pins/pin\+app$`,
				`^unlink v2/pin/app/` + manifest + `$`,
				`^unlink v2/pin/app/blobs/sha256:`,
			},
			minSteps: 15,
			// Once the pin is gone a rerun deletes the unpinned index by
			// digest, to the same end; once the index is gone too, there
			// is nothing by that digest to delete.
			refusal: &rerunRefusal{after: `^unlink v2/pin/app/` + manifest + `$`, message: "manifest unknown"},
		},
		{
			// A delta bundle made in another tree against this one's
			// inventory: the base's layer is linked from the base's
			// repository, the rest streams in, and both tags move together.
			name: "bundle load moves two tags over a base",
			setup: func(t *testing.T, c *crashCase) {
				base := layer(t)
				c.push(t, "src/base:v1", testregistry.OCIImage(t, "amd64", base))
				c.push(t, "src/app:v2", testregistry.OCIImage(t, "amd64", base, layer(t)))
				c.pushIndex(t, "src/web:v2", map[string]v1.Image{"amd64": testregistry.OCIImage(t, "amd64", base, layer(t)), "arm64": testregistry.OCIImage(t, "arm64", layer(t))})
				c.export(t, "src/base:v1", "base/os:v1")
				a := testserver.TempRoot(t)
				for src, dest := range map[string]string{"src/base:v1": "base/os:v1", "src/app:v2": "ns/app:v2", "src/web:v2": "ns/web:v2"} {
					mustRun(t, "--root", a.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+c.reg.Ref(src), dest)
				}
				dir := t.TempDir()
				inv := filepath.Join(dir, "inventory")
				c.bundle = filepath.Join(dir, "update.bundle")
				mustRun(t, "--root", c.root.Dir(), "-q", "inventory", "-o", inv)
				mustRun(t, "--root", a.Dir(), "-q", "bundle", "create", "-o", c.bundle, "--have", inv, "ns/app:v2", "ns/web:v2")
			},
			args:   func(c *crashCase) []string { return []string{"-q", "bundle", "load", c.bundle} },
			moving: []string{"ns/app:v2", "ns/web:v2"},
			steps: []string{
				`^link v2/ns/app/blobs/sha256:`, // the base's layer
				`^rename v2/ns/app/blobs/sha256:`,
				`^rename v2/ns/web/` + manifest + `$`,
				`^rename \.image-serve/journal/#\.json$`,
				`^rename v2/ns/app/manifests/v2\.type-map$`,
				`^rename v2/ns/web/manifests/v2\.type-map$`,
				`^unlink \.image-serve/journal/#\.json$`,
			},
			minSteps: 40,
		},
		{
			// The same load's staging (tree/staged.go), with a layer two
			// tags share and the bundle in parts given out of order: the
			// whole bundle is read and checked, its new layers staged in
			// the incoming directory, before the shared layer is renamed
			// into the first repository and linked into the second.
			name: "bundle load in parts stages a layer two tags share",
			setup: func(t *testing.T, c *crashCase) {
				base, shared := layer(t), layer(t)
				c.push(t, "src/base:v1", testregistry.OCIImage(t, "amd64", base))
				c.push(t, "src/app:v2", testregistry.OCIImage(t, "amd64", base, shared, layer(t)))
				c.push(t, "src/web:v2", testregistry.OCIImage(t, "amd64", base, shared))
				c.export(t, "src/base:v1", "base/os:v1")
				a := testserver.TempRoot(t)
				for src, dest := range map[string]string{"src/base:v1": "base/os:v1", "src/app:v2": "ns/app:v2", "src/web:v2": "ns/web:v2"} {
					mustRun(t, "--root", a.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+c.reg.Ref(src), dest)
				}
				dir := t.TempDir()
				inv := filepath.Join(dir, "inventory")
				c.bundle = filepath.Join(dir, "update.bundle")
				mustRun(t, "--root", c.root.Dir(), "-q", "inventory", "-o", inv)
				mustRun(t, "--root", a.Dir(), "-q", "bundle", "create", "-o", c.bundle, "--split", "8K", "--have", inv, "ns/app:v2", "ns/web:v2")
				if parts, _ := filepath.Glob(c.bundle + ".part*"); len(parts) < 2 {
					t.Fatalf("bundle create --split 8K made %d parts, want several", len(parts))
				}
			},
			args: func(c *crashCase) []string {
				parts, _ := filepath.Glob(c.bundle + ".part*")
				slices.Reverse(parts)
				return append([]string{"-q", "bundle", "load"}, parts...)
			},
			moving: []string{"ns/app:v2", "ns/web:v2"},
			steps: []string{
				`^rename v2/ns/app/blobs/sha256:`, // a staged layer moved in
				`^link v2/ns/web/blobs/sha256:`,   // the shared one, and the base's
				`^rename \.image-serve/journal/#\.json$`,
				`^rename v2/ns/app/manifests/v2\.type-map$`,
				`^rename v2/ns/web/manifests/v2\.type-map$`,
				`^unlink \.image-serve/journal/#\.json$`,
			},
			minSteps: 40,
		},
		{
			// files writes each layer's entry list into the layer index:
			// a crash leaves each wholly there or not at all, and gc
			// sweeps the temporary file a crash at a rename leaves.
			name: "files writes layer indexes",
			setup: func(t *testing.T, c *crashCase) {
				c.push(t, "src/app:v1", testregistry.OCIImage(t, "amd64", layer(t), layer(t)))
				c.export(t, "src/app:v1", "ns/app:v1")
			},
			args: fixed("-q", "files", "ns/app:v1"),
			steps: []string{
				`^lock \.image-serve/tree\.lock$`,
				`^mkdir \.image-serve/layers$`,
				`^rename \.image-serve/layers/sha256:[0-9a-f]{64}$`,
				`^syncdir \.image-serve/layers$`,
			},
			minSteps:     6,
			gcAfterCrash: true,
			afterCrash:   wholeLayerIndexes,
		},
	}
}

// wholeLayerIndexes fails unless every layer index in c's tree is one the
// tree reads back as sound: none half-written.
func wholeLayerIndexes(t *testing.T, c *crashCase) error {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.root.Dir(), ".image-serve", "layers"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.root.Inspect(func(v *tree.View) error {
		for _, e := range entries {
			d := digest.Digest(e.Name())
			if strings.HasPrefix(e.Name(), ".") {
				continue // a temporary file: no index, and gc sweeps it
			}
			if _, ok := v.ReadLayerIndex(d); !ok {
				return fmt.Errorf("layer index %s is not whole", e.Name())
			}
		}
		return nil
	})
}

func layer(t *testing.T) v1.Layer { return testregistry.Layer(t, 2<<10, types.OCILayer) }

func (c *crashCase) push(t *testing.T, ref string, img v1.Image) testregistry.Pushed {
	p := c.reg.PushImage(t, ref, img)
	c.pushed[ref] = p
	return p
}

func (c *crashCase) pushIndex(t *testing.T, ref string, imgs map[string]v1.Image) {
	c.pushed[ref] = c.reg.PushIndex(t, ref, types.OCIImageIndex, imgs)
}

func (c *crashCase) export(t *testing.T, src, dest string) {
	t.Helper()
	mustRun(t, "--root", c.root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+c.reg.Ref(src), dest)
}

func runCrashScenario(t *testing.T, sc crashScenario) {
	c := &crashCase{reg: testregistry.Start(t), root: testserver.TempRoot(t), pushed: map[string]testregistry.Pushed{}}
	sc.setup(t, c)
	c.start = t.TempDir()
	copyTree(t, c.root.Dir(), c.start)
	for _, s := range []struct{ name, base string }{
		{"embedded", testserver.Embedded(t, c.root)},
		{"apache", testserver.Apache(t, c.root)},
		{"nginx", testserver.Nginx(t, c.root)},
	} {
		c.servers = append(c.servers, crashServer{s.name, strings.TrimPrefix(s.base, "http://")})
	}
	args := append([]string{"--root", c.root.Dir()}, sc.args(c)...)
	traceFile := filepath.Join(t.TempDir(), "trace")

	// The clean run: its steps, and the tree it leaves once collected.
	r := runCrash(t, args, traceFile, 0)
	if r.code != 0 {
		t.Fatalf("clean run of %v: exit %d\n%s", sc.args(c), r.code, r.stderr)
	}
	trace := readSteps(t, c.root, traceFile)
	checkKnownSteps(t, sc, trace)
	startPage, _ := os.ReadFile(filepath.Join(c.start, filepath.Base(tree.Fixture(c.root).PagePath())))
	cleanPage, _ := os.ReadFile(tree.Fixture(c.root).PagePath())
	if err := c.checkServed(t, nil); err != nil {
		t.Fatalf("after the clean run: %v", err)
	}
	c.finish(t, args, sc.refusal, "clean run")
	want := c.snapshot(t)

	refusedFrom := len(trace) + 1
	if sc.refusal != nil {
		refusedFrom = firstStep(trace, sc.refusal.after) + 1
	}
	interleavings := 0 // runs whose steps came in another order
	for k := 1; k <= len(trace); k++ {
		restoreTree(t, c.start, c.root.Dir())
		os.Remove(traceFile)
		r := runCrash(t, args, traceFile, k)
		at := fmt.Sprintf("crash at step %d of %d (%s)", k, len(trace), trace[k-1])
		if sc.interleaved {
			var reordered bool
			if at, reordered = checkInterleaved(t, c.root, traceFile, trace, k, r); reordered {
				interleavings++
			}
		} else {
			if r.code != -int(syscall.SIGKILL) {
				t.Fatalf("%s: the command exited %d instead of dying there: its steps differ from the clean run's\n%s", at, r.code, r.stderr)
			}
			if got := readSteps(t, c.root, traceFile); len(got) != k || got[k-1] != trace[k-1] {
				t.Fatalf("%s: died at %q: the steps are not the same from run to run", at, got[len(got)-1])
			}
		}
		if err := c.checkServed(t, sc.moving); err != nil {
			t.Fatalf("%s: %v", at, err)
		}
		if sc.afterCrash != nil {
			if err := sc.afterCrash(t, c); err != nil {
				t.Fatalf("%s: %v", at, err)
			}
		}
		if page, _ := os.ReadFile(tree.Fixture(c.root).PagePath()); sc.onePage && string(page) != string(startPage) && string(page) != string(cleanPage) {
			t.Fatalf("%s: the catalog page is neither the one before nor the one after:\n%s", at, page)
		}
		if sc.gcAfterCrash {
			c.gcReport(t, at)
			if err := c.checkServed(t, sc.moving); err != nil {
				t.Fatalf("%s, then gc --grace 0: %v", at, err)
			}
		}
		var refusal *rerunRefusal
		if k > refusedFrom {
			refusal = sc.refusal
		}
		c.finish(t, args, refusal, at)
		if got := c.snapshot(t); got != want {
			t.Fatalf("%s: after running it again and gc, the tree differs from the clean run's:\n%s", at, testtree.Diff(want, got))
		}
	}
	t.Logf("%s: crashed at each of %d steps; every crash left a servable tree", sc.name, len(trace))
	if sc.interleaved {
		t.Logf("%s: %d of the %d runs took their steps in another order than the clean run", sc.name, interleavings, len(trace))
	}
}

// checkInterleaved checks a run of an interleaved scenario asked to die
// at step k: it died there, having taken only steps the clean run took
// (in any order), or it took fewer than k steps and completed. It
// returns how to name the stop in messages, and whether the run's steps
// came in another order than the clean run's.
func checkInterleaved(t *testing.T, root *tree.Root, traceFile string, clean []string, k int, r result) (string, bool) {
	t.Helper()
	got := readSteps(t, root, traceFile)
	at := fmt.Sprintf("crash at step %d of %d", k, len(clean))
	switch {
	case r.code == -int(syscall.SIGKILL) && len(got) == k:
		at += " (" + got[k-1] + ")"
	case r.code == 0 && len(got) < k:
		at = fmt.Sprintf("a run asked to stop at step %d that completed in %d", k, len(got))
	default:
		t.Fatalf("%s: exit %d after %d steps\n%s", at, r.code, len(got), r.stderr)
	}
	for _, step := range got {
		if !slices.Contains(clean, step) {
			t.Fatalf("%s: step %q is none the clean run took", at, step)
		}
	}
	return at, !slices.Equal(got, clean[:min(len(got), len(clean))])
}

// runCrash runs image-serve with args, tracing its steps into trace, and
// dying before step k unless k is 0. A death by signal has code -signal.
func runCrash(t *testing.T, args []string, trace string, k int) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), tree.CrashTraceEnv+"="+trace)
	if k > 0 {
		cmd.Env = append(cmd.Env, tree.CrashAtEnv+"="+strconv.Itoa(k))
	}
	r := runCmd(t, cmd)
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = -int(ws.Signal())
		}
	}
	return r
}

// readSteps reads a trace: "<kind> <path relative to root>" per step.
func readSteps(t *testing.T, root *tree.Root, trace string) []string {
	t.Helper()
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		line = strings.TrimPrefix(line, "crash ")
		n, rest, _ := strings.Cut(line, " ")
		if n != strconv.Itoa(i+1) {
			t.Fatalf("trace line %d is numbered %q: %s", i+1, n, line)
		}
		kind, path, _ := strings.Cut(rest, " ")
		rel, err := filepath.Rel(root.Dir(), path)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("step %d outside the root: %s", i+1, line)
		}
		steps = append(steps, kind+" "+tempFree(rel))
	}
	return steps
}

// tempName matches the random part of a temporary name, which differs from
// run to run: ".list8123" is ".list#"; journalName the random name of a
// journal of tag moves.
var (
	tempName    = regexp.MustCompile(`(/\.[^/]*?)[0-9]+$`)
	journalName = regexp.MustCompile(`^(\.image-serve/journal/\.?)[0-9a-z]+(\.json)`)
)

func tempFree(rel string) string {
	return tempName.ReplaceAllString(journalName.ReplaceAllString(rel, "$1#$2"), "$1#")
}

func checkKnownSteps(t *testing.T, sc crashScenario, trace []string) {
	t.Helper()
	if len(trace) < sc.minSteps {
		t.Errorf("the clean run took %d steps, fewer than the %d its writer is known to take: a crash point is no longer reached\n%s", len(trace), sc.minSteps, strings.Join(trace, "\n"))
	}
	for _, s := range sc.steps {
		if firstStep(trace, s) < 0 {
			t.Errorf("the clean run took no step matching %s:\n%s", s, strings.Join(trace, "\n"))
		}
	}
}

// firstStep is the index of the first step matching pattern, or -1.
func firstStep(trace []string, pattern string) int {
	re := regexp.MustCompile(pattern)
	return slices.IndexFunc(trace, re.MatchString)
}

// finish runs the command again, then verify, gc --dry-run and gc, each
// of which must succeed; the dry run must report what gc does. With a
// refusal, the rerun may instead exit 1 saying its message.
func (c *crashCase) finish(t *testing.T, args []string, refusal *rerunRefusal, at string) {
	t.Helper()
	r := run(t, args...)
	refused := refusal != nil && r.code == 1 && strings.Contains(r.stderr, refusal.message) && strings.Count(r.stderr, "\n") == 1
	if r.code != 0 && !refused {
		t.Fatalf("%s: running it again: exit %d\n%s", at, r.code, r.stderr)
	}
	if r := run(t, "--root", c.root.Dir(), "verify"); r.code != 0 {
		t.Fatalf("%s: verify after running it again: exit %d\n%s%s", at, r.code, r.stdout, r.stderr)
	}
	dry := c.gcReport(t, at, "--dry-run")
	real := c.gcReport(t, at)
	dry.DryRun = false
	if fmt.Sprint(dry) != fmt.Sprint(real) {
		t.Fatalf("%s: gc --dry-run said %+v, gc did %+v", at, dry, real)
	}
}

func (c *crashCase) gcReport(t *testing.T, at string, flags ...string) gc.Report {
	t.Helper()
	args := append([]string{"--root", c.root.Dir(), "gc", "--json", "--grace", "0"}, flags...)
	r := run(t, args...)
	var rep gc.Report
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil {
		t.Fatalf("%s: %v: exit %d\n%s%s", at, args[2:], r.code, r.stdout, r.stderr)
	}
	return rep
}

func (c *crashCase) snapshot(t *testing.T) string {
	return testtree.Snapshot(t, c.root.Dir(), ".image-serve/locks")
}

// checkServed checks what every server serves from the tree as it is.
// Tags in moving may be served by nginx as another digest than Apache's,
// or not at all, but what nginx serves must still be complete.
func (c *crashCase) checkServed(t *testing.T, moving []string) error {
	t.Helper()
	fx := tree.Fixture(c.root)
	repos, err := fx.StoredRepositories()
	if err != nil {
		return err
	}
	for _, s := range c.servers {
		if err := c.checkCatalog(s); err != nil {
			return err
		}
		if err := c.checkPage(s); err != nil {
			return err
		}
	}
	for _, repo := range repos {
		tags, err := fx.Tags(repo)
		if err != nil {
			return err
		}
		listed, _, err := fx.ReadTagsList(repo)
		if err != nil {
			return err
		}
		for _, tag := range listed {
			if !slices.Contains(tags, tag) {
				return fmt.Errorf("tags/list of %s lists %s, which has no type map", repo, tag)
			}
		}
		for _, s := range c.servers {
			if err := checkTagsList(s, repo, len(listed) > 0); err != nil {
				return err
			}
		}
		for _, tag := range tags {
			if err := c.checkTag(repo, tag, slices.Contains(moving, repo+":"+tag)); err != nil {
				return err
			}
		}
		if err := c.checkReferrers(repo); err != nil {
			return err
		}
		if err := c.checkPins(repo); err != nil {
			return err
		}
	}
	return c.checkTempsHidden()
}

// checkPins pulls, from every server, every manifest repo has pinned: a
// pin never names what a client cannot get whole.
func (c *crashCase) checkPins(repo string) error {
	pins, err := tree.Fixture(c.root).Pins(repo)
	if err != nil {
		return err
	}
	for _, d := range pins {
		for _, s := range c.servers {
			got, err := pullDigest(s.host + "/" + repo + "@" + d.String())
			if err != nil {
				return fmt.Errorf("%s: pinned %s@%s: %v", s.name, repo, d, err)
			}
			if got.String() != d.String() {
				return fmt.Errorf("%s serves pinned %s@%s as %s", s.name, repo, d, got)
			}
		}
	}
	return nil
}

// checkReferrers fetches, from every server, every manifest a referrers
// index of repo lists: an index never names one a client cannot get.
func (c *crashCase) checkReferrers(repo string) error {
	subjects, err := tree.Fixture(c.root).ReferrerSubjects(repo)
	if err != nil {
		return err
	}
	for _, subject := range subjects {
		for _, s := range c.servers {
			var idx v1.IndexManifest
			if err := getJSON(s, "/v2/"+repo+"/referrers/"+subject.String(), &idx); err != nil {
				return err
			}
			for _, m := range idx.Manifests {
				if _, err := pullDigest(s.host + "/" + repo + "@" + m.Digest.String()); err != nil {
					return fmt.Errorf("%s: referrers of %s@%s list %s: %v", s.name, repo, subject, m.Digest, err)
				}
			}
		}
	}
	return nil
}

// checkTag pulls repo:tag from every server.
func (c *crashCase) checkTag(repo, tag string, moving bool) error {
	var want v1.Hash
	for _, s := range c.servers {
		got, err := pullDigest(s.host + "/" + repo + ":" + tag)
		if s.name == "nginx" && moving {
			var te *transport.Error
			if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
				continue // its links are not there yet, or gone already
			}
			if err == nil {
				continue // complete: the old target or the new one
			}
		}
		if err != nil {
			return fmt.Errorf("%s: pull %s:%s: %v", s.name, repo, tag, err)
		}
		if want == (v1.Hash{}) {
			want = got
		} else if got != want {
			return fmt.Errorf("%s serves %s:%s as %s, %s as %s", s.name, repo, tag, got, c.servers[0].name, want)
		}
	}
	return nil
}

// pullDigest pulls ref completely and returns its digest.
func pullDigest(ref string) (v1.Hash, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return v1.Hash{}, err
	}
	desc, err := remote.Get(r)
	if err != nil {
		return v1.Hash{}, err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = validate.Index(idx)
		}
		return desc.Digest, err
	}
	img, err := desc.Image()
	if err == nil {
		err = validate.Image(img)
	}
	return desc.Digest, err
}

func (c *crashCase) checkCatalog(s crashServer) error {
	var cat struct{ Repositories []string }
	if err := getJSON(s, "/v2/_catalog", &cat); err != nil {
		return err
	}
	want, err := tree.Fixture(c.root).ReadCatalog()
	if err != nil {
		return err
	}
	if !slices.Equal(cat.Repositories, want) {
		return fmt.Errorf("%s: _catalog %v, the file says %v", s.name, cat.Repositories, want)
	}
	return nil
}

// checkPage: the server answers / with the catalog page on disk, whole
// (a page is renamed into place, never written where it is served).
func (c *crashCase) checkPage(s crashServer) error {
	want, err := os.ReadFile(tree.Fixture(c.root).PagePath())
	if err != nil {
		return err
	}
	resp, err := http.Get("http://" + s.host + "/")
	if err != nil {
		return fmt.Errorf("%s: GET /: %v", s.name, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		return fmt.Errorf("%s: GET /: %v", s.name, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s: GET /: %s", s.name, resp.Status)
	case string(got) != string(want):
		return fmt.Errorf("%s: GET / answers %d bytes that are not the page's %d", s.name, len(got), len(want))
	case !strings.HasSuffix(string(got), "</html>\n"):
		return fmt.Errorf("%s: GET /: the page is cut short:\n%s", s.name, got)
	}
	return nil
}

func checkTagsList(s crashServer, repo string, exists bool) error {
	if !exists {
		return nil
	}
	var l struct {
		Name string
		Tags []string
	}
	if err := getJSON(s, "/v2/"+repo+"/tags/list", &l); err != nil {
		return err
	}
	if l.Name != repo {
		return fmt.Errorf("%s: tags/list of %s names %q", s.name, repo, l.Name)
	}
	return nil
}

func getJSON(s crashServer, path string, v any) error {
	resp, err := http.Get("http://" + s.host + path)
	if err != nil {
		return fmt.Errorf("%s: GET %s: %v", s.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: GET %s: %s", s.name, path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: GET %s: %v", s.name, path, err)
	}
	return nil
}

// checkTempsHidden asks every server for every temporary file in the tree.
func (c *crashCase) checkTempsHidden() error {
	var temps []string
	err := filepath.WalkDir(tree.Fixture(c.root).V2Dir(), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && tempName.MatchString("/"+e.Name()) {
			rel, _ := filepath.Rel(c.root.Dir(), path)
			temps = append(temps, "/"+filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range temps {
		for _, s := range c.servers {
			resp, err := http.Get("http://" + s.host + p)
			if err != nil {
				return fmt.Errorf("%s: GET %s: %v", s.name, p, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				return fmt.Errorf("%s serves the temporary file %s: %s", s.name, p, resp.Status)
			}
		}
	}
	return nil
}

// copyTree copies dir src into the existing dir dst with cp -a, which
// keeps hard links, symlinks and modes.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

// restoreTree empties dir, keeping the directory itself (the servers
// serve it by its path), and copies start into it.
func restoreTree(t *testing.T, start, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	copyTree(t, start, dir)
}
