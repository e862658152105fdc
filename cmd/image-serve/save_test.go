package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// saveTree is a tree of images for save to write: the bundled multi-arch
// OCI image (demo/hello:latest), the bundled docker save archive
// (demo/hello-archive:v1, a Docker schema 2 image), and two OCI images
// sharing a base layer, ns/app:v1 (also tagged ns/app:stable) and
// ns/app:v2.
func saveTree(t *testing.T) *tree.Root {
	t.Helper()
	root := testserver.TempRoot(t)
	dir := root.Dir()
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 4096, types.OCILayer)
	v1 := reg.PushImage(t, "ns/app:v1", testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 1000, types.OCILayer)))
	v2 := reg.PushImage(t, "ns/app:v2", testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 2000, types.OCILayer)))
	mustRun(t, "--root", dir, "-q", "export", "--src-tls-verify=false", "docker://"+v1.Ref)
	mustRun(t, "--root", dir, "-q", "export", "--src-tls-verify=false", "docker://"+v1.Ref, "ns/app:stable")
	mustRun(t, "--root", dir, "-q", "export", "--src-tls-verify=false", "docker://"+v2.Ref)
	mustRun(t, "--root", dir, "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello:latest")
	mustRun(t, "--root", dir, "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/hello-archive:v1")
	return root
}

// treeImage is what the tree holds for REPO:TAG: the digest the tag
// names, and for an image (or an index's linux/amd64 child) its config and
// layers.
type treeImage struct {
	top, image, config digest.Digest
	layers             []digest.Digest
}

