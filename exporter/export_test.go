package exporter

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

func newRoot(t *testing.T) *tree.Root {
	t.Helper()
	r, err := tree.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func plainHTTP() Options {
	return Options{Registry: RegistryOptions{Insecure: true}}
}

// checkManifest asserts manifest d is stored with exactly raw and headers.
func checkManifest(t *testing.T, root *tree.Root, repo string, d digest.Digest, mt string, raw []byte) {
	t.Helper()
	got, err := os.ReadFile(tree.Fixture(root).ManifestPath(repo, d))
	if err != nil {
		t.Fatalf("manifest %s: %v", d, err)
	}
	if string(got) != string(raw) {
		t.Errorf("manifest %s: stored bytes differ from the source's", d)
	}
	gotMT, err := tree.Fixture(root).ManifestMediaType(repo, d)
	if err != nil || gotMT != mt {
		t.Errorf("manifest %s: media type %q (%v), want %q", d, gotMT, err, mt)
	}
}

// checkBlobs asserts every blob file of repo hashes to its name.
func checkBlobs(t *testing.T, root *tree.Root, repo string) int {
	t.Helper()
	dir := filepath.Dir(tree.Fixture(root).BlobPath(repo, digest.FromString("")))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary file left in %s: %s", dir, e.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if "sha256:"+hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s does not match its name", e.Name())
		}
	}
	return len(entries)
}

func TestExportFromRegistry(t *testing.T) {
	reg := testregistry.Start(t)
	amd := testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 1024, types.OCILayer))
	arm := testregistry.OCIImage(t, "arm64", testregistry.Layer(t, 1024, types.OCILayer))
	s1raw, s1layer := testregistry.Schema1(t, "ns/s1", "v1")
	artRaw, artBlobs := testregistry.Artifact(t)
	pushed := map[string]testregistry.Pushed{
		"docker":   reg.PushImage(t, "ns/docker:v1", testregistry.DockerImage(t, testregistry.Layer(t, 2048, types.DockerLayer))),
		"oci":      reg.PushImage(t, "ns/oci:v1", amd),
		"list":     reg.PushIndex(t, "ns/list:v1", types.DockerManifestList, map[string]v1.Image{"amd64": testregistry.DockerImageFor(t, "amd64", testregistry.Layer(t, 100, types.DockerLayer)), "arm64": testregistry.DockerImageFor(t, "arm64", testregistry.Layer(t, 100, types.DockerLayer))}),
		"index":    reg.PushIndex(t, "ns/index:v1", types.OCIImageIndex, map[string]v1.Image{"amd64": amd, "arm64": arm}),
		"schema1":  reg.PushRaw(t, "ns/s1:v1", distribution.MediaTypeDockerSchema1, s1raw, s1layer),
		"artifact": reg.PushRaw(t, "ns/artifact:v1", distribution.MediaTypeOCIManifest, artRaw, artBlobs...),
	}
	root := newRoot(t)
	for kind, p := range pushed {
		t.Run(kind, func(t *testing.T) {
			repo := strings.TrimPrefix(strings.Split(p.Ref, ":v1")[0], reg.Host+"/")
			sum, err := Export(context.Background(), root, "docker://"+p.Ref, "", plainHTTP())
			if err != nil {
				t.Fatalf("export: %v", err)
			}
			if sum.Digest.String() != p.Digest || sum.Dest != repo+":v1" {
				t.Errorf("summary %+v, want digest %s dest %s:v1", sum, p.Digest, repo)
			}
			checkManifest(t, root, repo, digest.Digest(p.Digest), p.MediaType, p.Raw)
			fx := tree.Fixture(root)
			vs, err := fx.TagVariants(repo, "v1")
			if err != nil {
				t.Fatal(err)
			}
			if vs[0].Digest.String() != p.Digest {
				t.Errorf("tag names %s first, want %s", vs[0].Digest, p.Digest)
			}
			if len(p.Children) > 0 {
				if len(vs) != 2 || vs[1].Digest.String() != p.Children["linux/amd64"] || vs[0].QS != 1 || vs[1].QS >= 1 {
					t.Errorf("multi-arch tag variants %+v: want the index at qs 1 and the amd64 child %s at a low qs", vs, p.Children["linux/amd64"])
				}
				for plat, c := range p.Children {
					if _, err := os.Stat(fx.ManifestPath(repo, digest.Digest(c))); err != nil {
						t.Errorf("child %s (%s) not exported: %v", plat, c, err)
					}
				}
			}
			if n := checkBlobs(t, root, repo); n == 0 {
				t.Error("no blobs exported")
			}
			tags, _ := fx.Tags(repo)
			if len(tags) != 1 || tags[0] != "v1" {
				t.Errorf("tags %v", tags)
			}
		})
	}
	var repos []string
	err := root.Inspect(func(v *tree.View) (err error) { repos, err = v.Repositories(); return err })
	if err != nil || len(repos) != len(pushed) {
		t.Errorf("catalog %v (%v), want %d repositories", repos, err, len(pushed))
	}
}

