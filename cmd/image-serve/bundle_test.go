package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
)

// airgapSites is the world of the bundle tests: tree A (the connected
// site) holds a base and targets built on it, tree B (the far site) the
// base alone.
type airgapSites struct {
	a, b    *tree.Root
	targets map[string]string // REPO:TAG in A → its digest
	// newBytes is the size of the targets' blobs that the base does not
	// hold, manifests and configs included: what a delta must carry.
	newBytes int64
	// largest is the largest layer's size.
	largest int64
}

const bigLayer = 96 << 10

func newAirgapSites(t *testing.T) *airgapSites {
	t.Helper()
	reg := testregistry.Start(t)
	layer := func(size int64) v1.Layer { return testregistry.Layer(t, size, types.OCILayer) }
	base1, base2 := layer(64<<10), layer(8<<10)
	s := &airgapSites{a: testserver.TempRoot(t), b: testserver.TempRoot(t), targets: map[string]string{}, largest: bigLayer}
	reg.PushImage(t, "src/base:v1", testregistry.OCIImage(t, "amd64", base1, base2))
	app := testregistry.OCIImage(t, "amd64", base1, base2, layer(bigLayer))
	multi := map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base1, layer(20<<10)),
		"arm64": testregistry.OCIImage(t, "arm64", base2, layer(30<<10)),
	}
	pushed := []testregistry.Pushed{reg.PushImage(t, "src/app:v2", app), reg.PushIndex(t, "src/multi:v2", types.OCIImageIndex, multi)}
	exp := func(root *tree.Root, src, dest string) {
		mustRun(t, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref(src), dest)
	}
	exp(s.a, "src/base:v1", "base/os:v1")
	exp(s.b, "src/base:v1", "base/os:v1")
	exp(s.a, "src/app:v2", "site/app:v2")
	exp(s.a, "src/multi:v2", "site/multi:v2")
	s.targets["site/app:v2"], s.targets["site/multi:v2"] = pushed[0].Digest, pushed[1].Digest
	// What the targets add to the base: every manifest, config and
	// layer of theirs but the base's two layers.
	baseLayers := map[v1.Hash]bool{}
	for _, l := range []v1.Layer{base1, base2} {
		d, _ := l.Digest()
		baseLayers[d] = true
	}
	seen := map[v1.Hash]bool{}
	addImage := func(img v1.Image) {
		raw, _ := img.RawManifest()
		s.newBytes += int64(len(raw))
		cfg, _ := img.RawConfigFile()
		s.newBytes += int64(len(cfg))
		ls, _ := img.Layers()
		for _, l := range ls {
			d, _ := l.Digest()
			n, _ := l.Size()
			if !baseLayers[d] && !seen[d] {
				seen[d] = true
				s.newBytes += n
			}
		}
	}
	addImage(app)
	for _, img := range multi {
		addImage(img)
	}
	s.newBytes += int64(len(pushed[1].Raw))
	return s
}

func (s *airgapSites) targetRefs() []string { return []string{"site/app:v2", "site/multi:v2"} }

// pullTargets pulls every target from root through the embedded server
// with go-containerregistry (every blob checked against its digest) and
// skopeo, and checks it is the digest tree A has.
func (s *airgapSites) pullTargets(t *testing.T, root *tree.Root) {
	t.Helper()
	host := strings.TrimPrefix(testserver.Embedded(t, root), "http://")
	for ref, want := range s.targets {
		got, err := pullDigest(host + "/" + ref)
		if err != nil || got.String() != want {
			t.Errorf("ggcr pull %s: %v %v, want %s", ref, got, err, want)
		}
		dir := t.TempDir()
		skopeo(t, "copy", "--all", "--insecure-policy", "--src-tls-verify=false", "docker://"+host+"/"+ref, "dir:"+dir)
		if got := sha256Digest(readFile(t, filepath.Join(dir, "manifest.json"))); got != want {
			t.Errorf("skopeo copy --all %s: manifest %s, want %s", ref, got, want)
		}
	}
}

