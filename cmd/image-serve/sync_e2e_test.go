package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/internal/distreg"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/opencontainers/go-digest"
)

// The release TestSyncDistribution mirrors: release/svc00 … svc19 with
// tags 1.0 … 1.9 each, every image a base layer of three (svc i has base
// i%3) and a layer of its own; release/multi:v1, a two-arch OCI index
// on base 0; release/pinned, one image pushed by digest only.
const (
	e2eRepos = 20
	e2eTags  = 10
	e2eBases = 3
)

// e2eImmutable are the repositories the sync file declares immutable:
// once in the tree, no run asks the registry about them.
var e2eImmutable = []string{"release/svc00", "release/svc01"}

// e2eListed are the repositories the sync file names with [] (every
// tag): their tags come from the registry's listing.
var e2eListed = []string{"release/svc02", "release/svc03"}

// release is what the test pushed, by "repo:tag".
type release struct {
	images map[string]exported
	bases  []string   // the shared layers' digests
	base   []v1.Layer // the shared layers
	pinned exported   // the digest-only image: a pin of release/pinned, no tag
	// chains are the chain IDs of every prefix of an image's layers
	// (the linux/amd64 child's for an index): containerd's snapshots of
	// it, unpacked.
	chains map[string][]string
	src    *rand.ChaCha8
	opts   []remote.Option // how pushes reach the registry
}