func TestExportLocalSources(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "hello.oci.tar")
	testtree.Tar(t, "../testdata/hello-oci", archive)
	tests := []struct {
		src, dest string
		platforms []string
		wantDest  string
		wantType  string
		variants  int
	}{
		{src: "oci:../testdata/hello-oci:latest", wantDest: "hello-oci:latest", wantType: distribution.MediaTypeOCIIndex, variants: 2},
		{src: "oci:../testdata/hello-oci", dest: "demo/hello", wantDest: "demo/hello:latest", wantType: distribution.MediaTypeOCIIndex, variants: 2},
		{src: "oci-archive:" + archive, dest: "demo/archived:v1", wantDest: "demo/archived:v1", wantType: distribution.MediaTypeOCIIndex, variants: 2},
		{src: "docker-archive:../testdata/hello.docker.tar", wantDest: "hello:latest", wantType: distribution.MediaTypeDockerManifest, variants: 1},
		// One platform: the tag names that child itself.
		{src: "oci:../testdata/hello-oci:latest", dest: "demo/arm:v1", platforms: []string{"linux/arm64"}, wantDest: "demo/arm:v1", wantType: distribution.MediaTypeOCIManifest, variants: 1},
		// Several: a new index of just those children.
		{src: "oci:../testdata/hello-oci:latest", dest: "demo/both:v1", platforms: []string{"linux/arm64", "linux/amd64"}, wantDest: "demo/both:v1", wantType: distribution.MediaTypeOCIIndex, variants: 2},
	}
	root := newRoot(t)
	for _, tt := range tests {
		t.Run(tt.wantDest, func(t *testing.T) {
			sum, err := Export(context.Background(), root, tt.src, tt.dest, Options{Platforms: tt.platforms})
			if err != nil {
				t.Fatalf("export %s: %v", tt.src, err)
			}
			if sum.Dest != tt.wantDest || sum.MediaType != tt.wantType {
				t.Errorf("exported %s as %s (%s), want %s (%s)", tt.src, sum.Dest, sum.MediaType, tt.wantDest, tt.wantType)
			}
			repo, tag, _ := strings.Cut(sum.Dest, ":")
			vs, err := tree.Fixture(root).TagVariants(repo, tag)
			if err != nil || len(vs) != tt.variants || vs[0].Digest != sum.Digest {
				t.Errorf("tag %s: variants %+v (%v), want %d starting with %s", sum.Dest, vs, err, tt.variants, sum.Digest)
			}
			checkBlobs(t, root, repo)
		})
	}
}

func TestExportUnknownPlatform(t *testing.T) {
	root := newRoot(t)
	_, err := Export(context.Background(), root, "oci:../testdata/hello-oci:latest", "x/y:z", Options{Platforms: []string{"linux/s390x"}})
	if err == nil || !strings.Contains(err.Error(), "linux/s390x") || !strings.Contains(err.Error(), "linux/amd64") {
		t.Fatalf("export with an absent platform: %v, want an error naming it and the platforms there are", err)
	}
	if _, err := os.Stat(tree.Fixture(root).V2Dir()); err == nil {
		t.Error("a failed export created the tree")
	}
}

