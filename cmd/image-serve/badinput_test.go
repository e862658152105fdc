package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testtree"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

// badEnv is the world of one bad-input row: a tree that already holds a
// good image tagged app:1, and the registry it came from.
type badEnv struct {
	root string
	reg  *testregistry.Registry
	good testregistry.Pushed // app:1 in the registry, exported as app:1

	mu    sync.Mutex
	fault func(w http.ResponseWriter, r *http.Request) bool
}

// setFault makes the registry answer requests f handles itself.
func (e *badEnv) setFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fault = f
}

func (e *badEnv) intercept(w http.ResponseWriter, r *http.Request) bool {
	e.mu.Lock()
	f := e.fault
	e.mu.Unlock()
	return f != nil && f(w, r)
}

// docker is the docker:// reference of repoTag in the test registry.
func (e *badEnv) docker(repoTag string) string { return "docker://" + e.reg.Ref(repoTag) }

// pushWithLayer pushes, as app:TAG, the good image's manifest with one more
// layer. The config blob is the good image's, already in the tree, so the
// bad export has exactly one blob to fetch: the faulty one. Nothing
// complete and verified can then land in the tree before the fault does.
func (e *badEnv) pushWithLayer(t *testing.T, tag string, l v1.Layer) (testregistry.Pushed, string) {
	t.Helper()
	m, err := v1.ParseManifest(bytes.NewReader(e.good.Raw))
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	size, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := l.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	m.Layers = append(m.Layers, v1.Descriptor{MediaType: mt, Digest: d, Size: size})
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return e.reg.PushRaw(t, "app:"+tag, string(m.MediaType), raw, l), d.String()
}

// layerBytes is the compressed content of l, as the registry serves it.
func layerBytes(t *testing.T, l v1.Layer) []byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveManifest makes GET and HEAD of app:TAG's manifest answer body with a
// manifest Content-Type.
func (e *badEnv) serveManifest(tag string, body []byte) {
	e.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/app/manifests/"+tag || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			return false
		}
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(body)
		}
		return true
	})
}

// serveBlob makes GET of blob d answer what answer writes.
func (e *badEnv) serveBlob(d string, answer func(w http.ResponseWriter)) {
	e.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || r.URL.Path != "/v2/app/blobs/"+d {
			return false
		}
		answer(w)
		return true
	})
}

// badRun is the bad command of a row and what its one line must say.
type badRun struct {
	args []string // after --root ROOT
	// want are substrings of the message: the object it names and the
	// cause.
	want []string
	// asNobody runs the command as user nobody.
	asNobody bool
	// usage marks input the command line alone shows wrong (a malformed
	// SOURCE or DEST): exit 2, refused before any source is opened.
	usage bool
	// check, if set, asserts more once the command ran.
	check func(t *testing.T)
}

type badCase struct {
	name string
	// root, if set, makes the tree's directory instead of badTreeDir.
	root func(t *testing.T) string
	// setup prepares the fault once the tree holds app:1, and returns the
	// bad command. What the tree holds when setup returns is what the bad
	// command must leave exactly as it was.
	setup func(t *testing.T, e *badEnv) badRun
}

// TestBadInput runs one export per kind of bad input the issue lists,
// each against a tree that already holds a tagged image, and asserts one
// clear line of error, a failure exit and a tree left exactly as it was.
func TestBadInput(t *testing.T) {
	for _, c := range badCases() {
		t.Run(c.name, func(t *testing.T) {
			runBadCase(t, c)
		})
	}
}

