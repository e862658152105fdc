package main

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The cross-checks compare files with two unpackers that share no code
// with it: umoci unpack (Debian's package, which make test-deps installs)
// and go-containerregistry's mutate.Extract — what crane export runs for
// an image of more than one layer (pkg/crane/export.go), used here in
// process at the version go.mod pins. Each sees the known image with its
// layers compressed as it can read them (umoci 0.4: gzip and plain tar;
// neither xz), and must give the same paths, types, modes, owners and
// link targets as files.

// seen is what one unpacker says of a path.
type seen struct{ typ, mode, owner, link string }

func (s seen) String() string { return fmt.Sprintf("%s %s %s %s", s.typ, s.mode, s.owner, s.link) }

// crossImage exports the known image, its layers recompressed with how,
// and returns the root, the OCI layout and what files says of it.
func crossImage(t *testing.T, how ...string) (string, map[string]seen) {
	t.Helper()
	var layers []testLayer
	for i, l := range knownLayerTars(t) {
		layers = append(layers, compressLayer(t, how[i], l))
	}
	src := t.TempDir()
	ociLayout(t, src, map[string][]testLayer{"v2": layers})
	root := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", root, "-q", "export", "oci:"+src+":v2", "app:v2")
	var out struct {
		Files []struct {
			Path, Type, Mode, Link string
			UID, GID               int
		}
	}
	if err := json.Unmarshal([]byte(mustRun(t, "--root", root, "files", "--json", "app:v2").stdout), &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]seen{}
	for _, f := range out.Files {
		got[strings.TrimPrefix(f.Path, "/")] = seen{f.Type, f.Mode, fmt.Sprintf("%d:%d", f.UID, f.GID), f.Link}
	}
	return src, got
}

// asUnpacked is what files says as an unpacked file system shows it: a
// hard link is a file, one inode with the file it names.
func asUnpacked(m map[string]seen) map[string]seen {
	out := map[string]seen{}
	for p, s := range m {
		if s.typ == "hardlink" {
			s.typ, s.link = "file", ""
		}
		out[p] = s
	}
	return out
}

func compareSeen(t *testing.T, who string, want, got map[string]seen, except map[string]bool) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	var differ []string
	for _, p := range paths {
		w, inW := want[p]
		g, inG := got[p]
		if inW == inG && w == g {
			continue
		}
		if except[p] {
			differ = append(differ, p)
			continue
		}
		t.Errorf("%s: %s: files says %v (%v), %s says %v (%v)", who, p, w, inW, who, g, inG)
	}
	if len(except) > 0 && len(differ) != len(except) {
		t.Errorf("%s: the known differences are %v, found %v", who, except, differ)
	}
}

func TestCrossCheckUmoci(t *testing.T) {
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Fatal("umoci is not installed: run make test-deps")
	}
	src, want := crossImage(t, "gzip", "gzip", "gzip", "none")
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--image", src+":v2", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	got := map[string]seen{}
	err := filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == rootfs {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		s := seen{mode: fmt.Sprintf("%04o", uint32(fi.Mode().Perm())|uint32(st.Mode&0o7000)), owner: fmt.Sprintf("%d:%d", st.Uid, st.Gid)}
		switch m := fi.Mode(); {
		case m.IsDir():
			s.typ = "dir"
		case m.IsRegular():
			s.typ = "file"
		case m&fs.ModeSymlink != 0:
			s.typ = "symlink"
			s.link, _ = os.Readlink(path)
		case m&fs.ModeNamedPipe != 0:
			s.typ = "fifo"
		case m&fs.ModeCharDevice != 0:
			s.typ = "char"
		case m&fs.ModeDevice != 0:
			s.typ = "block"
		}
		rel, _ := filepath.Rel(rootfs, path)
		got[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	compareSeen(t, "umoci unpack", asUnpacked(want), got, nil)
}

// TestCrossCheckCraneExport: mutate.Extract applies whiteouts by the
// names the layers spell, never through a symbolic link: of the known
// image, it keeps usr/lib's lower files that the opaque marker
// lib/.wh..wh..opq hides through the link lib -> usr/lib, and lists the
// file written through the link as lib/c.so. Those paths, and only they,
// differ.
func TestCrossCheckCraneExport(t *testing.T) {
	src, want := crossImage(t, "gzip", "zstd", "gzip", "none")
	p, err := layout.FromPath(src)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]seen{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s := seen{mode: fmt.Sprintf("%04o", h.Mode&0o7777), owner: fmt.Sprintf("%d:%d", h.Uid, h.Gid)}
		switch h.Typeflag {
		case tar.TypeDir:
			s.typ = "dir"
		case tar.TypeReg:
			s.typ = "file"
		case tar.TypeSymlink:
			s.typ, s.link = "symlink", h.Linkname
		case tar.TypeLink:
			s.typ, s.link = "hardlink", "/"+strings.TrimPrefix(h.Linkname, "/")
		case tar.TypeFifo:
			s.typ = "fifo"
		}
		got[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = s
	}
	compareSeen(t, "crane export", want, got, map[string]bool{
		"lib/c.so": true, "usr/lib/a.so": true, "usr/lib/b.so": true, "usr/lib/c.so": true,
	})
}