// TestSyncDistribution mirrors a release from the CNCF distribution
// registry (internal/distreg: the pinned registry `make test-deps`
// builds) with the real binary, counting from the registry's own access
// log what each run asks, and pulls what landed through the embedded
// server, Apache and nginx: every tag with go-containerregistry, one tag
// per repository with skopeo, podman and containerd (the three servers
// in turn across repositories, the index through all three).
//
// From the access log: the cold run GETs each blob at most once and each
// shared base exactly once; a second run makes at most one HEAD per tag,
// no GET of a manifest or blob, and no request at all about the
// repositories declared immutable; after a tag is pushed anew upstream,
// a third run fetches that tag's new manifest and nothing of another
// repository, and every server then serves the new image; --dry-run,
// another tag moved, fetches no blob and leaves the tree byte for byte.
// The digest entry is only warned about: sync skips digest entries until
// digest pins land, and this test says so until then.
func TestSyncDistribution(t *testing.T) {
	began := time.Now()
	defer func() { t.Logf("wall time: %v", time.Since(began).Round(time.Millisecond)) }()
	reg := distreg.Start(t)
	rel := seedRelease(t, reg)
	file := writeFile(t, "release.yaml", releaseFile(reg.Host, rel))
	root := testserver.TempRoot(t)
	rootDir := root.Dir()
	nTags := e2eRepos*e2eTags + 1

	// Cold: every blob fetched at most once, each shared base exactly once.
	m := reg.Mark(t)
	r := mustRun(t, "--root", rootDir, "sync", "-f", file, "--jobs", "8")
	cold := reg.Since(t, m)
	if strings.Contains(r.stderr, "not synced") {
		t.Errorf("cold run: the digest entry release/pinned was not synced:\n%s", r.stderr)
	}
	blobGets := map[string]int{}
	for _, q := range cold {
		if q.Method == "GET" && q.Kind() == "blobs" {
			blobGets[q.Ref()]++
		}
	}
	for d, n := range blobGets {
		if n > 1 {
			t.Errorf("cold run: blob %s fetched %d times, want once", d, n)
		}
	}
	for _, b := range rel.bases {
		if blobGets[b] != 1 {
			t.Errorf("cold run: shared base layer %s fetched %d times, want once", b, blobGets[b])
		}
	}
	t.Logf("cold run: %d requests for %d tags: %v", len(cold), nTags, kinds(cold))

	servers := []struct{ name, base string }{
		{"embedded", testserver.Embedded(t, root)},
		{"apache", testserver.Apache(t, root, testserver.WithConfig(apacheConfigFromCLI(root)))},
		{"nginx", testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root)))},
	}
	for _, srv := range servers {
		if err := ggcrPull(strings.TrimPrefix(srv.base, "http://"), rel.pinned); err != nil {
			t.Errorf("%s: the digest entry, pinned: %v", srv.name, err)
		}
	}
	// The store's run directory must be short: podman wants at most 50
	// characters, which a subtest's TempDir is not.
	p := newPodmanStore(t)
	t.Run("pull", func(t *testing.T) {
		t.Run("ggcr", func(t *testing.T) {
			t.Parallel()
			var imgs []exported
			for _, k := range sortedKeys(rel.images) {
				imgs = append(imgs, rel.images[k])
			}
			for _, srv := range servers {
				for _, err := range parallelDo(8, imgs, func(img exported) error {
					return ggcrPull(strings.TrimPrefix(srv.base, "http://"), img)
				}) {
					t.Errorf("%s: %v", srv.name, err)
				}
			}
		})
		sample := sampleTags(rel)
		t.Run("skopeo", func(t *testing.T) {
			t.Parallel()
			for i, img := range sample {
				for _, srv := range sampleServers(i, img, len(servers)) {
					host := strings.TrimPrefix(servers[srv].base, "http://")
					dir := t.TempDir()
					skopeo(t, "copy", "--all", "--insecure-policy", "--src-tls-verify=false", "docker://"+host+"/"+img.repo+":"+img.tag, "dir:"+dir)
					if got := sha256Digest(readFile(t, filepath.Join(dir, "manifest.json"))); got != img.digest {
						t.Errorf("%s: skopeo copy %s:%s: manifest %s, want %s", servers[srv].name, img.repo, img.tag, got, img.digest)
					}
				}
			}
		})
		t.Run("podman", func(t *testing.T) {
			t.Parallel()
			p.t = t
			for i, img := range sample {
				for _, srv := range sampleServers(i, img, len(servers)) {
					ref := strings.TrimPrefix(servers[srv].base, "http://") + "/" + img.repo + ":" + img.tag
					want := img.digest
					args := []string{"pull", "--tls-verify=false", "--quiet"}
					if img.isIndex() {
						args = append(args, "--arch", "arm64")
					}
					id := p.podman(append(args, ref)...)
					got := p.podman("image", "inspect", "--format", "{{.Digest}} {{.Architecture}}", id)
					p.podman("rmi", "--force", id)
					if img.isIndex() {
						want += " arm64"
					} else {
						want += " amd64"
					}
					if got != want {
						t.Errorf("%s: podman pull %s: %s, want %s", servers[srv].name, ref, got, want)
					}
				}
			}
		})
		t.Run("containerd", func(t *testing.T) {
			t.Parallel()
			if os.Geteuid() != 0 {
				t.Fatal("ctr images pull unpacks layers by mounting, which needs root: run the tests as root, as make test does")
			}
			if runtime.GOARCH != "amd64" {
				t.Fatalf("the release's single images are linux/amd64; ctr images pull on %s would pick none", runtime.GOARCH)
			}
			ctrd := testserver.Containerd(t)
			for i, img := range sample {
				for _, srv := range sampleServers(i, img, len(servers)) {
					host := strings.TrimPrefix(servers[srv].base, "http://")
					c := &ctrCase{
						t: t, ctrd: ctrd, img: img,
						want: closureOf(t, root, img.repo, img.digest, img.mediaType),
						ns:   "image-serve-sync-" + servers[srv].name + "-" + strings.ReplaceAll(img.repo, "/", "-"),
						tag:  host + "/" + img.repo + ":" + img.tag,
					}
					// ctrCase.pullTag wants one snapshot, for one-layer
					// images; these have two, so a snapshot per chain.
					if _, err := ctrd.Ctr(c.ns, "images", "pull", "--plain-http", c.tag); err != nil {
						t.Fatal(err)
					}
					c.checkImage(c.ns, c.tag, c.want.only("linux/amd64"), rel.chains[img.repo+":"+img.tag])
				}
			}
		})
	})

	// No-op: at most one HEAD per tag, no manifest or blob GET, nothing
	// for the immutable repositories.
	m = reg.Mark(t)
	mustRun(t, "--root", rootDir, "sync", "-f", file, "--jobs", "8")
	noop := reg.Since(t, m)
	checkNoop(t, "second run", noop, rel)
	t.Logf("no-op run: %d requests for %d tags (%.2f a tag): %v", len(noop), nTags, float64(len(noop))/float64(nTags), kinds(noop))

	// A retag upstream moves that tag and only that one.
	moved := "release/svc05:1.3"
	rel.push(t, reg, moved, rel.image(t, 5))
	m = reg.Mark(t)
	digests := filepath.Join(t.TempDir(), "digests")
	mustRun(t, "--root", rootDir, "sync", "-f", file, "--jobs", "8", "--digestfile", digests)
	third := reg.Since(t, m)
	for _, q := range third {
		if (q.Kind() == "manifests" && q.Method == "GET" || q.Kind() == "blobs") && q.Repo() != "release/svc05" {
			t.Errorf("third run: %s %s: only %s moved", q.Method, q.Path, moved)
		}
		if q.Kind() == "blobs" && slices.Contains(rel.bases, q.Ref()) {
			t.Errorf("third run: %s %s: the tree has that base layer", q.Method, q.Path)
		}
	}
	if n := third.Counts()["GET /v2/release/svc05/manifests/"+rel.images[moved].digest]; n != 1 {
		t.Errorf("third run: the moved tag's new manifest fetched %d times, want once", n)
	}
	t.Logf("third run (%s moved): %d requests: %v", moved, len(third), kinds(third))
	for line := range strings.Lines(string(readFile(t, digests))) {
		dg, ref, _ := strings.Cut(strings.TrimSpace(line), " ")
		if ref == rel.pinned.repo+"@"+rel.pinned.digest && dg == rel.pinned.digest {
			continue // the pin, by its digest
		}
		if img, ok := rel.images[ref]; !ok || img.digest != dg {
			t.Errorf("--digestfile: %s %s, want %s", dg, ref, img.digest)
		}
	}
	for _, srv := range servers {
		if err := ggcrPull(strings.TrimPrefix(srv.base, "http://"), rel.images[moved]); err != nil {
			t.Errorf("%s after the retag: %v", srv.name, err)
		}
	}

	// --dry-run with a tag moved upstream: the tree stays byte for byte.
	rel.push(t, reg, "release/svc06:1.4", rel.image(t, 6))
	before := snapshot(t, rootDir)
	m = reg.Mark(t)
	r = mustRun(t, "--root", rootDir, "sync", "-f", file, "--dry-run")
	dry := reg.Since(t, m)
	if after := snapshot(t, rootDir); after != before {
		t.Errorf("sync --dry-run changed the tree:\n%s", testtree.Diff(before, after))
	}
	for _, q := range dry {
		if q.Kind() == "blobs" {
			t.Errorf("sync --dry-run: %s %s: a dry run fetches no blob", q.Method, q.Path)
		}
	}
	if !strings.Contains(r.stdout+r.stderr, "release/svc06:1.4") {
		t.Errorf("sync --dry-run does not name the tag that would move:\n%s%s", r.stdout, r.stderr)
	}

	t.Run("skopeo-example", func(t *testing.T) { syncSkopeoExample(t, reg) })
}