// pullTargetsApachePodman pulls every target from root through Apache
// (go-containerregistry, podman) and the embedded server (podman).
func (s *airgapSites) pullTargetsApachePodman(t *testing.T, root *tree.Root) {
	t.Helper()
	apache := strings.TrimPrefix(testserver.Apache(t, root, testserver.WithConfig(apacheConfigFromCLI(root))), "http://")
	embedded := strings.TrimPrefix(testserver.Embedded(t, root), "http://")
	for ref, want := range s.targets {
		if got, err := pullDigest(apache + "/" + ref); err != nil || got.String() != want {
			t.Errorf("ggcr pull %s through Apache: %v %v, want %s", ref, got, err, want)
		}
	}
	p := newPodmanStore(t)
	for _, host := range []string{apache, embedded} {
		for _, tc := range []struct{ ref, arch string }{{"site/app:v2", "amd64"}, {"site/multi:v2", "amd64"}, {"site/multi:v2", "arm64"}} {
			if got := p.pull(host+"/"+tc.ref, tc.arch); got != tc.arch {
				t.Errorf("podman pull --arch %s %s/%s stored a %s image", tc.arch, host, tc.ref, got)
			}
		}
	}
}

func fileSize(t *testing.T, paths ...string) int64 {
	t.Helper()
	var n int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestBundleHave is the README's air-gapped example: inventory of B,
// bundle create --have in A, bundle load in B, pull the targets from B.
func TestBundleHave(t *testing.T) {
	s := newAirgapSites(t)
	dir := t.TempDir()
	inv, file := filepath.Join(dir, "b.inventory"), filepath.Join(dir, "update.bundle")
	mustRun(t, "--root", s.b.Dir(), "inventory", "-o", inv)
	mustRun(t, append([]string{"--root", s.a.Dir(), "bundle", "create", "-o", file, "--have", inv}, s.targetRefs()...)...)
	// An empty root has an empty inventory.
	if out := mustRun(t, "--root", t.TempDir(), "inventory").stdout; out == "" {
		t.Error("inventory of an empty root wrote nothing")
	} else if empty, err := bundle.ReadInventory(strings.NewReader(out)); err != nil || len(empty.Blobs)+len(empty.Manifests) != 0 {
		t.Errorf("inventory of an empty root: %v %v", empty, err)
	}
	size := fileSize(t, file)
	t.Logf("inventory %d bytes; bundle %d bytes for %d bytes of new blobs and manifests", fileSize(t, inv), size, s.newBytes)
	if size < s.newBytes || size > s.newBytes+16<<10 {
		t.Errorf("bundle of %d bytes: want within a few KiB of the %d bytes of new blobs and manifests", size, s.newBytes)
	}
	var info struct {
		Desc bundle.Descriptor `json:"descriptor"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "bundle", "inspect", "--json", file).stdout), &info); err != nil {
		t.Fatal(err)
	}
	t.Logf("descriptor: %d members, %d bytes carried of the images' %d, %d needed blobs of %d bytes",
		len(info.Desc.Members), info.Desc.Bytes.Members, info.Desc.Bytes.Images, len(info.Desc.Needed), info.Desc.Bytes.Needed)
	if len(info.Desc.Needed) != 2 || len(info.Desc.Tags) != 2 {
		t.Errorf("inspect: %d needed blobs (want the base's 2), %d tags (want 2)", len(info.Desc.Needed), len(info.Desc.Tags))
	}
	// The same images named by a sync file (a tag it lists, a regex it
	// selects with) make the same bundle.
	syncFile := filepath.Join(dir, "sync.yaml")
	if err := os.WriteFile(syncFile, []byte("reg.example:5000:\n  images:\n    site/app: [v2]\n  images-by-tag-regex:\n    site/multi: ^v[0-9]+$\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fromSync := filepath.Join(dir, "sync.bundle")
	mustRun(t, "--root", s.a.Dir(), "bundle", "create", "-o", fromSync, "--have", inv, "-f", syncFile)
	if !bytes.Equal(readFile(t, fromSync), readFile(t, file)) {
		t.Errorf("bundle create -f SYNCFILE made another bundle than with the same images as arguments")
	}
	r := mustRun(t, "--root", s.b.Dir(), "bundle", "load", file)
	t.Logf("load:\n%s", r.stderr)
	if !strings.Contains(r.stderr, "carried") {
		t.Errorf("load reports no bytes carried:\n%s", r.stderr)
	}
	s.pullTargets(t, s.b)
	s.pullTargetsApachePodman(t, s.b)
	before := snapshot(t, s.b.Dir())
	r = mustRun(t, "--root", s.b.Dir(), "bundle", "load", file)
	if after := snapshot(t, s.b.Dir()); after != before {
		t.Errorf("loading the same bundle twice changed the tree:\n%s", testtree.Diff(before, after))
	}
	if strings.Count(r.stderr, "unchanged") != 2 {
		t.Errorf("a second load should report both tags unchanged:\n%s", r.stderr)
	}
	mustRun(t, "--root", s.b.Dir(), "verify")
}

// TestBundleBase makes the delta from the sending tree's base image, and
// loads it from stdin.
func TestBundleBase(t *testing.T) {
	s := newAirgapSites(t)
	file := filepath.Join(t.TempDir(), "update.bundle")
	mustRun(t, append([]string{"--root", s.a.Dir(), "bundle", "create", "-o", file, "--base", "base/os:v1"}, s.targetRefs()...)...)
	if size := fileSize(t, file); size < s.newBytes || size > s.newBytes+16<<10 {
		t.Errorf("bundle of %d bytes: want within a few KiB of the %d bytes of new blobs and manifests", size, s.newBytes)
	}
	// The same bundle on stdout, byte for byte: a bundle is a function
	// of the tree and the request.
	out := mustRun(t, append([]string{"--root", s.a.Dir(), "-q", "bundle", "create", "-o", "-", "--base", "base/os:v1"}, s.targetRefs()...)...).stdout
	if !bytes.Equal([]byte(out), readFile(t, file)) {
		t.Errorf("bundle create -o - wrote %d bytes, unlike the %d of -o FILE", len(out), fileSize(t, file))
	}
	cmd := exec.Command(binary, "--root", s.b.Dir(), "bundle", "load", "-")
	cmd.Stdin = bytes.NewReader(readFile(t, file))
	if r := runCmd(t, cmd); r.code != 0 {
		t.Fatalf("bundle load - : exit %d\n%s", r.code, r.stderr)
	}
	s.pullTargets(t, s.b)
}

// TestBundleSplit splits a bundle into parts smaller than its largest
// layer and loads them in shuffled order, and concatenated on stdin.
func TestBundleSplit(t *testing.T) {
	s := newAirgapSites(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "update.bundle")
	inv := filepath.Join(dir, "b.inventory")
	mustRun(t, "--root", s.b.Dir(), "inventory", "-o", inv)
	args := append([]string{"--root", s.a.Dir(), "bundle", "create", "-o", file, "--have", inv, "--split", "40K"}, s.targetRefs()...)
	r := run(t, append(args, "--strict-size")...)
	if r.code != 1 || !strings.Contains(r.stderr, "larger than a part") {
		t.Errorf("--strict-size with a layer larger than a part: exit %d\n%s", r.code, r.stderr)
	}
	if m, _ := filepath.Glob(file + "*"); len(m) != 0 {
		t.Errorf("a refused create left files: %v", m)
	}
	mustRun(t, args...)
	parts, _ := filepath.Glob(file + ".part*")
	if len(parts) < 3 {
		t.Fatalf("%d parts, want several", len(parts))
	}
	rand.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	var rep struct {
		Bundle  string            `json:"bundle"`
		Images  []json.RawMessage `json:"images"`
		Carried int64             `json:"bytes_carried"`
		Full    int64             `json:"bytes_full"`
		Written int64             `json:"bytes_written"`
	}
	out := mustRun(t, append([]string{"--root", s.b.Dir(), "bundle", "load", "--json"}, parts...)...).stdout
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Images) != 2 || rep.Carried == 0 || rep.Full <= rep.Carried || rep.Written == 0 {
		t.Errorf("load --json: %v\n%s", err, out)
	}
	s.pullTargets(t, s.b)

	// The same parts, concatenated in order, on stdin, into a fresh copy
	// of the far site.
	c := testserver.TempRoot(t)
	copyTree(t, s.b.Dir(), c.Dir())
	ordered, _ := filepath.Glob(file + ".part*")
	var all []byte
	for _, p := range ordered {
		all = append(all, readFile(t, p)...)
	}
	cmd := exec.Command(binary, "--root", c.Dir(), "bundle", "load", "-")
	cmd.Stdin = bytes.NewReader(all)
	if r := runCmd(t, cmd); r.code != 0 {
		t.Fatalf("bundle load - of concatenated parts: exit %d\n%s", r.code, r.stderr)
	}
}

// TestBundleBadInput: every bad input is refused with one line naming the
// cause, exit 1, and the far site's tree unchanged.
func TestBundleBadInput(t *testing.T) {
	s := newAirgapSites(t)
	dir := t.TempDir()
	inv := filepath.Join(dir, "b.inventory")
	mustRun(t, "--root", s.b.Dir(), "inventory", "-o", inv)
	file := filepath.Join(dir, "update.bundle")
	mustRun(t, append([]string{"--root", s.a.Dir(), "bundle", "create", "-o", file, "--have", inv}, s.targetRefs()...)...)
	split := filepath.Join(dir, "split", "update.bundle")
	os.MkdirAll(filepath.Dir(split), 0o755)
	mustRun(t, append([]string{"--root", s.a.Dir(), "bundle", "create", "-o", split, "--have", inv, "--split", "40K"}, s.targetRefs()...)...)
	other := filepath.Join(dir, "other", "update.bundle")
	os.MkdirAll(filepath.Dir(other), 0o755)
	mustRun(t, "--root", s.a.Dir(), "bundle", "create", "-o", other, "--have", inv, "--split", "40K", "site/app:v2")
	parts, _ := filepath.Glob(split + ".part*")
	otherParts, _ := filepath.Glob(other + ".part*")

	raw := readFile(t, file)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	corrupt := bytes.Clone(raw)
	corrupt[len(corrupt)-4096] ^= 0xff // inside the last layer
	// An empty tree: the base the bundle needs is missing.
	empty := t.TempDir()
	for _, tc := range []struct {
		name string
		root string
		args []string
		want string
	}{
		{"truncated bundle", s.b.Dir(), []string{write("truncated", raw[:len(raw)-5000])}, "truncated"},
		{"truncated part", s.b.Dir(), append([]string{write("truncated.part", readFile(t, parts[1])[:2000])}, append([]string{parts[0]}, parts[2:]...)...), "truncated"},
		{"missing part", s.b.Dir(), append([]string{parts[0]}, parts[2:]...), "part 2 missing"},
		{"part of another bundle", s.b.Dir(), append([]string{parts[0], otherParts[1]}, parts[2:]...), "not of bundle"},
		{"foreign tar", s.b.Dir(), []string{filepath.Join("..", "..", "testdata", "hello.docker.tar")}, "not an image-serve bundle"},
		{"member not matching its digest", s.b.Dir(), []string{write("corrupt", corrupt)}, "does not match its digest"},
		{"unknown format version", s.b.Dir(), []string{write("v9", bytes.Replace(raw, []byte(`"version":1`), []byte(`"version":9`), 1))}, "unknown bundle format version 9"},
		{"needed blobs absent", empty, []string{file}, "the tree lacks 2 blobs the bundle needs"},
		{"needed blobs absent on stdin", empty, []string{"-"}, "the tree lacks 2 blobs the bundle needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, tc.root)
			cmd := exec.Command(binary, append([]string{"--root", tc.root, "bundle", "load"}, tc.args...)...)
			cmd.Stdin = bytes.NewReader(raw)
			r := runCmd(t, cmd)
			t.Logf("%s", r.stderr)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
				t.Errorf("exit %d, want 1 and one line saying %q:\n%s", r.code, tc.want, r.stderr)
			}
			if after := snapshot(t, tc.root); after != before {
				t.Errorf("the tree changed:\n%s", testtree.Diff(before, after))
			}
		})
	}
	t.Run("REF not in the tree", func(t *testing.T) {
		r := run(t, "--root", s.a.Dir(), "bundle", "create", "-o", filepath.Join(dir, "x"), "site/nothing:v1")
		if r.code != 1 || !strings.Contains(r.stderr, "site/nothing:v1: no such tag") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
			t.Error("a refused create left its output")
		}
	})
	t.Run("on-existing-tag fail", func(t *testing.T) {
		c := testserver.TempRoot(t)
		copyTree(t, s.b.Dir(), c.Dir())
		mustRun(t, "--root", c.Dir(), "-q", "export", "oci:"+filepath.Join("..", "..", "testdata", "hello-oci")+":latest", "site/app:v2")
		before := snapshot(t, c.Dir())
		r := run(t, "--root", c.Dir(), "bundle", "load", "--on-existing-tag", "fail", file)
		if r.code != 1 || !strings.Contains(r.stderr, "site/app:v2") {
			t.Errorf("exit %d:\n%s", r.code, r.stderr)
		}
		if after := snapshot(t, c.Dir()); after != before {
			t.Errorf("the tree changed:\n%s", testtree.Diff(before, after))
		}
		mustRun(t, "--root", c.Dir(), "bundle", "load", "--on-existing-tag", "skip", file)
		host := strings.TrimPrefix(testserver.Embedded(t, c), "http://")
		if got, err := pullDigest(host + "/site/multi:v2"); err != nil || got.String() != s.targets["site/multi:v2"] {
			t.Errorf("skip: site/multi:v2 is %v %v", got, err)
		}
		if got, err := pullDigest(host + "/site/app:v2"); err != nil || got.String() == s.targets["site/app:v2"] {
			t.Errorf("skip: site/app:v2 moved (%v %v)", got, err)
		}
	})
}

// TestBundleDiskFull: a bundle whose new blobs do not fit the far tree's
// file system (a 256 KiB tmpfs) is refused before any write, naming the
// bytes it needs and those free, and the tree is unchanged.
func TestBundleDiskFull(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 8<<10, types.OCILayer)
	reg.PushImage(t, "src/base:v1", testregistry.OCIImage(t, "amd64", base))
	reg.PushImage(t, "src/big:v1", testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 1<<20, types.OCILayer)))
	a := testserver.TempRoot(t)
	far := tmpfsRoot(t)
	for _, x := range []struct{ root, src, dest string }{
		{a.Dir(), "src/base:v1", "base/os:v1"}, {a.Dir(), "src/big:v1", "site/big:v1"}, {far, "src/base:v1", "base/os:v1"},
	} {
		mustRun(t, "--root", x.root, "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref(x.src), x.dest)
	}
	file := filepath.Join(t.TempDir(), "update.bundle")
	mustRun(t, "--root", a.Dir(), "-q", "bundle", "create", "-o", file, "--base", "base/os:v1", "site/big:v1")
	before := snapshot(t, far)
	r := run(t, "--root", far, "bundle", "load", file)
	if r.code != 1 || !strings.Contains(r.stderr, "bytes free (nothing was written)") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("exit %d, want 1 and one line naming the free space:\n%s", r.code, r.stderr)
	}
	if after := snapshot(t, far); after != before {
		t.Errorf("the tree changed:\n%s", testtree.Diff(before, after))
	}
}

// TestBundleLoadIntoEmptyRoot: a whole bundle (no --have) into a root
// with no tree yet. Damaged, it is refused with one line and the root
// stays empty — the load reads it through once before making the tree
// its staging needs; sound, it loads and its tag pulls.
func TestBundleLoadIntoEmptyRoot(t *testing.T) {
	s := newAirgapSites(t)
	file := filepath.Join(t.TempDir(), "whole.bundle")
	mustRun(t, "--root", s.a.Dir(), "-q", "bundle", "create", "-o", file, "site/app:v2")
	raw := readFile(t, file)
	corrupt := bytes.Clone(raw)
	corrupt[len(corrupt)-4096] ^= 0xff // inside the last layer
	bad := filepath.Join(t.TempDir(), "corrupt.bundle")
	if err := os.WriteFile(bad, corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	before := snapshot(t, empty)
	r := run(t, "--root", empty, "bundle", "load", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "does not match its digest") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
		t.Errorf("exit %d, want 1 and one line saying the member does not match:\n%s", r.code, r.stderr)
	}
	if after := snapshot(t, empty); after != before {
		t.Errorf("the root changed:\n%s", testtree.Diff(before, after))
	}
	mustRun(t, "--root", empty, "-q", "bundle", "load", file)
	c, err := tree.Open(empty)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(testserver.Embedded(t, c), "http://")
	if got, err := pullDigest(host + "/site/app:v2"); err != nil || got.String() != s.targets["site/app:v2"] {
		t.Errorf("site/app:v2 is %v %v, want %s", got, err, s.targets["site/app:v2"])
	}
}
