// Package legacytree builds, for tests, registry trees as TripleO's Python
// exporter left them, from the conventions docs/legacy-trees.md describes:
// layers as blobs/<digest>.gz hard-linked across repositories, manifests
// re-indented with three spaces, three-line .htaccess files with an
// unquoted ETag, type maps without qs (a multi-arch tag: the list and its
// default child, ranked by size), symlink tags, per-repository
// manifests/.htaccess files, unsorted tags/list and a _catalog of
// two-level names only, and 0600/0700 modes under a umask of 077. It
// writes files directly, as the Python exporter did: nothing here goes
// through the tree package. Tests only.
package legacytree

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

// Builder writes one legacy tree.
type Builder struct {
	t      testing.TB
	Dir    string              // the document root; v2/ is below it
	tags   map[string][]string // repository -> tags, in the order written
	layers map[digest.Digest]string
}

// New starts a legacy tree in dir, which must exist: v2/index.json holds
// "{}" without a newline, as TripleO's Ansible role wrote it.
func New(t testing.TB, dir string) *Builder {
	t.Helper()
	b := &Builder{t: t, Dir: dir, tags: map[string][]string{}, layers: map[digest.Digest]string{}}
	b.write(filepath.Join(dir, "v2", "index.json"), []byte("{}"))
	return b
}

// Layer is a random gzipped layer, of size bytes before compression.
func Layer(t testing.TB, size int64) v1.Layer {
	return testregistry.Layer(t, size, types.DockerLayer)
}

// Image is what Builder wrote for one tag.
type Image struct {
	Digest   digest.Digest            // the tag's manifest (the list, for a multi-arch tag)
	Children map[string]digest.Digest // a multi-arch tag's children, by architecture
	Default  digest.Digest            // the child TripleO's type map offers next to the list
}

// Single writes a Docker schema2 image for linux/arch of layers into repo
// and tags it, as TripleO's final exporter did: a type map with one
// variant.
func (b *Builder) Single(repo, tag, arch string, layers ...v1.Layer) Image {
	b.t.Helper()
	d, raw := b.manifest(repo, arch, layers)
	b.typeMap(repo, tag, variant{distribution.MediaTypeDockerManifest, d})
	_ = raw
	return Image{Digest: d}
}

// Untagged writes the image as Single does, without a tag: a symlink tag
// (Symlink) may name it.
func (b *Builder) Untagged(repo, arch string, layers ...v1.Layer) Image {
	b.t.Helper()
	d, _ := b.manifest(repo, arch, layers)
	return Image{Digest: d}
}

// MultiArch writes one image per architecture of archs (each with its own
// layer plus shared) and a Docker manifest list of them into repo, and
// tags the list as TripleO did: a type map with the list and the default
// child (the first amd64 entry, else the first entry), without qs, so
// that Apache picks the smaller of the two for clients that take both.
func (b *Builder) MultiArch(repo, tag string, archs []string, shared ...v1.Layer) Image {
	b.t.Helper()
	img := Image{Children: map[string]digest.Digest{}}
	var entries []map[string]any
	for _, arch := range archs {
		d, raw := b.manifest(repo, arch, append(append([]v1.Layer{}, shared...), Layer(b.t, 1<<10)))
		img.Children[arch] = d
		entries = append(entries, map[string]any{
			"mediaType": distribution.MediaTypeDockerManifest,
			"size":      len(raw),
			"digest":    d,
			"platform":  map[string]string{"architecture": arch, "os": "linux"},
		})
		if img.Default == "" && arch == "amd64" {
			img.Default = d
		}
	}
	if img.Default == "" {
		img.Default = img.Children[archs[0]]
	}
	list := pythonJSON(b.t, map[string]any{"schemaVersion": 2, "mediaType": distribution.MediaTypeDockerList, "manifests": entries},
		"schemaVersion", "mediaType", "manifests")
	img.Digest = b.putManifest(repo, distribution.MediaTypeDockerList, list)
	b.typeMap(repo, tag,
		variant{distribution.MediaTypeDockerList, img.Digest},
		variant{distribution.MediaTypeDockerManifest, img.Default})
	return img
}