func runBadCase(t *testing.T, c badCase) {
	e := &badEnv{reg: testregistry.Start(t)}
	e.reg.Intercept = e.intercept
	if c.root != nil {
		e.root = c.root(t)
	} else {
		e.root = badTreeDir(t)
	}
	e.good = e.reg.PushImage(t, "app:1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
	mustRun(t, "--root", e.root, "export", "--src-tls-verify=false", e.docker("app:1"), "app:1")

	r := c.setup(t, e)
	before := snapshot(t, e.root)
	if !strings.Contains(before, "v2/app/manifests/1.type-map") {
		t.Fatalf("the good export left no tag app:1:\n%s", before)
	}
	args := append([]string{"--root", e.root}, r.args...)
	var res result
	if r.asNobody {
		cmd := exec.Command(binary, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = append(os.Environ(), "HOME=/nonexistent")
		res = runCmd(t, cmd)
	} else {
		res = run(t, args...)
	}
	t.Logf("image-serve %s\nexit %d\nstderr: %s", strings.Join(args, " "), res.code, res.stderr)

	// 1: bad input, not a command line the command cannot run (2) nor a
	// crash (2 for a Go panic, or a signal); 2 and the usage line for a
	// malformed command line.
	switch {
	case r.usage && (res.code != 2 || !strings.Contains(res.stderr, "(usage: image-serve export")):
		t.Errorf("exit %d, want 2 and the usage line", res.code)
	case !r.usage && res.code != 1:
		t.Errorf("exit %d, want 1", res.code)
	}
	if strings.Contains(res.stderr, "retrying") {
		t.Errorf("the export retried a failure no retry can mend")
	}
	msg := strings.TrimSuffix(res.stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") {
		t.Errorf("stderr is %d lines, want exactly one:\n%s", strings.Count(res.stderr, "\n"), res.stderr)
	}
	for _, w := range r.want {
		if !strings.Contains(msg, w) {
			t.Errorf("message does not say %q:\n%s", w, msg)
		}
	}
	if after := snapshot(t, e.root); after != before {
		t.Errorf("the tree changed:\n%s", testtree.Diff(before, after))
	}
	if r.check != nil {
		r.check(t)
	}
}

func badCases() []badCase {
	// dest is a bad DEST row: exporting the good image under a name
	// outside the distribution grammar must be refused before anything is
	// written; a name that escaped would write outside the tree or over
	// its own files.
	dest := func(d string, want ...string) func(*testing.T, *badEnv) badRun {
		return func(t *testing.T, e *badEnv) badRun {
			return badRun{
				args:  []string{"export", "--src-tls-verify=false", e.docker("app:1"), d},
				want:  want,
				usage: true,
			}
		}
	}
	// badManifest is a row whose registry answers body for app:2's
	// manifest: the message must name the manifest by the digest of those
	// bytes and say cause.
	badManifest := func(body []byte, cause string) func(*testing.T, *badEnv) badRun {
		return func(t *testing.T, e *badEnv) badRun {
			e.serveManifest("2", body)
			return badRun{
				args: []string{"export", "--src-tls-verify=false", e.docker("app:2"), "app:1"},
				want: []string{"manifest " + digest.FromBytes(body).String(), cause},
			}
		}
	}
	return []badCase{
		{
			// Guards: a typo in the transport must not be read as a file
			// or a registry path.
			name: "unknown transport",
			setup: func(t *testing.T, e *badEnv) badRun {
				return badRun{
					args:  []string{"export", "dockr://" + e.reg.Ref("app:1"), "app:1"},
					want:  []string{`"dockr://` + e.reg.Ref("app:1") + `"`, `unknown transport "dockr"`},
					usage: true,
				}
			},
		},
		{
			// Guards: the reference is checked before any connection.
			name: "malformed reference",
			setup: func(t *testing.T, e *badEnv) badRun {
				src := "docker://" + e.reg.Host + "/App:1"
				return badRun{
					args:  []string{"export", "--src-tls-verify=false", src, "app:1"},
					want:  []string{`"` + src + `"`, "malformed docker reference", "repository can only contain"},
					usage: true,
				}
			},
		},
		{
			// Guards: a refused connection is tried three times, then
			// names the registry and says it cannot be reached, once, not
			// per URL scheme tried. -q: the retries log a warning each.
			name: "unreachable registry",
			setup: func(t *testing.T, e *badEnv) badRun {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				host := l.Addr().String()
				l.Close()
				return badRun{
					args: []string{"-q", "export", "--src-tls-verify=false", "docker://" + host + "/app:1", "app:1"},
					want: []string{host + "/app:1", "cannot reach the registry", "connection refused", "(tried 3 times)"},
				}
			},
		},
		{
			// Guards: wrong credentials fail as an authentication error,
			// without the registry's JSON body.
			name: "auth failure",
			setup: func(t *testing.T, e *badEnv) badRun {
				right := "Basic " + base64.StdEncoding.EncodeToString([]byte("right:creds"))
				e.setFault(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Header.Get("Authorization") == right {
						return false
					}
					w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusUnauthorized)
					io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`+"\n")
					return true
				})
				return badRun{
					args: []string{"export", "--src-tls-verify=false", "--src-creds", "wrong:creds", e.docker("app:1"), "app:1"},
					want: []string{e.reg.Ref("app:1"), "authentication failed (HTTP 401 UNAUTHORIZED"},
				}
			},
		},
		{
			// Guards: a tag the registry lacks is "not found", naming it.
			name: "missing tag",
			setup: func(t *testing.T, e *badEnv) badRun {
				return badRun{
					args: []string{"export", "--src-tls-verify=false", e.docker("app:nope"), "app:1"},
					want: []string{e.reg.Ref("app:nope"), "not found (HTTP 404 MANIFEST_UNKNOWN"},
				}
			},
		},
		{
			// Guards: a corrupt blob of the right length is caught by its
			// digest and never published, and the tag keeps its image.
			name: "blob bytes do not match the digest",
			setup: func(t *testing.T, e *badEnv) badRun {
				l := testregistry.Layer(t, 2048, types.DockerLayer)
				_, d := e.pushWithLayer(t, "2", l)
				size := len(layerBytes(t, l))
				e.serveBlob(d, func(w http.ResponseWriter) {
					junk := make([]byte, size)
					rand.Read(junk)
					w.Header().Set("Content-Length", strconv.Itoa(size))
					w.Write(junk)
				})
				return badRun{
					args: []string{"export", "--src-tls-verify=false", e.docker("app:2"), "app:1"},
					want: []string{"blob " + d, "content does not match its digest"},
				}
			},
		},
		{
			// Guards: a stream cut short is resumed, then reported as
			// truncated after three tries; no partial file is left. -q:
			// the retries log a warning each, the failure is the one line.
			name: "truncated stream",
			setup: func(t *testing.T, e *badEnv) badRun {
				l := testregistry.Layer(t, 64<<10, types.DockerLayer)
				_, d := e.pushWithLayer(t, "2", l)
				b := layerBytes(t, l)
				var gets atomic.Int32
				e.serveBlob(d, func(w http.ResponseWriter) {
					gets.Add(1)
					w.Header().Set("Content-Length", strconv.Itoa(len(b)))
					w.WriteHeader(http.StatusOK)
					w.Write(b[:len(b)/2])
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler) // drop the connection mid-body
				})
				return badRun{
					args: []string{"-q", "export", "--src-tls-verify=false", e.docker("app:2"), "app:1"},
					want: []string{"blob " + d, "truncated after", "(tried 3 times)"},
					check: func(t *testing.T) {
						if n := gets.Load(); n != 3 {
							t.Errorf("blob fetched %d times, want 3: a truncated stream is worth three tries", n)
						}
					},
				}
			},
		},
		{
			// Guards: a manifest pinned by digest is checked against it.
			name: "manifest bytes do not match the digest",
			setup: func(t *testing.T, e *badEnv) badRun {
				e.setFault(func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/v2/app/manifests/"+e.good.Digest {
						return false
					}
					body := append(bytes.Clone(e.good.Raw), '\n')
					w.Header().Set("Content-Type", e.good.MediaType)
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					if r.Method == http.MethodGet {
						w.Write(body)
					}
					return true
				})
				return badRun{
					args: []string{"export", "--src-tls-verify=false", e.docker("app@" + e.good.Digest), "app:1"},
					want: []string{"app@" + e.good.Digest, "content does not match its digest"},
				}
			},
		},
		{
			// Guards: bytes that are not JSON are refused before anything
			// is stored.
			name:  "invalid manifest JSON",
			setup: badManifest([]byte(`{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": `), "invalid JSON"),
		},
		{
			// Guards: a future schema is refused, not stored as if it
			// were one we know.
			name:  "unknown schemaVersion",
			setup: badManifest([]byte(`{"schemaVersion": 3, "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:`+strings.Repeat("0", 64)+`", "size": 2}, "layers": []}`), "unknown schema: schemaVersion 3"),
		},
		{
			// Guards: an unknown manifest media type is refused, not
			// written into an .htaccess for clients to misread.
			name:  "unknown mediaType",
			setup: badManifest([]byte(`{"schemaVersion": 2, "mediaType": "application/x-unknown", "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:`+strings.Repeat("0", 64)+`", "size": 2}, "layers": []}`), `unknown schema: mediaType "application/x-unknown"`),
		},
		{
			// Guards: manifests over the 4 MiB clients accept are refused
			// before anything is stored.
			// Guards: a manifest over the limit is refused before its
			// bytes are read (so it is named by its reference, not its
			// digest): a registry cannot make the export buffer it.
			name: "manifest over 4 MiB",
			setup: func(t *testing.T, e *badEnv) badRun {
				e.serveManifest("2", oversizedManifest())
				return badRun{
					args: []string{"export", "--src-tls-verify=false", e.docker("app:2"), "app:1"},
					want: []string{e.reg.Ref("app:2"), "over the 4194304 byte limit"},
				}
			},
		},
		// Repository names outside the grammar.
		{name: "repo with ..", setup: dest("../app:1", `"../app:1"`, "invalid repository name")},
		{name: "repo absolute path", setup: dest("/etc/app:1", `"/etc/app:1"`, "invalid repository name")},
		{name: "repo uppercase", setup: dest("App:1", `"App:1"`, "invalid repository name", "lowercase")},
		{name: "repo empty component", setup: dest("ns//app:1", `"ns//app:1"`, "invalid repository name", "empty path component")},
		// Tags outside the grammar. Uppercase is no row: the grammar
		// allows it in tags.
		{
			// Guards: a name from the source itself, not typed by the
			// user, is held to the grammar too. An untrusted layout
			// naming its image "../app:1" must not be read as registry
			// host ".." and repository app, and so retag app:1.
			name: "repo with .. named by the source",
			setup: func(t *testing.T, e *badEnv) badRun {
				layout := filepath.Join(t.TempDir(), "layout")
				copyDir(t, filepath.Join("..", "..", "testdata", "hello-oci"), layout)
				index := filepath.Join(layout, "index.json")
				b, err := os.ReadFile(index)
				if err != nil {
					t.Fatal(err)
				}
				b = bytes.Replace(b, []byte(`"org.opencontainers.image.ref.name":"latest"`), []byte(`"org.opencontainers.image.ref.name":"../app:1"`), 1)
				if !bytes.Contains(b, []byte("../app:1")) {
					t.Fatalf("%s: no ref.name annotation to replace", index)
				}
				if err := os.WriteFile(index, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return badRun{
					args: []string{"export", "oci:" + layout},
					want: []string{`"../app`, "invalid repository name"},
				}
			},
		},
		{name: "tag ..", setup: dest("app:..", `"app:.."`, "invalid tag")},
		{name: "tag absolute path", setup: dest("app:/etc/passwd", `"app:/etc/passwd"`, "invalid")},
		// Guards: "app:" is a tag left out by mistake, not a request for
		// the source's tag.
		{name: "tag empty", setup: dest("app:", `"app:"`, "empty tag")},
		{
			// Guards: an untrusted layout must not make us publish a file
			// from elsewhere on this machine as a blob.
			name: "symlink in oci layout leads outside",
			setup: func(t *testing.T, e *badEnv) badRun {
				// The docker archive's config is the layout's amd64
				// config, so after this export the layout's amd64 image
				// lacks only its layer in the tree: the symlink.
				mustRun(t, "--root", e.root, "export", "docker-archive:"+filepath.Join("..", "..", "testdata", "hello.docker.tar"), "hello:latest")
				layout := filepath.Join(t.TempDir(), "layout")
				copyDir(t, filepath.Join("..", "..", "testdata", "hello-oci"), layout)
				rel := filepath.Join("blobs", "sha256", strings.TrimPrefix(ociLayer(t, layout, "amd64"), "sha256:"))
				if err := os.Remove(filepath.Join(layout, rel)); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("/etc/hostname", filepath.Join(layout, rel)); err != nil {
					t.Fatal(err)
				}
				return badRun{
					args: []string{"export", "--platform", "linux/amd64", "oci:" + layout + ":latest", "hello:latest"},
					want: []string{rel, "/etc/hostname", "outside the layout"},
				}
			},
		},
		{
			// Guards: a blob declared larger than the free space is
			// refused before its first byte is written, and not retried.
			// The tree is a 256 KiB tmpfs.
			name: "blob larger than the free space",
			root: tmpfsRoot,
			setup: func(t *testing.T, e *badEnv) badRun {
				_, d := e.pushWithLayer(t, "2", testregistry.Layer(t, 1<<20, types.DockerLayer))
				return badRun{
					args: []string{"export", "--src-tls-verify=false", e.docker("app:2"), "app:1"},
					want: []string{"blob " + d, "1049", "bytes declared, but the file system of", "bytes free"},
				}
			},
		},
		{
			// Guards: running out of space while writing leaves no
			// temporary file behind and no tag changed, and is not
			// retried: waiting does not free space. Schema1 declares no
			// sizes, so the 1 MiB layer passes the free-space check and
			// fills the 256 KiB tmpfs.
			name: "disk full",
			root: tmpfsRoot,
			setup: func(t *testing.T, e *badEnv) badRun {
				l := testregistry.Layer(t, 1<<20, types.DockerLayer)
				d, err := l.Digest()
				if err != nil {
					t.Fatal(err)
				}
				raw := fmt.Appendf(nil, `{"schemaVersion": 1, "name": "app", "tag": "2", "architecture": "amd64",
  "fsLayers": [{"blobSum": %q}], "history": [{"v1Compatibility": "{\"id\":\"%064x\"}"}]}`, d, 1)
				e.reg.PushRaw(t, "app:2", distribution.MediaTypeDockerSchema1, raw, l)
				return badRun{
					args: []string{"export", "--src-tls-verify=false", e.docker("app:2"), "app:1"},
					want: []string{"blob " + d.String(), "no space left on device"},
				}
			},
		},
		{
			// Guards: a user who may not write the tree is told so,
			// naming it, and changes nothing.
			name:  "no permission on root",
			setup: noPermission,
		},
	}
}

func noPermission(t *testing.T, e *badEnv) badRun {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the command as nobody")
	}
	l := testregistry.Layer(t, 1024, types.DockerLayer)
	e.pushWithLayer(t, "2", l)
	return badRun{
		args:     []string{"export", "--src-tls-verify=false", "--src-creds", "any:thing", e.docker("app:2"), "app:1"},
		want:     []string{e.root, "permission denied"},
		asNobody: true,
	}
}

// tmpfsRoot is a 256 KiB file system for the tree, so a 1 MiB layer
// cannot fit.
func tmpfsRoot(t *testing.T) string {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := badTreeDir(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// copyDir copies the regular files and directories of src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ociLayer is the digest of the first layer of the image for linux/ARCH in
// an OCI layout whose index.json names one index.
func ociLayer(t *testing.T, layout, arch string) string {
	t.Helper()
	blob := func(d v1.Hash) []byte {
		b, err := os.ReadFile(filepath.Join(layout, "blobs", d.Algorithm, d.Hex))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f, err := os.Open(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	top, err := v1.ParseIndexManifest(f)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(blob(top.Manifests[0].Digest)))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range idx.Manifests {
		if c.Platform != nil && c.Platform.Architecture == arch {
			m, err := v1.ParseManifest(bytes.NewReader(blob(c.Digest)))
			if err != nil {
				t.Fatal(err)
			}
			return m.Layers[0].Digest.String()
		}
	}
	t.Fatalf("%s: no %s image", layout, arch)
	return ""
}

// badTreeDir is a directory for a tree that every user can traverse
// (t.TempDir is 0700: user nobody could not even reach the tree).
func badTreeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "image-serve-badinput-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// oversizedManifest is a valid image manifest of 4 MiB and a bit.
func oversizedManifest() []byte {
	b, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.DockerManifestSchema2,
		"config":        map[string]any{"mediaType": types.DockerConfigJSON, "digest": digest.FromString("{}"), "size": 2},
		"layers":        []any{},
		"annotations":   map[string]string{"pad": strings.Repeat("x", 4<<20)},
	})
	if err != nil {
		panic(err)
	}
	return b
}