// kinds counts a log's requests by "METHOD KIND" (HEAD manifests, GET
// blobs, …), for the test's log.
func kinds(log distreg.Log) map[string]int {
	out := map[string]int{}
	for _, q := range log {
		out[q.Method+" "+q.Kind()]++
	}
	return out
}

// checkNoop asserts what a run with nothing moved may ask: per tag one
// HEAD of its manifest at most, no manifest or blob GET, and nothing
// about an immutable repository.
func checkNoop(t *testing.T, what string, log distreg.Log, rel *release) {
	t.Helper()
	for req, n := range log.Counts() {
		method, path, _ := strings.Cut(req, " ")
		q := distreg.Request{Method: method, Path: path}
		switch {
		case slices.Contains(e2eImmutable, q.Repo()):
			t.Errorf("%s: %s ×%d: %s is immutable and in the tree", what, req, n, q.Repo())
		case q.Kind() == "manifests" && method == "HEAD" && n > 1:
			t.Errorf("%s: %s ×%d, want one HEAD per tag", what, req, n)
		case q.Kind() == "manifests" && method != "HEAD", q.Kind() == "blobs":
			t.Errorf("%s: %s ×%d: nothing moved", what, req, n)
		}
	}
}

// seedRelease pushes the release with go-containerregistry's remote.Write,
// eight images at a time. Its bytes are the same in every run: the
// layers are random from a fixed seed.
func seedRelease(t *testing.T, reg *distreg.Registry) *release {
	rel := &release{images: map[string]exported{}, chains: map[string][]string{}, src: rand.NewChaCha8([32]byte{'i', 'm', 'a', 'g', 'e', '-', 's', 'e', 'r', 'v', 'e'})}
	base := make([]v1.Layer, e2eBases)
	rel.base = base
	for i := range base {
		base[i] = rel.layer(t, 64<<10)
		d, err := base[i].Digest()
		if err != nil {
			t.Fatal(err)
		}
		rel.bases = append(rel.bases, d.String())
	}
	type push struct {
		ref string
		img v1.Image
	}
	var pushes []push
	for i := range e2eRepos {
		for j := range e2eTags {
			pushes = append(pushes, push{fmt.Sprintf("release/svc%02d:1.%d", i, j), testregistry.DockerImage(t, base[i%e2eBases], rel.layer(t, 1024))})
		}
	}
	for _, err := range parallelDo(8, pushes, func(p push) error { return rel.write(reg, p.ref, p.img) }) {
		t.Fatal(err)
	}
	for _, p := range pushes {
		rel.record(t, p.ref, p.img)
	}
	rel.pushIndex(t, reg, "release/multi:v1", map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base[0], rel.layer(t, 1024)),
		"arm64": testregistry.OCIImage(t, "arm64", base[0], rel.layer(t, 1024)),
	})
	pinned := testregistry.DockerImage(t, base[1], rel.layer(t, 1024))
	d, err := pinned.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := rel.write(reg, "release/pinned@"+d.String(), pinned); err != nil {
		t.Fatal(err)
	}
	raw, err := pinned.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := pinned.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	rel.pinned = exported{repo: "release/pinned", digest: d.String(), raw: raw, mediaType: string(mt)}
	return rel
}