// Symlink writes the symlink tag TripleO's exporter wrote from 2018-12 to
// 2019-04: manifests/<tag> -> the digest directory, absolute (as TripleO
// wrote it, below /var/lib/image-serve, so that it dangles here) or
// relative. tags/list lists it, as it did then.
func (b *Builder) Symlink(repo, tag string, d digest.Digest, absolute bool) {
	b.t.Helper()
	b.UnlistedSymlink(repo, tag, d, absolute)
	b.tags[repo] = append(b.tags[repo], tag)
}

// UnlistedSymlink is Symlink, but tags/list does not list the tag: a
// listing no server contradicts (the tag answers 404 before migration).
func (b *Builder) UnlistedSymlink(repo, tag string, d digest.Digest, absolute bool) {
	b.t.Helper()
	target := d.String()
	if absolute {
		target = filepath.Join("/var/lib/image-serve/v2", repo, "manifests", d.String())
	}
	link := filepath.Join(b.repoDir(repo), "manifests", tag)
	b.mkdir(filepath.Dir(link))
	if err := os.Symlink(target, link); err != nil {
		b.t.Fatal(err)
	}
}

// RepoHtaccess writes the per-repository manifests/.htaccess TripleO wrote
// from 2019-04 to 2021-12.
func (b *Builder) RepoHtaccess(repo string) {
	b.t.Helper()
	b.write(filepath.Join(b.repoDir(repo), "manifests", ".htaccess"), []byte("AddHandler type-map .type-map\nMultiviewsMatch Handlers\n"))
}

// Finish writes every repository's tags/list and the _catalog as TripleO
// did: Python's ", " separators, no newline, tags in the order written
// reversed (directory order, never sorted), and a _catalog of the
// two-level names only, in reverse order.
func (b *Builder) Finish() {
	b.t.Helper()
	var repos []string
	for repo, tags := range b.tags {
		rev := make([]string, len(tags))
		for i, tag := range tags {
			rev[len(tags)-1-i] = tag
		}
		b.write(filepath.Join(b.repoDir(repo), "tags", "list"),
			fmt.Appendf(nil, `{"name": %q, "tags": [%s]}`, repo, quoted(rev)))
		if strings.Count(repo, "/") == 1 {
			repos = append(repos, repo)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(repos)))
	b.write(filepath.Join(b.Dir, "v2", "_catalog"), fmt.Appendf(nil, `{"repositories": [%s]}`, quoted(repos)))
}

// Umask077 gives the tree the modes an export under sudo with umask 077
// left: directories 0700, files 0600 — but layer blobs 0644, as TripleO
// set them from 2020-08. No web server running as another user reads
// such a tree.
func (b *Builder) Umask077() { b.Umask(0o077) }

// Umask gives the tree the modes TripleO's exporter left under mask:
// directories 0775 &^ mask (os.makedirs), files 0666 &^ mask, layer blobs
// 0644.
func (b *Builder) Umask(mask os.FileMode) {
	b.t.Helper()
	err := filepath.Walk(filepath.Join(b.Dir, "v2"), func(path string, fi os.FileInfo, err error) error {
		switch {
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return nil
		case fi.IsDir():
			return os.Chmod(path, 0o775&^mask)
		case strings.HasSuffix(path, ".gz"):
			return os.Chmod(path, 0o644)
		default:
			return os.Chmod(path, 0o666&^mask)
		}
	})
	if err != nil {
		b.t.Fatal(err)
	}
}

