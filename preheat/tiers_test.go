package preheat_test

// End-to-end tests of the caching tiers config nginx --cache-for prints,
// and of preheat through them: a real origin (the embedded server, or
// Apache) behind two stacked real nginx tiers, pulled by real clients.
//
// The origin's fetches are counted by a front of our own: the tiers reach
// the origin through countingOrigin, an HTTP proxy (Apache, nginx) or the
// embedded handler itself, which records every request that arrives. It
// is what an origin's access log would show, without depending on either
// server's log format.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/internal/bench"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/preheat"
	"github.com/image-serve/image-serve/server"
	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
)

// byDigest matches the URL of a blob or a manifest by digest.
var byDigest = regexp.MustCompile(`^/v2/.+/(blobs|manifests)/(sha256:[a-f0-9]{64})$`)

// countingOrigin serves an origin's handler on a loopback listener and
// counts the GETs of content by digest that reach it, by digest.
type countingOrigin struct {
	srv *httptest.Server
	mu  sync.Mutex
	// gets counts GETs by kind ("blobs", "manifests") and digest, over
	// every repository; bytes is what their bodies sent.
	gets  map[string]int
	bytes int64
}

func newCountingOrigin(t *testing.T, h http.Handler) *countingOrigin {
	o := &countingOrigin{gets: map[string]int{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		if m := byDigest.FindStringSubmatch(r.URL.Path); m != nil && r.Method == http.MethodGet {
			o.mu.Lock()
			o.gets[m[1]+" "+m[2]]++
			o.bytes += cw.n
			o.mu.Unlock()
		}
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// stop takes the origin down: connections are refused from now on.
func (o *countingOrigin) stop() {
	o.srv.CloseClientConnections()
	o.srv.Close()
}

// snapshot returns a copy of the counts and the bytes sent.
func (o *countingOrigin) snapshot() (map[string]int, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[string]int, len(o.gets))
	for k, v := range o.gets {
		m[k] = v
	}
	return m, o.bytes
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// tier starts a standalone nginx caching tier in front of origin, from
// the configuration config nginx --cache-for renders, and returns its URL.
func tier(t *testing.T, origin string) string {
	t.Helper()
	cacheDir := filepath.Join(testserver.SharedTempDir(t, "image-serve-tier-"), "cache")
	return testserver.Nginx(t, nil, testserver.WithNginxConfig(func(t testing.TB, listen, runDir string) string {
		var buf bytes.Buffer
		account, group := "", ""
		if os.Geteuid() == 0 {
			account, group = "www-data", "www-data"
		}
		err := templates.RenderNginx(&buf, templates.Nginx{
			Listen: listen, Standalone: true, RunDir: runDir, User: account, Group: group,
			CacheFor: origin, CacheDir: cacheDir, CacheSize: "1g",
		})
		if err != nil {
			t.Fatal(err)
		}
		conf := filepath.Join(runDir, "nginx.conf")
		if err := os.WriteFile(conf, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}))
}

// fleet is a tree of images that share layers across repositories: two
// single-platform images on one base, and a two-platform index whose
// amd64 image is on that base too (generated layers: random bytes, which
// no client unpacks); and the bundled multi-arch hello image in two
// repositories, which podman can unpack.
type fleet struct {
	root  *tree.Root
	imgs  *bench.Images
	refs  []string        // REPO:TAG in the tree, the generated images'
	hello []string        // REPO:TAG in the tree, hello's
	blobs map[string]bool // every blob digest the refs name
}

// layer is the generated layer of seed and index, size bytes.
func layer(seed, index uint64, size int64) bench.LayerSpec {
	return bench.LayerSpec{Seed: seed, Index: index, Size: size}
}

var fleetSpecs = []bench.ImageSpec{
	{Ref: "a", Platforms: []bench.PlatformImage{{Arch: "amd64", Layers: []bench.LayerSpec{layer(1, 0, 256<<10), layer(1, 1, 128<<10), layer(2, 0, 64<<10)}}}},
	{Ref: "b", Platforms: []bench.PlatformImage{{Arch: "amd64", Layers: []bench.LayerSpec{layer(1, 0, 256<<10), layer(1, 1, 128<<10), layer(3, 0, 64<<10)}}}},
	{Ref: "c", Platforms: []bench.PlatformImage{
		{Arch: "amd64", Layers: []bench.LayerSpec{layer(1, 0, 256<<10), layer(4, 0, 32<<10)}},
		{Arch: "arm64", Layers: []bench.LayerSpec{layer(5, 0, 32<<10)}},
	}},
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	imgs, err := bench.WriteImages(filepath.Join(t.TempDir(), "layout"), fleetSpecs)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{root: testserver.TempRoot(t), imgs: imgs, blobs: map[string]bool{}}
	for _, s := range fleetSpecs {
		dest := "fleet/" + s.Ref + ":v1"
		if _, err := exporter.Export(context.Background(), f.root, imgs.Source(s.Ref), dest, exporter.Options{}); err != nil {
			t.Fatal(err)
		}
		f.refs = append(f.refs, dest)
		for _, b := range layersAndConfigs(imgs.Blobs[s.Ref]) {
			f.blobs[b.Digest.String()] = true
		}
	}
	for _, dest := range []string{"fleet/hello:v1", "other/hello:v1"} {
		if _, err := exporter.Export(context.Background(), f.root, "oci:../testdata/hello-oci:latest", dest, exporter.Options{}); err != nil {
			t.Fatal(err)
		}
		f.hello = append(f.hello, dest)
	}
	// hello's blobs, as a client walks them, from a server the tests
	// do not count
	for _, d := range helloBlobs(t, testserver.Embedded(t, f.root), f.hello[0]) {
		f.blobs[d] = true
	}
	return f
}

// helloBlobs lists the blobs (configs and layers) of ref, every platform,
// through base.
func helloBlobs(t *testing.T, base, ref string) []string {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	r, err := name.ParseReference(host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mf.Config.Digest.String())
		for _, l := range mf.Layers {
			out = append(out, l.Digest.String())
		}
	}
	return out
}

// originHandler is the server under test at the origin: the embedded
// server's handler, or a proxy to Apache or to nginx serving the tree.
func originHandler(t *testing.T, kind string, root *tree.Root) http.Handler {
	switch kind {
	case "embedded":
		return server.New(root, nil)
	case "apache", "nginx":
		base := ""
		if kind == "apache" {
			base = testserver.Apache(t, root)
		} else {
			base = testserver.Nginx(t, root)
		}
		u, err := url.Parse(base)
		if err != nil {
			t.Fatal(err)
		}
		return httputil.NewSingleHostReverseProxy(u)
	}
	t.Fatalf("unknown origin %s", kind)
	return nil
}

// pullGGCR pulls ref through base with go-containerregistry as a client
// does, every platform of an index, reading every blob; it returns what
// it read.
func pullGGCR(ctx context.Context, base, ref string) (int64, error) {
	host := strings.TrimPrefix(base, "http://")
	r, err := name.ParseReference(host+"/"+ref, name.Insecure)
	if err != nil {
		return 0, err
	}
	desc, err := remote.Get(r, remote.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	var imgs []v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return 0, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return 0, err
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return 0, err
			}
			imgs = append(imgs, img)
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			return 0, err
		}
		imgs = append(imgs, img)
	}
	var n int64
	for _, img := range imgs {
		cfg, err := img.RawConfigFile()
		if err != nil {
			return n, err
		}
		n += int64(len(cfg))
		layers, err := img.Layers()
		if err != nil {
			return n, err
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return n, err
			}
			m, err := io.Copy(io.Discard, rc)
			n += m
			if cerr := rc.Close(); err == nil {
				err = cerr // the digest check
			}
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// pullSkopeo copies ref, every platform, through base into a directory.
func pullSkopeo(ctx context.Context, base, ref, dir string) error {
	host := strings.TrimPrefix(base, "http://")
	cmd := exec.CommandContext(ctx, "skopeo", "copy", "--all", "--src-tls-verify=false",
		"docker://"+host+"/"+ref, "dir:"+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", cmd, err, out)
	}
	return nil
}

// pullPodman pulls ref through base with podman, into a vfs store of its
// own under dir: nothing of the machine's containers is touched.
func pullPodman(ctx context.Context, base, ref, dir string) error {
	host := strings.TrimPrefix(base, "http://")
	cmd := exec.CommandContext(ctx, "podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
		"pull", "--tls-verify=false", "--quiet", host+"/"+ref)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", cmd, err, out)
	}
	return nil
}

// pullMany runs n pulls at once through base, spread over the fleet's
// refs: every skopeoEvery-th with skopeo, every third of the others of
// hello with podman (each into a store of its own), the rest with
// go-containerregistry in-process.
func pullMany(t *testing.T, base string, f *fleet, n, skopeoEvery int) {
	t.Helper()
	for _, tool := range []string{"skopeo", "podman"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: %s", tool, testserver.Setup)
		}
	}
	refs := append(slices.Clone(f.refs), f.hello...)
	var mu sync.Mutex
	clients := map[string]int{}
	ctx := context.Background()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		ref := refs[i%len(refs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			client := "go-containerregistry"
			switch {
			case skopeoEvery > 0 && i%skopeoEvery == 0:
				client = "skopeo"
				err = pullSkopeo(ctx, base, ref, filepath.Join(t.TempDir(), "img"))
			case slices.Contains(f.hello, ref) && i%3 == 0:
				client = "podman"
				err = pullPodman(ctx, base, ref, t.TempDir())
			default:
				_, err = pullGGCR(ctx, base, ref)
			}
			if err != nil {
				errs <- fmt.Errorf("pull %d of %s with %s: %w", i, ref, client, err)
			}
			mu.Lock()
			clients[client]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%d pulls at once through %s: %v", n, base, clients)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkOneFetchEach: every blob of the fleet was fetched from the origin
// exactly once, every manifest by digest at most once.
func checkOneFetchEach(t *testing.T, o *countingOrigin, f *fleet) {
	t.Helper()
	gets, _ := o.snapshot()
	for d := range f.blobs {
		if n := gets["blobs "+d]; n != 1 {
			t.Errorf("blob %s: %d fetches from the origin, want 1", d, n)
		}
	}
	for k, n := range gets {
		if strings.HasPrefix(k, "manifests ") && n > 1 {
			t.Errorf("manifest %s: %d fetches from the origin, want at most 1", strings.TrimPrefix(k, "manifests "), n)
		}
	}
}

// TestTiers: 50 parallel pulls through two stacked tiers fetch each blob
// once from the origin; a retag and a deletion at the origin are seen
// through both at once; with the origin stopped, what the tiers hold
// still pulls.
func TestTiers(t *testing.T) {
	for _, kind := range []string{"embedded", "apache", "nginx"} {
		t.Run(kind, func(t *testing.T) {
			f := newFleet(t)
			origin := newCountingOrigin(t, originHandler(t, kind, f.root))
			site := tier(t, origin.srv.URL)
			rack := tier(t, site)

			pullMany(t, rack, f, 50, 8)
			checkOneFetchEach(t, origin, f)

			// a retag at the origin: fleet/a:v1 becomes image b, through both tiers at once
			for _, base := range []string{rack, site} {
				if got, want := tagDigest(t, base, "fleet/a", "v1"), f.imgs.Top["a"].Digest; got != want {
					t.Fatalf("%s: fleet/a:v1 is %s before the retag, want %s", base, got, want)
				}
			}
			if _, err := exporter.Export(context.Background(), f.root, f.imgs.Source("b"), "fleet/a:v1", exporter.Options{}); err != nil {
				t.Fatal(err)
			}
			for _, base := range []string{rack, site} {
				if got, want := tagDigest(t, base, "fleet/a", "v1"), f.imgs.Top["b"].Digest; got != want {
					t.Errorf("%s: fleet/a:v1 is %s after the retag, want %s", base, got, want)
				}
			}
			if _, err := pullGGCR(context.Background(), rack, "fleet/a:v1"); err != nil {
				t.Errorf("pull of the retagged fleet/a:v1: %v", err)
			}

			// a deleted tag answers 404 through them
			refs, err := gcRefs("fleet/b:v1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gc.Delete(f.root, refs, gc.DeleteOptions{NoPrune: true}); err != nil {
				t.Fatal(err)
			}
			for _, base := range []string{rack, site} {
				if code := status(t, base+"/v2/fleet/b/manifests/v1"); code != http.StatusNotFound {
					t.Errorf("%s: the deleted tag fleet/b:v1 answers %d, want 404", base, code)
				}
			}

			// the origin stopped: every manifest and blob by digest the tiers hold still pulls
			origin.stop()
			for _, base := range []string{rack, site} {
				// the index was asked for by tag only, its children by digest
				for _, b := range f.imgs.Blobs["c"] {
					if b.MediaType != bench.MediaTypeManifest {
						continue
					}
					ref := "fleet/c@" + b.Digest.String()
					if _, err := pullGGCR(context.Background(), base, ref); err != nil {
						t.Errorf("%s: origin stopped: pull %s: %v", base, ref, err)
					}
				}
				// single-platform images were pulled by tag: their manifests were
				// never asked for by digest, their blobs were; every blob through
				// one repository, which the key by digest alone allows
				for d := range f.blobs {
					checkBlobs(t, base, []bench.Blob{{Digest: digest.Digest(d)}})
				}
			}
		})
	}
}

// TestPreheat: preheat through both tiers, then 50 pulls: the origin
// sends no blob and no manifest by digest to the tiers after preheat.
func TestPreheat(t *testing.T) {
	f := newFleet(t)
	origin := newCountingOrigin(t, originHandler(t, "embedded", f.root))
	site := tier(t, origin.srv.URL)
	rack := tier(t, site)

	var refs []preheat.Ref
	for _, r := range append(slices.Clone(f.refs), f.hello...) {
		ref, err := preheat.ParseRef(r)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	rep, err := preheat.Run(context.Background(), []string{rack, site}, refs, preheat.Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range rep.Tiers {
		if tr.Blobs != len(f.blobs) {
			t.Errorf("%s: %d blobs served, want %d", tr.URL, tr.Blobs, len(f.blobs))
		}
	}
	before, _ := origin.snapshot()
	checkOneFetchEach(t, origin, f)

	pullMany(t, rack, f, 50, 8)
	after, _ := origin.snapshot()
	for k, n := range after {
		if n != before[k] {
			t.Errorf("%s: %d more fetches from the origin after preheat, want none", k, n-before[k])
		}
	}
}

// TestPreheatUnreachableTier: an unreachable tier is named and the run
// fails, but the other tier is warmed.
func TestPreheatUnreachableTier(t *testing.T) {
	f := newFleet(t)
	origin := newCountingOrigin(t, originHandler(t, "embedded", f.root))
	up := tier(t, origin.srv.URL)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	ref, err := preheat.ParseRef(f.refs[2])
	if err != nil {
		t.Fatal(err)
	}
	rep, err := preheat.Run(context.Background(), []string{deadURL, up}, []preheat.Ref{ref}, preheat.Options{})
	if err == nil || !strings.Contains(err.Error(), deadURL) {
		t.Fatalf("preheat through a dead tier: %v, want an error naming %s", err, deadURL)
	}
	c := layersAndConfigs(f.imgs.Blobs["c"])
	if rep == nil || rep.Tiers[1].Error != "" || rep.Tiers[1].Blobs != len(c) {
		t.Fatalf("the live tier was not warmed: %+v", rep)
	}
	origin.stop()
	checkBlobs(t, up, c)
}

func tagDigest(t *testing.T, base, repo, tag string) digest.Digest {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", preheat.Accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", req.URL, resp.Status, err)
	}
	return digest.FromBytes(b)
}

func status(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkBlobs GETs each blob through base and checks its bytes.
func checkBlobs(t *testing.T, base string, blobs []bench.Blob) {
	t.Helper()
	for _, b := range blobs {
		resp, err := http.Get(base + "/v2/fleet/a/blobs/" + b.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(data) != b.Digest {
			t.Errorf("%s: blob %s: %s, %d bytes, %v", base, b.Digest, resp.Status, len(data), err)
		}
	}
}

// layersAndConfigs are the blobs of bs that are no manifest.
func layersAndConfigs(bs []bench.Blob) []bench.Blob {
	var out []bench.Blob
	for _, b := range bs {
		if b.MediaType != bench.MediaTypeManifest && b.MediaType != bench.MediaTypeIndex {
			out = append(out, b)
		}
	}
	return out
}

func gcRefs(args ...string) ([]gc.Ref, error) {
	var refs []gc.Ref
	for _, a := range args {
		r, err := gc.ParseRef(a)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}

// TestTierHeadThenGet: a HEAD through a tier with nothing cached is
// answered, and the GET after it still gets the whole blob: the HEAD's
// empty body was not cached for it. The GET is the one origin fetch.
func TestTierHeadThenGet(t *testing.T) {
	f := newFleet(t)
	origin := newCountingOrigin(t, originHandler(t, "embedded", f.root))
	base := tier(t, origin.srv.URL)
	b := layersAndConfigs(f.imgs.Blobs["a"])[0]
	u := base + "/v2/fleet/b/blobs/" + b.Digest.String()
	for range 2 {
		resp, err := http.Head(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ContentLength != b.Size {
			t.Fatalf("HEAD %s: %s, Content-Length %d, want 200 and %d", u, resp.Status, resp.ContentLength, b.Size)
		}
	}
	checkBlobs(t, base, []bench.Blob{b})
	checkBlobs(t, base, []bench.Blob{b})
	if gets, _ := origin.snapshot(); gets["blobs "+b.Digest.String()] != 1 {
		t.Errorf("%d GETs of the blob at the origin, want 1", gets["blobs "+b.Digest.String()])
	}
}

// TestClientMirrorsSkopeo: the registries.conf config client --mirror
// prints sends skopeo to the tiers first: with the registry's own address
// unreachable, a pull of it succeeds through the tier.
func TestClientMirrorsSkopeo(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Fatalf("skopeo is not installed: %s", testserver.Setup)
	}
	f := newFleet(t)
	origin := newCountingOrigin(t, originHandler(t, "embedded", f.root))
	rack := tier(t, tier(t, origin.srv.URL))
	dead := httptest.NewServer(http.NotFoundHandler())
	registry := strings.TrimPrefix(dead.URL, "http://")
	dead.Close()
	files, err := templates.ClientFiles("podman", templates.Client{Registry: registry, Mirrors: []string{rack}})
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, files[0].Content, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("skopeo", "--registries-conf", conf, "copy", "--all", "docker://"+registry+"/fleet/c:v1", "dir:"+filepath.Join(t.TempDir(), "img"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s\n%s", cmd, err, out, files[0].Content)
	}
	gets, _ := origin.snapshot()
	for _, b := range layersAndConfigs(f.imgs.Blobs["c"]) {
		if gets["blobs "+b.Digest.String()] != 1 {
			t.Errorf("blob %s: %d fetches at the origin, want 1 (through the tiers)", b.Digest, gets["blobs "+b.Digest.String()])
		}
	}

	// no tier answering: the pull falls back to the registry
	files, err = templates.ClientFiles("podman", templates.Client{Registry: strings.TrimPrefix(origin.srv.URL, "http://"), Mirrors: []string{dead.URL}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, files[0].Content, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("skopeo", "--registries-conf", conf, "copy", "--all", "docker://"+strings.TrimPrefix(origin.srv.URL, "http://")+"/fleet/b:v1", "dir:"+filepath.Join(t.TempDir(), "img"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("no tier answering: %s: %v\n%s\n%s", cmd, err, out, files[0].Content)
	}
}