// layer is a gzip layer of one file of size bytes from the release's
// random source.
func (rel *release) layer(t *testing.T, size int) v1.Layer {
	t.Helper()
	data := make([]byte, size)
	_, _ = rel.src.Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "data", Mode: 0o644, Size: int64(size), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, tarball.WithMediaType(types.DockerLayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// image is a new image for svc i: its base and a fresh layer.
func (rel *release) image(t *testing.T, i int) v1.Image {
	t.Helper()
	return testregistry.DockerImage(t, rel.base[i%e2eBases], rel.layer(t, 1024))
}

func (rel *release) write(reg *distreg.Registry, ref string, img v1.Image) error {
	r, err := name.ParseReference(reg.Host+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(r, img, rel.opts...); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

func (rel *release) push(t *testing.T, reg *distreg.Registry, ref string, img v1.Image) {
	t.Helper()
	if err := rel.write(reg, ref, img); err != nil {
		t.Fatal(err)
	}
	rel.record(t, ref, img)
}

func (rel *release) record(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(ref, ":")
	rel.images[ref] = exported{repo: repo, tag: tag, digest: sha256Digest(raw), raw: raw, mediaType: string(mt)}
	rel.chains[ref] = chainIDs(t, img)
}

// chainIDs is the chain ID of every prefix of img's layers.
func chainIDs(t *testing.T, img v1.Image) []string {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []digest.Digest
	var out []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, digest.Digest(d.String()))
		out = append(out, chainID(diffIDs))
	}
	return out
}

// pushIndex pushes an OCI index over imgs written by hand, as
// testregistry.PushIndex does (go-containerregistry's own adds
// artifactType to each descriptor, which skopeo drops when it copies).
func (rel *release) pushIndex(t *testing.T, reg *distreg.Registry, ref string, imgs map[string]v1.Image) {
	t.Helper()
	repo, tag, _ := strings.Cut(ref, ":")
	type entry struct {
		MediaType types.MediaType `json:"mediaType"`
		Size      int64           `json:"size"`
		Digest    v1.Hash         `json:"digest"`
		Platform  *v1.Platform    `json:"platform"`
	}
	var entries []entry
	children := map[string]string{}
	for _, arch := range sortedKeys(imgs) {
		img := imgs[arch]
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if err := rel.write(reg, repo+"@"+d.String(), img); err != nil {
			t.Fatal(err)
		}
		mt, _ := img.MediaType()
		size, _ := img.Size()
		entries = append(entries, entry{mt, size, d, &v1.Platform{OS: "linux", Architecture: arch}})
		children["linux/"+arch] = d.String()
	}
	raw, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": types.OCIImageIndex, "manifests": entries})
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(reg.Host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(r, rawIndex(raw), rel.opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	rel.images[ref] = exported{repo: repo, tag: tag, digest: sha256Digest(raw), raw: raw, mediaType: string(types.OCIImageIndex), children: children}
	rel.chains[ref] = chainIDs(t, imgs["amd64"])
}

type rawIndex []byte

func (r rawIndex) RawManifest() ([]byte, error)        { return r, nil }
func (r rawIndex) MediaType() (types.MediaType, error) { return types.OCIImageIndex, nil }

// releaseFile is the sync file: skopeo's forms (tag lists, [] for every
// tag, a digest) and ours (a mapping with immutable patterns).
func releaseFile(host string, rel *release) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n  tls-verify: false\n  images:\n", host)
	for i := range e2eRepos {
		repo := fmt.Sprintf("release/svc%02d", i)
		var tags []string
		for j := range e2eTags {
			tags = append(tags, fmt.Sprintf("%q", fmt.Sprintf("1.%d", j)))
		}
		switch {
		case slices.Contains(e2eImmutable, repo):
			fmt.Fprintf(&b, "    %s:\n      tags: [%s]\n      immutable: ['^1\\.']\n", repo, strings.Join(tags, ", "))
		case slices.Contains(e2eListed, repo):
			fmt.Fprintf(&b, "    %s: []\n", repo)
		default:
			fmt.Fprintf(&b, "    %s:\n", repo)
			for _, tag := range tags {
				fmt.Fprintf(&b, "      - %s\n", tag)
			}
		}
	}
	fmt.Fprintf(&b, "    release/multi: [v1]\n    release/pinned: [%q]\n", rel.pinned.digest)
	return b.String()
}

// sampleTags is one tag per repository, a different one in each.
func sampleTags(rel *release) []exported {
	var out []exported
	for i := range e2eRepos {
		out = append(out, rel.images[fmt.Sprintf("release/svc%02d:1.%d", i, i%e2eTags)])
	}
	return append(out, rel.images["release/multi:v1"])
}

// sampleServers is the servers the i-th sample is pulled through: one,
// in turn, and all of them for the index.
func sampleServers(i int, img exported, n int) []int {
	if img.isIndex() {
		return []int{0, 1, 2}[:n]
	}
	return []int{i % n}
}

// ggcrPull pulls img by tag (by digest without one) with go-containerregistry from host and
// checks it against what was pushed: the manifest's bytes, and every
// blob it reaches, hashed (validate).
func ggcrPull(host string, img exported) error {
	at := ":" + img.tag
	if img.tag == "" {
		at = "@" + img.digest
	}
	ref, err := name.ParseReference(host+"/"+img.repo+at, name.Insecure)
	if err != nil {
		return err
	}
	desc, err := remote.Get(ref)
	if err != nil {
		return fmt.Errorf("ggcr get %s: %w", ref, err)
	}
	if desc.Digest.String() != img.digest || !bytes.Equal(desc.Manifest, img.raw) || string(desc.MediaType) != img.mediaType {
		return fmt.Errorf("ggcr get %s: %s %s, want %s %s", ref, desc.Digest, desc.MediaType, img.digest, img.mediaType)
	}
	if img.isIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = validate.Index(idx)
		}
		if err != nil {
			return fmt.Errorf("ggcr validate index %s: %w", ref, err)
		}
		return nil
	}
	im, err := desc.Image()
	if err == nil {
		err = validate.Image(im)
	}
	if err != nil {
		return fmt.Errorf("ggcr validate image %s: %w", ref, err)
	}
	return nil
}

// parallelDo runs f over xs, jobs at a time, and returns its errors.
func parallelDo[T any](jobs int, xs []T, f func(T) error) []error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, jobs)
	)
	for _, x := range xs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f(x); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// syncSkopeoExample syncs the example file of skopeo-sync(1)