func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// manifest writes the layers and config of a linux/arch image of layers
// into repo, and its manifest re-serialised as TripleO did.
func (b *Builder) manifest(repo, arch string, layers []v1.Layer) (digest.Digest, []byte) {
	b.t.Helper()
	img := testregistry.DockerImageFor(b.t, arch, layers...)
	cfg, err := img.RawConfigFile()
	if err != nil {
		b.t.Fatal(err)
	}
	cfgDigest := digest.FromBytes(cfg)
	b.write(filepath.Join(b.repoDir(repo), "blobs", cfgDigest.String()), cfg)
	for _, l := range layers {
		b.layer(repo, l)
	}
	raw, err := img.RawManifest()
	if err != nil {
		b.t.Fatal(err)
	}
	var m struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		b.t.Fatal(err)
	}
	body := pythonJSON(b.t, map[string]any{"schemaVersion": m.SchemaVersion, "mediaType": m.MediaType, "config": m.Config, "layers": m.Layers},
		"schemaVersion", "mediaType", "config", "layers")
	return b.putManifest(repo, distribution.MediaTypeDockerManifest, body), body
}

// layer writes l as blobs/<digest>.gz, hard-linked to its first copy in
// the tree.
func (b *Builder) layer(repo string, l v1.Layer) {
	b.t.Helper()
	h, err := l.Digest()
	if err != nil {
		b.t.Fatal(err)
	}
	d := digest.Digest(h.String())
	path := filepath.Join(b.repoDir(repo), "blobs", d.String()+".gz")
	if _, err := os.Lstat(path); err == nil {
		return
	}
	if first, ok := b.layers[d]; ok {
		b.mkdir(filepath.Dir(path))
		if err := os.Link(first, path); err != nil {
			b.t.Fatal(err)
		}
		return
	}
	rc, err := l.Compressed()
	if err != nil {
		b.t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		b.t.Fatal(err)
	}
	b.write(path, data)
	b.layers[d] = path
}

// putManifest writes body as manifest <digest>/index.json of repo, with
// TripleO's three-line .htaccess.
func (b *Builder) putManifest(repo, mediaType string, body []byte) digest.Digest {
	b.t.Helper()
	d := digest.FromBytes(body)
	dir := filepath.Join(b.repoDir(repo), "manifests", d.String())
	b.write(filepath.Join(dir, "index.json"), body)
	b.write(filepath.Join(dir, ".htaccess"), fmt.Appendf(nil,
		"Header set Content-Type \"%s\"\nHeader set Docker-Content-Digest \"%s\"\nHeader set ETag \"%s\"\n", mediaType, d, d))
	return d
}

type variant struct {
	mediaType string
	digest    digest.Digest
}

// typeMap writes TripleO's type map for tag: no qs.
func (b *Builder) typeMap(repo, tag string, vs ...variant) {
	b.t.Helper()
	var s strings.Builder
	s.WriteString("URI: " + tag + "\n\n")
	for _, v := range vs {
		s.WriteString("Content-Type: " + v.mediaType + "\nURI: " + v.digest.String() + "/index.json\n\n")
	}
	b.write(filepath.Join(b.repoDir(repo), "manifests", tag+".type-map"), []byte(s.String()))
	b.tags[repo] = append(b.tags[repo], tag)
}

func (b *Builder) repoDir(repo string) string {
	return filepath.Join(b.Dir, "v2", filepath.FromSlash(repo))
}

func (b *Builder) mkdir(dir string) {
	b.t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
}

// write writes data at path in place, as TripleO did.
func (b *Builder) write(path string, data []byte) {
	b.t.Helper()
	b.mkdir(filepath.Dir(path))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// pythonJSON is json.dumps(v, indent=3) of an object with its keys in
// order: three-space indents, "," at line ends, ": " after keys, no
// trailing newline — what Go's indenting gives for ASCII without <, > and
// &, the only JSON this package writes.
func pythonJSON(t testing.TB, fields map[string]any, order ...string) []byte {
	t.Helper()
	var compact bytes.Buffer
	compact.WriteByte('{')
	for i, k := range order {
		if i > 0 {
			compact.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(fields[k])
		if err != nil {
			t.Fatal(err)
		}
		compact.Write(kb)
		compact.WriteByte(':')
		compact.Write(vb)
	}
	compact.WriteByte('}')
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "   "); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
