package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// hostileRegistry is a registry that misbehaves in one way per test: it
// serves manifests and blobs from maps, and its behave hooks replace the
// answer for a path. It counts what it is asked, so a test can assert
// what the exporter did not do.
type hostileRegistry struct {
	srv       *httptest.Server
	manifests map[string][]byte // "repo/ref" -> OCI manifest or index bytes
	blobs     map[string][]byte // digest -> bytes
	// behave, when it returns true, has answered the request itself.
	behave func(w http.ResponseWriter, r *http.Request) bool

	pings, requests   atomic.Int64
	blobGets          atomic.Int64
	inflight, maxSeen atomic.Int64
}

func startHostile(t *testing.T) *hostileRegistry {
	h := &hostileRegistry{manifests: map[string][]byte{}, blobs: map[string][]byte{}}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	// Close returns only once every handler has: the stalling ones wait
	// for their client, which is gone by then.
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hostileRegistry) host() string { return strings.TrimPrefix(h.srv.URL, "http://") }

func (h *hostileRegistry) serve(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	n := h.inflight.Add(1)
	defer h.inflight.Add(-1)
	for m := h.maxSeen.Load(); n > m && !h.maxSeen.CompareAndSwap(m, n); m = h.maxSeen.Load() {
	}
	if r.URL.Path == "/v2/" {
		h.pings.Add(1)
	}
	if strings.Contains(r.URL.Path, "/blobs/") {
		h.blobGets.Add(1)
	}
	if h.behave != nil && h.behave(w, r) {
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case p == "":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(p, "/manifests/"):
		repo, ref, _ := strings.Cut(p, "/manifests/")
		raw, ok := h.manifests[repo+"/"+ref]
		if !ok {
			raw, ok = h.manifests[repo+"/"+digestOfBody(h, repo, ref)]
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		var m struct{ MediaType string }
		_ = json.Unmarshal(raw, &m)
		w.Header().Set("Content-Type", m.MediaType)
		w.Write(raw)
	case strings.Contains(p, "/blobs/"):
		_, d, _ := strings.Cut(p, "/blobs/")
		b, ok := h.blobs[d]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

// digestOfBody finds a manifest of repo by digest among those stored by tag.
func digestOfBody(h *hostileRegistry, repo, ref string) string {
	for k, raw := range h.manifests {
		if strings.HasPrefix(k, repo+"/") && digest.FromBytes(raw).String() == ref {
			return strings.TrimPrefix(k, repo+"/")
		}
	}
	return ""
}

const ociManifestType = "application/vnd.oci.image.manifest.v1+json"

// image stores an image of repo:tag whose config declares size bytes and
// is served as body (nil: the declared bytes themselves), and no layers.
func (h *hostileRegistry) image(repo, tag string, size int64, body []byte) (config digest.Digest) {
	declared := bytes.Repeat([]byte{'x'}, int(min(size, 1<<20)))
	config = digest.FromBytes(declared)
	if body == nil {
		body = declared
	}
	h.blobs[config.String()] = body
	h.manifests[repo+"/"+tag] = fmt.Appendf(nil,
		`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[]}`,
		ociManifestType, config, size)
	return config
}

// index stores an OCI index of repo:tag over children, each declared as
// size bytes (0: its real size).
func (h *hostileRegistry) index(repo, tag string, children [][]byte, size int64) {
	var entries []string
	for i, raw := range children {
		d := digest.FromBytes(raw)
		h.manifests[repo+"/"+d.String()] = raw
		s := size
		if s == 0 {
			s = int64(len(raw))
		}
		entries = append(entries, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arch%d"}}`, ociManifestType, d, s, i))
	}
	h.manifests[repo+"/"+tag] = fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}`, strings.Join(entries, ","))
}

// hostileCase is one way a source misbehaves.
type hostileCase struct {
	name  string
	setup func(t *testing.T, h *hostileRegistry) (args []string)
	want  []string // what the one line of error must say
	// after checks what the registry saw.
	after func(t *testing.T, h *hostileRegistry)
	// empty starts from an empty tree rather than one holding the
	// bundled image (whose blobs an oci: copy of it would reuse).
	empty bool
}

// TestHostileSources exports from registries (and layouts) that misbehave
// on purpose. Each export must end within a bound, fail with exit 1 and
// one line naming the cause, leave the tree byte-identical, and leave
// nothing in $TMPDIR.
func TestHostileSources(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := startHostile(t)
			root := testserver.TempRoot(t)
			if !tc.empty {
				mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
			}
			before := snapshot(t, tree.Fixture(root).V2Dir()) // what the servers serve
			tmp := t.TempDir()

			args := append([]string{"--root", root.Dir(), "-q", "export", "--jobs", "1", "--src-timeout", "1s", "--src-tls-verify=false"}, tc.setup(t, h)...)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, args...)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			r := runCmd(t, cmd)
			if ctx.Err() != nil {
				t.Fatalf("image-serve %s: still running after 90 s", strings.Join(args, " "))
			}
			t.Logf("%s", r.stderr)
			if r.code != 1 {
				t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
			}
			if lines := strings.Count(r.stderr, "\n"); lines != 1 {
				t.Errorf("%d lines on stderr, want one:\n%s", lines, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("message does not say %q:\n%s", w, r.stderr)
				}
			}
			if after := snapshot(t, tree.Fixture(root).V2Dir()); after != before {
				t.Errorf("the tree changed:\n%s", testtree.Diff(before, after))
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("left in $TMPDIR: %v", left)
			}
			if tc.after != nil {
				tc.after(t, h)
			}
		})
	}
}

func hostileCases() []hostileCase {
	const declared = 1024
	return []hostileCase{
		{
			// A 1,024-byte blob answered with an endless chunked body
			// once wrote 381 MB in 20 s.
			name: "endless blob body",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				d := h.image("app", "v1", declared, nil)
				h.behave = func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasSuffix(r.URL.Path, d.String()) {
						return false
					}
					chunk := bytes.Repeat([]byte{'x'}, 32<<10)
					for i := 0; i < 1<<15 && r.Context().Err() == nil; i++ { // at most 1 GiB
						if _, err := w.Write(chunk); err != nil {
							return true
						}
					}
					return true
				}
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want: []string{"blob sha256:", "more than its declared 1024 bytes"},
		},
		{
			name: "Content-Length above the declared size",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				d := h.image("app", "v1", declared, nil)
				h.behave = func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasSuffix(r.URL.Path, d.String()) {
						return false
					}
					w.Header().Set("Content-Length", "10737418240")
					w.WriteHeader(http.StatusOK)
					w.Write(make([]byte, 4096))
					return true
				}
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want: []string{"blob sha256:", "the registry sends 10737418240 bytes, the manifest declares 1024"},
		},
		{
			name: "blob declared as 1 PiB",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				h.image("app", "v1", 1<<50, []byte("tiny"))
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want:  []string{"blob sha256:", "1125899906842624 bytes declared, over the --max-blob-size"},
			after: noBlobFetched,
		},
		{
			// A 307 to the same URL once made 849,097 requests in 120 s.
			name: "redirect loop",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				d := h.image("app", "v1", declared, nil)
				h.behave = func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasSuffix(r.URL.Path, d.String()) {
						return false
					}
					http.Redirect(w, r, r.URL.Path, http.StatusTemporaryRedirect)
					return true
				}
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want: []string{"blob sha256:", "stopped after 10 redirects"},
			after: func(t *testing.T, h *hostileRegistry) {
				if n := h.blobGets.Load(); n > 11 {
					t.Errorf("%d blob requests for one redirect loop, want at most 11", n)
				}
			},
		},
		{
			name: "token endpoint never answers",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				h.image("app", "v1", declared, nil)
				h.behave = func(w http.ResponseWriter, r *http.Request) bool {
					switch {
					case r.URL.Path == "/token":
						<-r.Context().Done()
					case r.Header.Get("Authorization") == "":
						w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="hostile"`, h.srv.URL))
						w.WriteHeader(http.StatusUnauthorized)
					default:
						return false
					}
					return true
				}
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want:  []string{"app:v1", "did not answer in time", "(tried 3 times)"},
			after: noBlobFetched,
		},
		{
			name: "manifest request never answered",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				h.image("app", "v1", declared, nil)
				h.behave = func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.Contains(r.URL.Path, "/manifests/") {
						return false
					}
					<-r.Context().Done()
					return true
				}
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want:  []string{"app:v1", "did not answer in time", "(tried 3 times)"},
			after: noBlobFetched,
		},
		{
			// A stalled blob once held the tree lock, and so gc and
			// delete, until the export was killed.
			name: "blob stalls after 100 bytes",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				d := h.image("app", "v1", declared, nil)
				h.behave = func(w http.ResponseWriter, r *http.Request) bool {
					if !strings.HasSuffix(r.URL.Path, d.String()) {
						return false
					}
					w.Header().Set("Content-Length", fmt.Sprint(declared))
					w.Write(bytes.Repeat([]byte{'x'}, 100))
					w.(http.Flusher).Flush()
					<-r.Context().Done()
					return true
				}
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want: []string{"blob sha256:", "after 100 of 1024 bytes", "no data for 1s", "(tried 3 times)"},
			after: func(t *testing.T, h *hostileRegistry) {
				if n := h.blobGets.Load(); n != 3 {
					t.Errorf("%d requests for the stalling blob, want 3 (three tries)", n)
				}
			},
		},
		{
			name: "index of 10,000 children",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				child := h.image("app", "child", declared, nil)
				var children [][]byte
				for i := range 10000 {
					children = append(children, fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[],"annotations":{"n":"%d"}}`, ociManifestType, child, declared, i))
				}
				h.index("app", "v1", children, 0)
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want:  []string{"manifest sha256:", "10000 entries, over the limit of 1000"},
			after: noChildFetched,
		},
		{
			// 100 children of ~4 MiB each once took 662 MB of memory.
			name: "index of 100 children of 4 MiB",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				var children [][]byte
				for i := range 100 {
					children = append(children, fmt.Appendf(nil, `{"schemaVersion":2,"n":%d}`, i))
				}
				h.index("app", "v1", children, 4<<20-1)
				return []string{"docker://" + h.host() + "/app:v1"}
			},
			want:  []string{"manifest sha256:", "over 67108864 bytes of manifests, the limit of one export"},
			after: noChildFetched,
		},
		{
			// An oci: blob of 200 MiB declared as its real 2,076-odd
			// bytes was read whole before the size was compared.
			name: "oci layout blob larger than declared",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				// Every blob but the manifests grows to 200 MiB (sparse), so
				// the first one fetched is too long.
				layout := layoutWithBlobs(t, func(p string) error { return os.Truncate(p, 200<<20) })
				return []string{"oci:" + layout + ":latest", "other:latest"}
			},
			want:  []string{"blob sha256:", "more than its declared", "cut off at byte"},
			empty: true,
		},
		{
			// A 30 KiB oci-archive with a sparse entry once wrote 4.29 GB
			// into $TMPDIR.
			name: "oci-archive with a sparse entry",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				file := filepath.Join(t.TempDir(), "sparse.tar")
				writeSparseTar(t, file, "blobs/sha256/"+strings.Repeat("0", 64))
				return []string{"oci-archive:" + file, "app:v1"}
			},
			want: []string{"oci-archive:", "is a sparse file"},
		},
		{
			// A 20 KiB docker-archive with a sparse 8 GiB layer once cost
			// ~6 s of CPU per GiB.
			name: "docker-archive with a sparse layer",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				file := filepath.Join(t.TempDir(), "sparse.tar")
				writeSparseTar(t, file, "layer.tar")
				return []string{"docker-archive:" + file, "app:v1"}
			},
			want: []string{"docker-archive", "is a sparse file"},
		},
		{
			name: "gzipped docker-archive that decompresses a thousandfold",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				file := filepath.Join(t.TempDir(), "bomb.tar.gz")
				writeGzipBomb(t, file)
				return []string{"docker-archive:" + file, "app:v1"}
			},
			want: []string{"docker-archive", "decompresses to more than", "100 times its size"},
		},
		{
			// A FIFO planted as a blob once kept an export reading for
			// 1,371 s, until SIGKILL.
			name: "FIFO as a blob of an oci layout",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				layout := layoutWithBlobs(t, func(p string) error {
					if err := os.Remove(p); err != nil {
						return err
					}
					return syscall.Mkfifo(p, 0o644)
				})
				return []string{"oci:" + layout + ":latest", "other:latest"}
			},
			want:  []string{"oci:", "is a FIFO, not a regular file"},
			empty: true,
		},
		{
			name: "FIFO as the archive",
			setup: func(t *testing.T, h *hostileRegistry) []string {
				fifo := filepath.Join(t.TempDir(), "archive.tar")
				if err := syscall.Mkfifo(fifo, 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{"docker-archive:" + fifo, "app:v1"}
			},
			want: []string{"archive.tar is a FIFO, not a regular file"},
		},
	}
}

// writeSparseTar writes a tar whose first entry, name, is an old-GNU
// sparse file of 4 GiB holding no data: archive/tar would hand out 4 GiB
// of zeros for it. archive/tar cannot write one, so a regular header is
// patched into it.
func writeSparseTar(t *testing.T, file, name string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatGNU}); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	b[156] = tar.TypeGNUSparse
	copy(b[483:495], fmt.Sprintf("%011o\x00", int64(4<<30))) // the real size
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b[:512] {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeGzipBomb writes a gzipped tar of one 64 MiB file of zeros: about
// 64 KiB on disk.
func writeGzipBomb(t *testing.T, file string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	const size = 64 << 20
	if err := tw.WriteHeader(&tar.Header{Name: "layer.tar", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, zeros{}, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// layoutWithBlobs copies the bundled layout and changes, with change,
// every blob of it that is not a manifest (configs and layers): the first
// blob an export reads is then a changed one.
func layoutWithBlobs(t *testing.T, change func(path string) error) string {
	layout := filepath.Join(t.TempDir(), "layout")
	copyDir(t, filepath.Join("..", "..", "testdata", "hello-oci"), layout)
	dir := filepath.Join(layout, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var m struct{ SchemaVersion int }
		if json.Unmarshal(readFile(t, p), &m) == nil && m.SchemaVersion != 0 {
			continue
		}
		if err := change(p); err != nil {
			t.Fatal(err)
		}
	}
	return layout
}

func noBlobFetched(t *testing.T, h *hostileRegistry) {
	if n := h.blobGets.Load(); n != 0 {
		t.Errorf("%d blob requests, want none: the export should have stopped before", n)
	}
}

// noChildFetched: only the ping (at most twice: TLS is tried first) and
// the index itself were asked for.
func noChildFetched(t *testing.T, h *hostileRegistry) {
	if n := h.requests.Load() - h.pings.Load(); n != 1 {
		t.Errorf("%d requests besides pings, want 1 (the index): children were fetched", n)
	}
}

// TestIndexChildrenInParallel: the children of an index are fetched
// --jobs at a time over one connection pool, with no ping (not one per
// child: the index's request served as the ping), and the export
// succeeds.
func TestIndexChildrenInParallel(t *testing.T) {
	h := startHostile(t)
	config := h.image("app", "config", 2, nil)
	var children [][]byte
	for i := range 50 {
		children = append(children, fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[],"annotations":{"n":"%d"}}`, ociManifestType, config, i))
	}
	h.index("app", "v1", children, 0)
	// The first child request waits for company: with children fetched
	// one at a time it would wait the full minute, and maxSeen stay 1.
	var first sync.Once
	h.behave = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.Contains(r.URL.Path, "/manifests/sha256:") {
			first.Do(func() {
				for deadline := time.Now().Add(time.Minute); h.inflight.Load() < 2 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			})
		}
		return false
	}
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "--jobs", "4", "--src-tls-verify=false", "docker://"+h.host()+"/app:v1")
	if n := h.maxSeen.Load(); n < 2 {
		t.Errorf("at most %d request in flight: children were fetched one at a time", n)
	}
	if n := h.pings.Load(); n != 0 {
		t.Errorf("%d pings of /v2/ for one export, want none (the index's request serves as one)", n)
	}
	if d, err := tree.Fixture(root).ManifestDigests("app"); err != nil || len(d) != 51 {
		t.Errorf("%d manifests in the tree (%v), want the index and its 50 children", len(d), err)
	}
}

// TestImagesPlannedInParallel: export --from-file resolves its images
// --jobs at a time. The first tag request waits for company: planned one
// after another it would wait the full minute and maxSeen stay 1.
func TestImagesPlannedInParallel(t *testing.T) {
	h := startHostile(t)
	var list strings.Builder
	for i := range 6 {
		repo := fmt.Sprintf("app%d", i)
		h.image(repo, "v1", 2, nil)
		fmt.Fprintf(&list, "docker://%s/%s:v1\n", h.host(), repo)
	}
	var first sync.Once
	h.behave = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/manifests/v1") {
			first.Do(func() {
				for deadline := time.Now().Add(time.Minute); h.inflight.Load() < 2 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
			})
		}
		return false
	}
	file := filepath.Join(t.TempDir(), "images.txt")
	if err := os.WriteFile(file, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "--jobs", "4", "--src-tls-verify=false", "--from-file", file)
	if n := h.maxSeen.Load(); n < 2 {
		t.Errorf("at most %d request in flight: the images were planned one at a time", n)
	}
	if repos, err := tree.Fixture(root).Repositories(); err != nil || len(repos) != 6 {
		t.Errorf("repositories %v (%v), want all six", repos, err)
	}
}