// (syncfile/testdata) from two distribution registries, its text changed
// only in its two hosts and its cert-dir: registry.example.com becomes a
// registry over HTTPS with a test CA (the cert-dir holds it, so
// tls-verify: true holds) that lets in only the file's user john, with
// the file's password; quay.io becomes plain (the test's main registry;
// the file says tls-verify: false). Its digest entry names no image and
// is skipped with a warning, as every digest entry is until digest pins
// land.
func syncSkopeoExample(t *testing.T, plain *distreg.Registry) {
	example, err := os.ReadFile(filepath.Join("..", "..", "syncfile", "testdata", "skopeo-sync-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const user, password = "john", "this is a secret"
	secure := distreg.StartWith(t, distreg.Options{TLS: true, Users: map[string]string{user: password}})
	src := rand.NewChaCha8([32]byte{'s', 'k', 'o', 'p', 'e', 'o'})
	rel := &release{images: map[string]exported{}, chains: map[string][]string{}, src: src,
		opts: []remote.Option{remote.WithTransport(secure.Client().Transport), remote.WithAuth(&authn.Basic{Username: user, Password: password})}}
	for _, ref := range []string{"busybox:1", "busybox:latest", "redis:1.0", "redis:2.0", "redis:3.0",
		"nginx:1.13.1-alpine-perl", "nginx:1.13.2-alpine-perl", "nginx:1.13.3-alpine-perl", "nginx:1.13.2",
		"alpine:3.11.0", "alpine:3.12.5", "alpine:3.14.0", "alpine:3.17.1", "alpine:edge"} {
		rel.push(t, secure, ref, testregistry.DockerImage(t, rel.layer(t, 512)))
	}
	// The file's digest entry is a placeholder no registry holds: it
	// becomes the digest of an image pushed to redis, which lands as a pin.
	rel.push(t, secure, "redis:pinned-by-digest", testregistry.DockerImage(t, rel.layer(t, 512)))
	pinned := rel.images["redis:pinned-by-digest"].digest
	quay := &release{images: map[string]exported{}, chains: map[string][]string{}, src: src}
	for _, ref := range []string{"coreos/etcd:latest", "coreos/etcd:v3"} {
		quay.push(t, plain, ref, testregistry.DockerImage(t, quay.layer(t, 512)))
	}
	certs := t.TempDir()
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), secure.CACertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	adapted := strings.NewReplacer(
		"registry.example.com:", secure.Host+":",
		"quay.io:", plain.Host+":",
		"/home/john/certs", certs,
		"sha256:0000000000000000000000000000000011111111111111111111111111111111", pinned,
	).Replace(string(example))
	file := writeFile(t, "sync.yml", adapted)
	rootDir := filepath.Join(t.TempDir(), "root")
	m := secure.Mark(t)
	r := mustRun(t, "--root", rootDir, "sync", "-f", file)
	if out := mustRun(t, "--root", rootDir, "list", "--long", "redis").stdout; !strings.Contains(out, "redis@"+pinned) || !strings.Contains(out, "(pinned)") {
		t.Errorf("the digest entry is not pinned:\n%s\n%s", out, r.stderr)
	}
	if kinds(secure.Since(t, m))["GET blobs"] == 0 {
		t.Errorf("nothing fetched from the HTTPS registry")
	}
	want := map[string]string{
		"busybox":     "1 latest",
		"redis":       "1.0 2.0",
		"nginx":       "1.13.1-alpine-perl 1.13.2-alpine-perl",
		"alpine":      "3.12.5 3.17.1",
		"coreos/etcd": "latest",
	}
	for repo, tags := range want {
		out := mustRun(t, "--root", rootDir, "list", repo).stdout
		if got := strings.Join(strings.Fields(out), " "); got != tags {
			t.Errorf("%s: tags %q, want %q", repo, got, tags)
		}
	}
	// The HTTPS registry's tags are its images, byte for byte.
	for _, ref := range sortedKeys(rel.images) {
		img := rel.images[ref]
		if !slices.Contains(strings.Fields(want[img.repo]), img.tag) {
			continue
		}
		if got := mustRun(t, "--root", rootDir, "list", "--json", img.repo).stdout; !strings.Contains(got, img.digest) {
			t.Errorf("%s: the tree has not the source's %s:\n%s", ref, img.digest, got)
		}
	}
}
