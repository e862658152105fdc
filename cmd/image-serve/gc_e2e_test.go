package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testtree"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// gcServers serves root with every server the tree is for.
func gcServers(t *testing.T, root *tree.Root) map[string]string {
	t.Helper()
	return map[string]string{
		"apache":   testserver.Apache(t, root),
		"embedded": testserver.Embedded(t, root),
		"nginx":    testserver.Nginx(t, root),
	}
}

// blobSizes maps each blob of img (config and layers) to its size.
func blobSizes(t *testing.T, img v1.Image) map[digest.Digest]int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[digest.Digest]int64{digest.Digest(m.Config.Digest.String()): m.Config.Size}
	for _, l := range m.Layers {
		out[digest.Digest(l.Digest.String())] = l.Size
	}
	return out
}

// exportTag exports reg's src as dest into root with the binary.
func exportTag(t *testing.T, root *tree.Root, reg *testregistry.Registry, src, dest string) {
	t.Helper()
	mustRun(t, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref(src), dest)
}

// pullTag copies repo:tag with skopeo, every platform, every blob checked
// against its digest, and checks the manifest it got.
func pullTag(t *testing.T, host, repo, tag, wantDigest string) {
	t.Helper()
	dir := t.TempDir()
	ref := "docker://" + host + "/" + repo + ":" + tag
	skopeo(t, "copy", "--all", "--insecure-policy", "--src-tls-verify=false", ref, "dir:"+dir)
	if got := sha256Digest(readFile(t, filepath.Join(dir, "manifest.json"))); got != wantDigest {
		t.Errorf("skopeo copy --all %s: manifest %s, want %s", ref, got, wantDigest)
	}
}

// status GETs base+path and returns the status code.
func status(t *testing.T, base, path string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Accept", allManifests)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestDeleteEachTag deletes, one at a time, every tag of a repository
// with single-arch tags and two multi-arch tags sharing their arm64 child
// (the tree TripleO's delete broke, serving-notes §3.2). After every step
// skopeo pulls every remaining tag, every platform, through Apache, the
// embedded server and nginx; the deleted tag answers 404, and what only
// it needed is gone from the disk.
func TestDeleteEachTag(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 64<<10, types.OCILayer)
	amd := testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 16<<10, types.OCILayer))
	arm := testregistry.OCIImage(t, "arm64", testregistry.Layer(t, 16<<10, types.OCILayer))
	amd2 := testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 16<<10, types.OCILayer))
	single := testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 16<<10, types.OCILayer))
	pushed := map[string]testregistry.Pushed{
		"multi":  reg.PushIndex(t, "src/app:multi", types.OCIImageIndex, map[string]v1.Image{"amd64": amd, "arm64": arm}),
		"multi2": reg.PushIndex(t, "src/app:multi2", types.OCIImageIndex, map[string]v1.Image{"amd64": amd2, "arm64": arm}),
		"amd":    reg.PushImage(t, "src/app:amd", amd),
		"single": reg.PushImage(t, "src/app:single", single),
	}
	root := testserver.TempRoot(t)
	for tag := range pushed {
		exportTag(t, root, reg, "src/app:"+tag, "app:"+tag)
	}
	servers := gcServers(t, root)
	fx := tree.Fixture(root)
	manifestDir := func(img v1.Image) string {
		d, _ := img.Digest()
		return fx.ManifestDir("app", digest.Digest(d.String()))
	}
	uniqueLayer := func(img v1.Image) string {
		m, _ := img.Manifest()
		return fx.BlobPath("app", digest.Digest(m.Layers[len(m.Layers)-1].Digest.String()))
	}
	steps := []struct {
		tag        string
		gone, kept []string // paths
	}{
		{"multi2", []string{fx.ManifestDir("app", digest.Digest(pushed["multi2"].Digest)), manifestDir(amd2), uniqueLayer(amd2)},
			[]string{manifestDir(arm), uniqueLayer(arm)}},
		{"amd", nil, []string{manifestDir(amd), uniqueLayer(amd)}},
		{"single", []string{manifestDir(single), uniqueLayer(single)}, []string{uniqueLayer(amd)}},
		{"multi", []string{fx.RepoDir("app")}, nil},
	}
	remaining := []string{"amd", "multi", "multi2", "single"}
	check := func(deleted string) {
		t.Helper()
		for srv, base := range servers {
			host := strings.TrimPrefix(base, "http://")
			for _, tag := range remaining {
				t.Run(fmt.Sprintf("%s/after-%s/%s", srv, deleted, tag), func(t *testing.T) {
					pullTag(t, host, "app", tag, pushed[tag].Digest)
				})
			}
			if deleted != "" {
				if code := status(t, base, "/v2/app/manifests/"+deleted); code != http.StatusNotFound {
					t.Errorf("%s: GET the deleted tag %s: %d, want 404", srv, deleted, code)
				}
			}
		}
	}
	check("")
	for _, step := range steps {
		mustRun(t, "--root", root.Dir(), "delete", "app:"+step.tag)
		remaining = slices.DeleteFunc(remaining, func(s string) bool { return s == step.tag })
		for _, p := range step.gone {
			if exists(p) {
				t.Errorf("after deleting app:%s, %s is still there", step.tag, p)
			}
		}
		for _, p := range step.kept {
			if !exists(p) {
				t.Errorf("after deleting app:%s, %s is gone but a remaining tag needs it", step.tag, p)
			}
		}
		check(step.tag)
	}
	var repos []string
	err := root.Inspect(func(v *tree.View) (err error) { repos, err = v.ReadCatalog(); return err })
	if err != nil || len(repos) != 0 {
		t.Errorf("_catalog after deleting every tag: %v %v, want empty", repos, err)
	}
	for srv, base := range servers {
		if code := status(t, base, "/v2/app/tags/list"); code != http.StatusNotFound {
			t.Errorf("%s: tags/list of the deleted repository: %d, want 404", srv, code)
		}
	}
	if r := mustRun(t, "--root", root.Dir(), "verify"); !strings.Contains(r.stdout, "no problems") {
		t.Errorf("verify: %s", r.stdout)
	}
}