// TestExportDeduplicates re-exports an unchanged image (no blob bytes may
// move) and exports it into a second repository (hard links, same inode).
func TestExportDeduplicates(t *testing.T) {
	reg := testregistry.Start(t)
	layer := testregistry.Layer(t, 64<<10, types.DockerLayer)
	p := reg.PushImage(t, "ns/app:v1", testregistry.DockerImage(t, layer))
	ld, _ := layer.Digest()
	root := newRoot(t)
	first, err := Export(context.Background(), root, "docker://"+p.Ref, "", plainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	again, err := Export(context.Background(), root, "docker://"+p.Ref, "", plainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	if again.BytesFetched != 0 || again.BlobsReused != first.BlobsFetched || again.BytesReused != first.BytesFetched {
		t.Errorf("re-export fetched %d bytes and reused %d in %d blobs; want 0 fetched, %d reused in %d",
			again.BytesFetched, again.BytesReused, again.BlobsReused, first.BytesFetched, first.BlobsFetched)
	}
	other, err := Export(context.Background(), root, "docker://"+p.Ref, "other/app:v1", plainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	if other.BytesFetched != 0 || reg.BlobGets(ld.String()) != 1 {
		t.Errorf("export to a second repository fetched %d bytes (layer GETs: %d), want 0 (1)", other.BytesFetched, reg.BlobGets(ld.String()))
	}
	a, errA := os.Stat(tree.Fixture(root).BlobPath("ns/app", digest.Digest(ld.String())))
	b, errB := os.Stat(tree.Fixture(root).BlobPath("other/app", digest.Digest(ld.String())))
	if errA != nil || errB != nil || !os.SameFile(a, b) {
		t.Errorf("the layer in two repositories is not one inode (%v, %v)", errA, errB)
	}
}

// TestExportModesIgnoreUmask guards TripleO's bug: under sudo's umask 077
// the exporter wrote 0600 files and Apache, reading as its own user,
// answered 403.
func TestExportModesIgnoreUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	root := newRoot(t)
	if _, err := Export(context.Background(), root, "oci:../testdata/hello-oci:latest", "", Options{}); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(tree.Fixture(root).V2Dir(), func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			return nil // nginx's tag links: Linux ignores a symlink's mode
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		if fi.IsDir() {
			want = 0o755
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExportForeignLayer: a non-distributable layer is not fetched (the
// registry does not have it), and the manifest is still served.
func TestExportForeignLayer(t *testing.T) {
	reg := testregistry.Start(t)
	cfg := static.NewLayer([]byte(`{"architecture":"amd64","os":"windows"}`), types.DockerConfigJSON)
	cd, _ := cfg.Digest()
	cs, _ := cfg.Size()
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:%064x","size":1000,"urls":["https://example.invalid/layer"]}]}`,
		distribution.MediaTypeDockerManifest, types.DockerConfigJSON, cd, cs, 1)
	p := reg.PushRaw(t, "win/base:v1", distribution.MediaTypeDockerManifest, raw, cfg)
	root := newRoot(t)
	sum, err := Export(context.Background(), root, "docker://"+p.Ref, "", plainHTTP())
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if sum.BlobsFetched != 1 {
		t.Errorf("fetched %d blobs, want only the config", sum.BlobsFetched)
	}
	checkManifest(t, root, "win/base", digest.Digest(p.Digest), distribution.MediaTypeDockerManifest, raw)
}

// TestExportCredentials reads from a registry that wants basic auth, with
// --src-creds and with an auth file.
func TestExportCredentials(t *testing.T) {
	reg := testregistry.Start(t)
	p := reg.PushImage(t, "private/app:v1", testregistry.DockerImage(t, testregistry.Layer(t, 1024, types.DockerLayer)))
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if u, pw, ok := r.BasicAuth(); ok && u == "alice" && pw == "s3cret" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
	authFile := filepath.Join(t.TempDir(), "auth.json")
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	if err := os.WriteFile(authFile, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.Host, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]RegistryOptions{
		"creds":    {Creds: "alice:s3cret", Insecure: true},
		"authfile": {AuthFile: authFile, Insecure: true},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Export(context.Background(), newRoot(t), "docker://"+p.Ref, "", Options{Registry: o}); err != nil {
				t.Errorf("export with %s: %v", name, err)
			}
		})
	}
	_, err := Export(context.Background(), newRoot(t), "docker://"+p.Ref, "", Options{Registry: RegistryOptions{Creds: "alice:wrong", Insecure: true}})
	if err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Errorf("export with a wrong password: %v, want an authentication error", err)
	}
}

// TestExportReferrer: exporting a manifest with a subject writes the
// subject's referrers index before the tag, whether or not the subject is
// in the tree; a subject that is no descriptor fails the export untouched.
func TestExportReferrer(t *testing.T) {
	reg := testregistry.Start(t)
	img := reg.PushImage(t, "ns/app:v1", testregistry.OCIImage(t, "amd64", testregistry.Layer(t, 512, types.OCILayer)))
	raw, blobs := testregistry.ArtifactFor(t, img)
	art := reg.PushRaw(t, "ns/app:sbom", distribution.MediaTypeOCIManifest, raw, blobs...)
	root := newRoot(t)
	if _, err := Export(context.Background(), root, "docker://"+art.Ref, "", plainHTTP()); err != nil {
		t.Fatalf("export: %v", err)
	}
	b, err := tree.Fixture(root).ReadReferrers("ns/app", digest.Digest(img.Digest))
	if err != nil {
		t.Fatalf("referrers index of the subject: %v", err)
	}
	x, err := distribution.ParseReferrers(b)
	want := distribution.ReferrerDescriptor{MediaType: distribution.MediaTypeOCIManifest, Digest: digest.Digest(art.Digest), Size: int64(len(raw)), ArtifactType: testregistry.ArtifactType}
	if err != nil || len(x.Manifests) != 1 || fmt.Sprint(x.Manifests[0]) != fmt.Sprint(want) {
		t.Errorf("referrers index %s (%v): want exactly %+v", b, err, want)
	}

	bad := strings.Replace(string(raw), fmt.Sprintf(`"size":%d}}`, len(img.Raw)), `"size":-1}}`, 1)
	p := reg.PushRaw(t, "ns/bad:v1", distribution.MediaTypeOCIManifest, []byte(bad), blobs...)
	_, err = Export(context.Background(), root, "docker://"+p.Ref, "", plainHTTP())
	if err == nil || !strings.Contains(err.Error(), "subject: "+img.Digest+": negative size") {
		t.Errorf("export of a bad subject: %v, want an error naming the subject", err)
	}
	if _, err := os.Stat(tree.Fixture(root).RepoDir("ns/bad")); err == nil {
		t.Error("the failed export wrote to the tree")
	}
}
