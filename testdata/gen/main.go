// Command gen writes the demo images bundled in testdata/:
//
//	hello-oci/         an OCI image layout: a linux/amd64 + linux/arm64 index tagged "latest"
//	hello.docker.tar   the amd64 image as `docker save` (legacy layout) writes it
//
// Run it from the module root as `go run ./testdata/gen`. Its output is
// byte-for-byte reproducible, so the fixtures' digests only change when
// this program does.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// created stamps every config, history entry and tar header: a fixed
// time, so that running gen twice writes the same bytes.
var created = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	ociIndexType    = "application/vnd.oci.image.index.v1+json"
	ociManifestType = "application/vnd.oci.image.manifest.v1+json"
	ociConfigType   = "application/vnd.oci.image.config.v1+json"
	ociLayerGzip    = "application/vnd.oci.image.layer.v1.tar+gzip"
	refNameKey      = "org.opencontainers.image.ref.name"
)

// descriptor is an OCI content descriptor, fields in the spec's order.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// manifest is an OCI image manifest or, with Manifests set, an image index.
type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        *descriptor  `json:"config,omitempty"`
	Layers        []descriptor `json:"layers,omitempty"`
	Manifests     []descriptor `json:"manifests,omitempty"`
}

// config is the image configuration, with only the fields a runnable
// single-layer image needs.
type config struct {
	Created      string  `json:"created"`
	Architecture string  `json:"architecture"`
	OS           string  `json:"os"`
	Config       runtime `json:"config"`
	RootFS       rootFS  `json:"rootfs"`
	History      []step  `json:"history"`
}

type runtime struct {
	Cmd []string `json:"Cmd"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type step struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// image is one platform's image, every part as exact bytes.
type image struct {
	arch     string
	layer    []byte // uncompressed tar, what docker save stores
	gzLayer  []byte // gzipped tar, what the OCI layout stores
	config   []byte
	manifest []byte
}

func main() {
	dir := flag.String("dir", "testdata", "directory to write the fixtures into")
	flag.Parse()
	if err := run(*dir); err != nil {
		log.Fatalf("gen: %v", err)
	}
}

func run(dir string) error {
	var imgs []image
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := buildImage(arch)
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
	}
	if err := writeOCILayout(filepath.Join(dir, "hello-oci"), imgs); err != nil {
		return err
	}
	return writeDockerArchive(filepath.Join(dir, "hello.docker.tar"), imgs[0])
}

func buildImage(arch string) (image, error) {
	img := image{arch: arch}
	var err error
	content := fmt.Sprintf("hello from image-serve (%s)\n", arch)
	if img.layer, err = tarFiles([]file{{name: "hello.txt", body: []byte(content)}}); err != nil {
		return img, err
	}
	if img.gzLayer, err = gzipBytes(img.layer); err != nil {
		return img, err
	}
	stamp := created.Format(time.RFC3339)
	img.config, err = json.Marshal(config{
		Created:      stamp,
		Architecture: arch,
		OS:           "linux",
		Config:       runtime{Cmd: []string{"cat", "/hello.txt"}},
		RootFS:       rootFS{Type: "layers", DiffIDs: []string{sha256Digest(img.layer)}},
		History:      []step{{Created: stamp, CreatedBy: "COPY hello.txt / # image-serve testdata/gen"}},
	})
	if err != nil {
		return img, err
	}
	img.manifest, err = json.Marshal(manifest{
		SchemaVersion: 2,
		MediaType:     ociManifestType,
		Config:        describe(ociConfigType, img.config),
		Layers:        []descriptor{*describe(ociLayerGzip, img.gzLayer)},
	})
	return img, err
}

func sha256Digest(b []byte) string {
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

func describe(mediaType string, b []byte) *descriptor {
	return &descriptor{MediaType: mediaType, Digest: sha256Digest(b), Size: int64(len(b))}
}

// file is one tar entry; a name ending in "/" makes a directory.
type file struct {
	name string
	body []byte
}

// tarFiles writes a USTAR archive whose headers carry nothing that varies
// between runs or machines: fixed time, root owner, no user names.
func tarFiles(files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Mode:     0o644,
			Size:     int64(len(f.body)),
			ModTime:  created,
			Format:   tar.FormatUSTAR,
		}
		if strings.HasSuffix(f.name, "/") {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gzipBytes gzips b with stored (uncompressed) deflate blocks and a zero
// mtime: deflate's output may change between Go releases, stored blocks
// cannot, so the layer digests stay put whichever toolchain runs gen.
func gzipBytes(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeOCILayout replaces dir with an OCI image layout whose index.json
// names, as "latest", an image index of imgs.
func writeOCILayout(dir string, imgs []image) error {
	idx := manifest{SchemaVersion: 2, MediaType: ociIndexType}
	blobs := [][]byte{}
	for _, img := range imgs {
		d := describe(ociManifestType, img.manifest)
		d.Platform = &platform{Architecture: img.arch, OS: "linux"}
		idx.Manifests = append(idx.Manifests, *d)
		blobs = append(blobs, img.gzLayer, img.config, img.manifest)
	}
	rawIdx, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	top := describe(ociIndexType, rawIdx)
	top.Annotations = map[string]string{refNameKey: "latest"}
	rawTop, err := json.Marshal(manifest{SchemaVersion: 2, MediaType: ociIndexType, Manifests: []descriptor{*top}})
	if err != nil {
		return err
	}
	// Start afresh so that blobs of an older gen do not linger.
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	for _, b := range append(blobs, rawIdx) {
		name := strings.TrimPrefix(sha256Digest(b), "sha256:")
		if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", name), b, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "index.json"), rawTop, 0o644)
}

// dockerSaveEntry is one element of docker save's manifest.json.
type dockerSaveEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeDockerArchive writes img the way `docker save hello:latest` did
// before Docker 25: the config as <hex>.json, the layer uncompressed as
// <id>/layer.tar, manifest.json and repositories. Docker derives <id>
// from a v1 image JSON; the layer's diff ID serves as well here.
func writeDockerArchive(path string, img image) error {
	cfgName := strings.TrimPrefix(sha256Digest(img.config), "sha256:") + ".json"
	layerID := strings.TrimPrefix(sha256Digest(img.layer), "sha256:")
	mf, err := json.Marshal([]dockerSaveEntry{{Config: cfgName, RepoTags: []string{"hello:latest"}, Layers: []string{layerID + "/layer.tar"}}})
	if err != nil {
		return err
	}
	repos, err := json.Marshal(map[string]map[string]string{"hello": {"latest": layerID}})
	if err != nil {
		return err
	}
	b, err := tarFiles([]file{
		{name: layerID + "/"},
		{name: layerID + "/VERSION", body: []byte("1.0")},
		{name: layerID + "/layer.tar", body: img.layer},
		{name: cfgName, body: img.config},
		{name: "manifest.json", body: mf},
		{name: "repositories", body: repos},
	})
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