// threeRepos exports three images sharing a base layer into a, b and c
// and returns, per repository, the bytes of its blobs no other image has.
func threeRepos(t *testing.T, root *tree.Root) (unique map[string]int64) {
	t.Helper()
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 1<<20, types.OCILayer)
	imgs := map[string]v1.Image{}
	count := map[digest.Digest]int{}
	for i, repo := range []string{"a", "b", "c"} {
		img := testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, int64(200+100*i)<<10, types.OCILayer))
		reg.PushImage(t, "src/"+repo+":v1", img)
		exportTag(t, root, reg, "src/"+repo+":v1", repo+":v1")
		imgs[repo] = img
		for d := range blobSizes(t, img) {
			count[d]++
		}
	}
	unique = map[string]int64{}
	for repo, img := range imgs {
		for d, size := range blobSizes(t, img) {
			if count[d] == 1 {
				unique[repo] += size
			}
		}
	}
	return unique
}

// tmpfsTree mounts a tmpfs of its own for a tree, so that its free space
// moves only with what the test does, and unmounts it at the end.
func tmpfsTree(t *testing.T) *tree.Root {
	t.Helper()
	dir, err := os.MkdirTemp("", "image-serve-gc-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (the test runs as root, as make test does): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
		os.Remove(dir)
	})
	root, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Init(); err != nil {
		t.Fatal(err)
	}
	return root
}

// freeBytes is what statfs says is free on the file system of dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bfree) * st.Bsize
}