func imageOf(t *testing.T, root *tree.Root, repo, tag string) treeImage {
	t.Helper()
	fx := tree.Fixture(root)
	vs, err := fx.TagVariants(repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	ti := treeImage{top: vs[0].Digest, image: vs[len(vs)-1].Digest}
	m, err := distribution.ParseManifest(readFile(t, fx.ManifestPath(repo, ti.image)))
	if err != nil {
		t.Fatal(err)
	}
	ti.config = m.Config.Digest
	for _, l := range m.Layers {
		ti.layers = append(ti.layers, l.Digest)
	}
	return ti
}

// tarNames lists the members of a tar file, in order.
func tarNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

// savedRefs are the tags TestSaveDockerArchive and TestSaveOCIArchive
// save, in one archive each.
var savedRefs = []string{"ns/app:v1", "ns/app:stable", "ns/app:v2", "demo/hello:latest", "demo/hello-archive:v1"}

// TestSaveDockerArchive saves several images and tags into one
// docker-archive and reads it back with every client that reads one:
// go-containerregistry's tarball reader, skopeo, podman load, containerd's
// ctr import, and image-serve export. Each layer in the archive is the
// tree's blob, and the base layer two images share is one member.
func TestSaveDockerArchive(t *testing.T) {
	root := saveTree(t)
	out := filepath.Join(t.TempDir(), "images.tar")
	r := mustRun(t, append([]string{"--root", root.Dir(), "save", "-o", out}, savedRefs...)...)
	if !strings.Contains(r.stderr, `msg="demo/hello:latest is an index: saving its linux/amd64 image"`) {
		t.Errorf("save did not say which platform it took:\n%s", r.stderr)
	}
	images := map[string]treeImage{}
	for _, ref := range savedRefs {
		repo, tag, _ := strings.Cut(ref, ":")
		images[ref] = imageOf(t, root, repo, tag)
	}

	// Each blob is one member; the base layer two images share is one.
	names := tarNames(t, out)
	counts := map[string]int{}
	for _, n := range names {
		counts[n]++
	}
	base := images["ns/app:v1"].layers[0]
	if base != images["ns/app:v2"].layers[0] {
		t.Fatal("the fixture's images share no base layer")
	}
	want := map[string]bool{"manifest.json": true, "repositories": true, "blobs/": true, "blobs/sha256/": true}
	for _, im := range images {
		want["blobs/sha256/"+im.config.Encoded()] = true
		for _, l := range im.layers {
			want["blobs/sha256/"+l.Encoded()] = true
		}
	}
	for n, c := range counts {
		if c != 1 || !want[n] {
			t.Errorf("member %s: %d times, expected %v", n, c, want[n])
		}
	}
	if len(counts) != len(want) {
		t.Errorf("%d members, want %d: %q", len(counts), len(want), names)
	}

	t.Run("go-containerregistry", func(t *testing.T) {
		for _, ref := range savedRefs {
			tag, err := name.NewTag(ref)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(out, &tag)
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			cfg, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			var got []digest.Digest
			for _, l := range layers {
				d, err := l.Digest()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, digest.Digest(d.String()))
			}
			if cfg.String() != images[ref].config.String() || !slices.Equal(got, images[ref].layers) {
				t.Errorf("%s: config %s layers %v, the tree's %s %v", ref, cfg, got, images[ref].config, images[ref].layers)
			}
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		for _, ref := range []string{"ns/app:stable", "demo/hello:latest"} {
			dst := filepath.Join(t.TempDir(), "dir")
			skopeo(t, "copy", "docker-archive:"+out+":"+ref, "dir:"+dst)
			var m distribution.Manifest
			readJSON(t, filepath.Join(dst, "manifest.json"), &m)
			if m.Config.Digest != images[ref].config {
				t.Errorf("skopeo copy docker-archive:…:%s: config %s, the tree's %s", ref, m.Config.Digest, images[ref].config)
			}
		}
	})

	t.Run("podman", func(t *testing.T) {
		p := newPodmanStore(t)
		p.podman("load", "-i", out)
		for _, ref := range savedRefs {
			id := p.podman("image", "inspect", "--format", "{{.Id}}", "localhost/"+ref)
			if id != images[ref].config.Encoded() {
				t.Errorf("podman load: %s is %s, want the tree's config %s", ref, id, images[ref].config.Encoded())
			}
		}
	})

	t.Run("containerd", func(t *testing.T) {
		ctrd := testserver.Containerd(t)
		if _, err := ctrd.Ctr("save", "images", "import", out); err != nil {
			t.Fatal(err)
		}
		listed, err := ctrd.Ctr("save", "images", "ls", "-q")
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range savedRefs {
			if !slices.Contains(strings.Fields(string(listed)), "docker.io/"+ref) {
				t.Errorf("ctr images import: no docker.io/%s in\n%s", ref, listed)
			}
		}
	})

	t.Run("image-serve export", func(t *testing.T) {
		back := testserver.TempRoot(t)
		for _, ref := range savedRefs {
			mustRun(t, "--root", back.Dir(), "-q", "export", "docker-archive:"+out+":"+ref)
			repo, tag, _ := strings.Cut(ref, ":")
			got := imageOf(t, back, repo, tag)
			if got.config != images[ref].config || !slices.Equal(got.layers, images[ref].layers) {
				t.Errorf("%s: exported back as config %s layers %v, the tree's %s %v", ref, got.config, got.layers, images[ref].config, images[ref].layers)
			}
		}
	})
}

// TestSaveOCIArchive saves the same images into one oci-archive: an index
// is kept whole, and skopeo, containerd and image-serve export read it
// back with the tree's digests.
func TestSaveOCIArchive(t *testing.T) {
	root := saveTree(t)
	out := filepath.Join(t.TempDir(), "images.oci.tar")
	mustRun(t, append([]string{"--root", root.Dir(), "save", "--format", "oci-archive", "-o", out}, savedRefs...)...)
	images := map[string]treeImage{}
	for _, ref := range savedRefs {
		repo, tag, _ := strings.Cut(ref, ":")
		images[ref] = imageOf(t, root, repo, tag)
	}
	names := tarNames(t, out)
	counts := map[string]int{}
	for _, n := range names {
		counts[n]++
	}
	for n, c := range counts {
		if c != 1 {
			t.Errorf("member %s: %d times", n, c)
		}
	}
	if counts["blobs/sha256/"+images["ns/app:v1"].layers[0].Encoded()] != 1 {
		t.Errorf("the shared base layer is not a member")
	}

	t.Run("skopeo", func(t *testing.T) {
		for _, ref := range savedRefs {
			dst := filepath.Join(t.TempDir(), "layout")
			src := "oci-archive:" + out + ":" + ref
			if ref == "demo/hello-archive:v1" {
				// skopeo 1.9 (Debian 12) looks a name up only among
				// the entries of an OCI media type: a Docker schema 2
				// image, which save does not convert (its digest would
				// change), is there for ctr and image-serve export, but
				// skopeo does not find it by name.
				cmd := exec.Command("skopeo", "copy", src, "oci:"+dst+":x")
				if r := runCmd(t, cmd); r.code == 0 || !strings.Contains(r.stderr, "no descriptor found for reference") {
					t.Errorf("skopeo copy %s: exit %d (a skopeo that finds Docker entries by name: drop this case)\n%s", src, r.code, r.stderr)
				}
				continue
			}
			skopeo(t, "copy", "--all", "--preserve-digests", src, "oci:"+dst+":x")
			var idx struct{ Manifests []distribution.Descriptor }
			readJSON(t, filepath.Join(dst, "index.json"), &idx)
			if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != images[ref].top {
				t.Errorf("skopeo copy oci-archive:…:%s: %v, the tree's %s", ref, idx.Manifests, images[ref].top)
			}
		}
	})

	t.Run("containerd", func(t *testing.T) {
		ctrd := testserver.Containerd(t)
		if _, err := ctrd.Ctr("save", "images", "import", "--all-platforms", out); err != nil {
			t.Fatal(err)
		}
		listed, err := ctrd.Ctr("save", "images", "ls")
		if err != nil {
			t.Fatal(err)
		}
		for _, ref := range savedRefs {
			found := false
			for _, line := range strings.Split(string(listed), "\n") {
				f := strings.Fields(line)
				if len(f) > 3 && f[0] == ref && f[2] == images[ref].top.String() {
					found = true
				}
			}
			if !found {
				t.Errorf("ctr images import: no %s at %s in\n%s", ref, images[ref].top, listed)
			}
		}
	})

	t.Run("image-serve export", func(t *testing.T) {
		back := testserver.TempRoot(t)
		for _, ref := range savedRefs {
			mustRun(t, "--root", back.Dir(), "-q", "export", "oci-archive:"+out+":"+ref)
			repo, tag, _ := strings.Cut(ref, ":")
			if got := imageOf(t, back, repo, tag); got.top != images[ref].top {
				t.Errorf("%s: exported back as %s, the tree's %s", ref, got.top, images[ref].top)
			}
		}
	})
}