// blobInodeBytes sums the sizes of the distinct inodes under the blobs
// directories of the tree: du over inodes, not over names.
func blobInodeBytes(t *testing.T, root *tree.Root) int64 {
	t.Helper()
	seen := map[uint64]bool{}
	var sum int64
	err := filepath.WalkDir(tree.Fixture(root).V2Dir(), func(path string, e fs.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() || filepath.Base(filepath.Dir(path)) != "blobs" {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if ino := fi.Sys().(*syscall.Stat_t).Ino; !seen[ino] {
			seen[ino] = true
			sum += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// TestDeleteFreesUniqueBytes: three repositories share a base layer
// (hard links); deleting one image frees exactly the bytes of its own
// blobs, by statfs and by inode, and the others still pull.
func TestDeleteFreesUniqueBytes(t *testing.T) {
	root := tmpfsTree(t)
	unique := threeRepos(t, root)
	freeBefore, inodesBefore := freeBytes(t, root.Dir()), blobInodeBytes(t, root)

	r := mustRun(t, "--root", root.Dir(), "delete", "--json", "a:v1")
	var rep gc.DeleteReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Prune == nil {
		t.Fatalf("delete --json: %v\n%s", err, r.stdout)
	}
	if rep.Prune.BytesFreed != unique["a"] {
		t.Errorf("delete reports %d bytes freed, want a's unique %d", rep.Prune.BytesFreed, unique["a"])
	}
	if got := inodesBefore - blobInodeBytes(t, root); got != unique["a"] {
		t.Errorf("blob inodes shrank by %d bytes, want %d", got, unique["a"])
	}
	// tmpfs frees whole pages, and the manifest, headers, type map and
	// tags/list of a went too: a few pages more, never less.
	freed := freeBytes(t, root.Dir()) - freeBefore
	if freed < unique["a"] || freed > unique["a"]+64<<10 {
		t.Errorf("statfs: %d bytes freed, want a's unique %d (+ < 64 KiB of small files)", freed, unique["a"])
	}
	if exists(tree.Fixture(root).RepoDir("a")) {
		t.Error("repository a is still in the tree")
	}
	for srv, base := range map[string]string{"apache": testserver.Apache(t, root), "embedded": testserver.Embedded(t, root)} {
		for _, repo := range []string{"b", "c"} {
			t.Run(srv+"/"+repo, func(t *testing.T) {
				vs, err := tree.Fixture(root).TagVariants(repo, "v1")
				if err != nil {
					t.Fatal(err)
				}
				pullTag(t, strings.TrimPrefix(base, "http://"), repo, "v1", vs[0].Digest.String())
			})
		}
	}
}

// TestGCDryRunThenGC: a dry run reports what the collection then does,
// changing nothing; a second collection frees nothing.
func TestGCDryRunThenGC(t *testing.T) {
	root := testserver.TempRoot(t)
	unique := threeRepos(t, root)
	mustRun(t, "--root", root.Dir(), "delete", "--no-prune", "b:v1")
	before := snapshot(t, root.Dir())
	gcJSON := func(args ...string) gc.Report {
		t.Helper()
		r := mustRun(t, append([]string{"--root", root.Dir(), "gc", "--json", "--grace", "0"}, args...)...)
		var rep gc.Report
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("gc --json: %v\n%s", err, r.stdout)
		}
		return rep
	}
	dry := gcJSON("--dry-run")
	if after := snapshot(t, root.Dir()); after != before {
		t.Fatalf("gc --dry-run changed the tree:\n%s", testtree.Diff(before, after))
	}
	real := gcJSON()
	if !dry.DryRun || real.DryRun {
		t.Errorf("dry_run flags: %v %v", dry.DryRun, real.DryRun)
	}
	dry.DryRun = false
	if fmt.Sprint(dry) != fmt.Sprint(real) {
		t.Errorf("gc --dry-run reported %+v, gc did %+v", dry, real)
	}
	if real.BytesFreed != unique["b"] || real.RepositoriesRemoved != 1 {
		t.Errorf("gc: %+v; want b's unique %d bytes freed and b removed", real, unique["b"])
	}
	if again := gcJSON(); again.BytesFreed != 0 || again.ManifestsDeleted != 0 || again.BlobsDeleted != 0 {
		t.Errorf("second gc: %+v, want nothing freed", again)
	}
	// The text report, as cron would mail it without --quiet.
	r := mustRun(t, "--root", root.Dir(), "gc")
	for _, line := range []string{"repositories scanned: 2", "manifests kept: 2", "manifests deleted: 0", "blobs deleted: 0", "bytes freed: 0 B"} {
		if !strings.Contains(r.stdout, line+"\n") {
			t.Errorf("gc output lacks %q:\n%s", line, r.stdout)
		}
	}
	if r := mustRun(t, "--root", root.Dir(), "gc", "--quiet"); r.stdout+r.stderr != "" {
		t.Errorf("gc --quiet printed %q %q", r.stdout, r.stderr)
	}
}

// TestGCOverlap: a gc started while another holds gc.lock does nothing and
// exits 0, saying so unless --quiet.
func TestGCOverlap(t *testing.T) {
	root := testserver.TempRoot(t)
	l, err := tree.Fixture(root).TryLockGC()
	if err != nil || l == nil {
		t.Fatalf("TryLockGC: %v %v", l, err)
	}
	defer l.Unlock()
	r := mustRun(t, "--root", root.Dir(), "gc")
	if !strings.Contains(r.stderr, "another gc is running") || r.stdout != "" {
		t.Errorf("gc while another runs: stdout %q stderr %q", r.stdout, r.stderr)
	}
	if r := mustRun(t, "--root", root.Dir(), "gc", "--quiet"); r.stdout+r.stderr != "" {
		t.Errorf("gc --quiet while another runs printed %q %q", r.stdout, r.stderr)
	}
	// Guards: gc --json printed nothing at all, and a JSON reader could
	// not tell a skipped run from a crash.
	r = mustRun(t, "--root", root.Dir(), "gc", "--json")
	var rec struct {
		Skipped bool   `json:"skipped"`
		Reason  string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || !rec.Skipped || !strings.Contains(rec.Reason, "another gc is running") {
		t.Errorf("gc --json while another runs: %q (%v), want a skipped record naming the other gc", r.stdout, err)
	}
}

// TestGCLockTimeout: a gc that gives up waiting for the tree lock
// collected nothing and must not look as if it had. Guards: it printed an
// all-zero report on stdout (with --quiet too) before its error, and cron
// mailed what looked like a clean, empty run.
func TestGCLockTimeout(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	l, err := tree.Fixture(root).LockExclusive()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	for _, args := range [][]string{{"gc"}, {"gc", "--quiet"}, {"gc", "--dry-run"}} {
		r := run(t, append([]string{"--root", root.Dir(), "--lock-timeout", "100ms"}, args...)...)
		if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "image-serve: gc: ") != 1 || !strings.Contains(r.stderr, "(--lock-timeout)\n") {
			t.Errorf("image-serve %s: exit %d, stdout %q, stderr %q; want 1, no report, one error naming --lock-timeout",
				strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	r := run(t, "--root", root.Dir(), "--lock-timeout", "100ms", "gc", "--json")
	var rec map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec["skipped"] != true ||
		!strings.Contains(fmt.Sprint(rec["reason"]), "--lock-timeout") || len(rec) != 2 {
		t.Errorf("gc --json on a lock timeout: exit %d, stdout %q (%v); want only a skipped record with the reason", r.code, r.stdout, err)
	}
	if r.code != 1 {
		t.Errorf("gc --json on a lock timeout: exit %d, want 1", r.code)
	}
}

// TestGCUsage: command lines gc, delete and verify cannot run exit 2.
func TestGCUsage(t *testing.T) {
	root := testserver.TempRoot(t)
	for _, args := range [][]string{
		{"gc", "--untagged", "maybe"},
		{"gc", "--grace", "-1s"},
		{"gc", "extra"},
		{"delete"},
		{"delete", "ns/app"},
		{"delete", "ns/app@sha256:short"},
		{"verify", "NS/App"},
	} {
		r := run(t, append([]string{"--root", root.Dir()}, args...)...)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("image-serve %s: exit %d, stderr %q; want 2 and one line", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	r := run(t, "--root", root.Dir(), "delete", "ns/app:nope")
	if r.code != 1 || !strings.Contains(r.stderr, "delete ns/app:nope: tag unknown") {
		t.Errorf("delete of an unknown tag: exit %d, %q", r.code, r.stderr)
	}
	r = run(t, "--root", filepath.Join(root.Dir(), "nothing"), "gc")
	if r.code != 1 || !strings.Contains(r.stderr, "no registry tree here") {
		t.Errorf("gc of a directory without a tree: exit %d, %q", r.code, r.stderr)
	}
}

// TestVerifyDetects damages an exported tree four ways; verify names each
// damage with its path and exits 1.
func TestVerifyDetects(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, root *tree.Root) (path string)
		want   string
	}{
		{"flipped byte in a blob", func(t *testing.T, root *tree.Root) string {
			p := tree.Fixture(root).BlobPath("demo/hello", someLayer(t, root))
			b := readFile(t, p)
			b[len(b)/2] ^= 0x80
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(b, 0); err != nil {
				t.Fatal(err)
			}
			return p
		}, "not the blob its name says"},
		{"missing blob", func(t *testing.T, root *tree.Root) string {
			p := tree.Fixture(root).BlobPath("demo/hello", someLayer(t, root))
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return p
		}, "missing: manifest sha256:"},
		{"tag pointing at a missing manifest", func(t *testing.T, root *tree.Root) string {
			fx := tree.Fixture(root)
			vs, err := fx.TagVariants("demo/hello", "latest")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.RemoveAll(fx.ManifestDir("demo/hello", vs[0].Digest)); err != nil {
				t.Fatal(err)
			}
			return fx.TypeMapPath("demo/hello", "latest")
		}, "names manifest sha256:"},
		{"catalog entry without a repository", func(t *testing.T, root *tree.Root) string {
			p := tree.Fixture(root).CatalogPath()
			if err := os.WriteFile(p, []byte(`{"repositories":["demo/ghost","demo/hello"]}`), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, "lists demo/ghost, which is not a repository with tags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testserver.TempRoot(t)
			mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello:latest")
			mustRun(t, "--root", root.Dir(), "verify")
			path := tt.damage(t, root)
			r := run(t, "--root", root.Dir(), "verify")
			named := slices.ContainsFunc(strings.Split(r.stdout, "\n"), func(line string) bool {
				return strings.HasPrefix(line, path+": ") && strings.Contains(line, tt.want)
			})
			if r.code != 1 || !named {
				t.Errorf("verify: exit %d\nstdout:\n%s\nstderr: %s\nwant exit 1 and %q", r.code, r.stdout, r.stderr, path+": …"+tt.want)
			}
			r = run(t, "--root", root.Dir(), "verify", "--json")
			var rep gc.VerifyReport
			if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || r.code != 1 ||
				!slices.ContainsFunc(rep.Problems, func(p gc.Problem) bool { return p.Path == path }) {
				t.Errorf("verify --json: exit %d, %v, %s", r.code, err, r.stdout)
			}
		})
	}
}

// someLayer is a layer of demo/hello's amd64 image.
func someLayer(t *testing.T, root *tree.Root) digest.Digest {
	t.Helper()
	fx := tree.Fixture(root)
	bs, err := fx.Blobs("demo/hello")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := fx.TagVariants("demo/hello", "latest")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct{ Digest digest.Digest }
	}
	if err := json.Unmarshal(readFile(t, fx.ManifestPath("demo/hello", vs[len(vs)-1].Digest)), &m); err != nil || len(m.Layers) == 0 {
		t.Fatalf("amd64 manifest of demo/hello: %v", err)
	}
	for _, b := range bs {
		if b.Digest == m.Layers[0].Digest {
			return b.Digest
		}
	}
	t.Fatal("demo/hello has no layer blob")
	return ""
}

// concurrencyImages pushes n images sharing base layers, every third a
// two-platform index, and returns their source references.
func concurrencyImages(t *testing.T, reg *testregistry.Registry, n int) []string {
	t.Helper()
	base := testregistry.Layer(t, 32<<10, types.OCILayer)
	var refs []string
	for i := range n {
		ref := fmt.Sprintf("src/img:v%d", i)
		amd := testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 8<<10, types.OCILayer))
		if i%3 == 0 {
			arm := testregistry.OCIImage(t, "arm64", base, testregistry.Layer(t, 8<<10, types.OCILayer))
			reg.PushIndex(t, ref, types.OCIImageIndex, map[string]v1.Image{"amd64": amd, "arm64": arm})
		} else {
			reg.PushImage(t, ref, amd)
		}
		refs = append(refs, ref)
	}
	return refs
}

// pullAll pulls every tag of every repository in the tree through base
// with go-containerregistry, validating every blob.
func pullAll(t *testing.T, root *tree.Root, base string) int {
	t.Helper()
	repos, err := tree.Fixture(root).Repositories()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, repo := range repos {
		tags, err := tree.Fixture(root).Tags(repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range tags {
			ref, err := name.ParseReference(strings.TrimPrefix(base, "http://")+"/"+repo+":"+tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if err := pullRef(ref); err != nil {
				t.Errorf("pull %s: %v", ref, err)
			}
			n++
		}
	}
	return n
}

func pullRef(ref name.Reference) error {
	desc, err := remote.Get(ref)
	if err != nil {
		return err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		return validate.Index(idx)
	}
	img, err := desc.Image()
	if err != nil {
		return err
	}
	return validate.Image(img)
}

// TestGCConcurrent runs exports, deletes and collections at the same time,
// in loops of separate processes, with collections as eager as they get
// (--grace 0): no export may fail, every tag left must pull, and verify
// must find the tree clean.
func TestGCConcurrent(t *testing.T) {
	reg := testregistry.Start(t)
	refs := concurrencyImages(t, reg, 6)
	reg.Intercept = slowBlobs(15 * time.Millisecond) // exports overlap the rest
	root := testserver.TempRoot(t)
	const rounds = 8

	var (
		mu       sync.Mutex
		exported []string // tags ready to delete
		failures []string
		wg       sync.WaitGroup
		gcs      int
		deletes  int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	exportsDone := make(chan struct{})
	var exporters sync.WaitGroup
	for lane := range 2 {
		exporters.Add(1)
		go func() {
			defer exporters.Done()
			for i := range rounds {
				dest := fmt.Sprintf("ns/app%d:r%d", i%2, 2*i+lane)
				r := runCmd(t, exec.Command(binary, "--root", root.Dir(), "-q", "export", "--jobs", "2", "--src-tls-verify=false", "docker://"+reg.Ref(refs[(2*i+lane)%len(refs)]), dest))
				if r.code != 0 {
					fail("export %s: exit %d: %s", dest, r.code, r.stderr)
					continue
				}
				mu.Lock()
				exported = append(exported, dest)
				mu.Unlock()
			}
		}()
	}
	go func() { exporters.Wait(); close(exportsDone) }()
	wg.Add(2)
	go func() { // deletes, oldest tag first, leaving the newest ones
		defer wg.Done()
		for deleted := 0; deleted < rounds; {
			mu.Lock()
			var tag string
			if len(exported) > 2 {
				tag, exported = exported[0], exported[1:]
			}
			mu.Unlock()
			if tag == "" {
				select {
				case <-exportsDone:
					return
				case <-time.After(20 * time.Millisecond):
					continue
				}
			}
			if r := runCmd(t, exec.Command(binary, "--root", root.Dir(), "-q", "delete", tag)); r.code != 0 {
				fail("delete %s: exit %d: %s", tag, r.code, r.stderr)
			}
			deleted++
			deletes = deleted
		}
	}()
	go func() { // collections, back to back, until the exports are done
		defer wg.Done()
		for i := 0; i < 3*rounds; i++ {
			if r := runCmd(t, exec.Command(binary, "--root", root.Dir(), "gc", "--quiet", "--grace", "0")); r.code != 0 {
				fail("gc: exit %d: %s", r.code, r.stderr)
			}
			gcs++
			select {
			case <-exportsDone:
				return
			default:
			}
		}
	}()
	wg.Wait()
	<-exportsDone
	t.Logf("%d exports, %d deletes and %d collections ran at once", 2*rounds, deletes, gcs)
	for _, f := range failures {
		t.Error(f)
	}
	mustRun(t, "--root", root.Dir(), "gc", "--quiet", "--grace", "0")
	if r := run(t, "--root", root.Dir(), "verify"); r.code != 0 {
		t.Fatalf("verify after concurrent exports, deletes and gc: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, base := range []string{testserver.Apache(t, root), testserver.Embedded(t, root)} {
		if n := pullAll(t, root, base); n < 2 {
			t.Errorf("%s: only %d tags left to pull: the test proved little", base, n)
		}
	}
}
