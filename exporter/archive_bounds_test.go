package exporter

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeManyEntries writes a tar of n empty regular files (gzipped when
// gz) and returns its path: a small file that describes a huge index.
func writeManyEntries(t *testing.T, n int, gz bool) string {
	t.Helper()
	var buf bytes.Buffer
	var w = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(w)
	if gz {
		zw = gzip.NewWriter(w)
		tw = tar.NewWriter(zw)
	}
	for i := range n {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("e/%d", i), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if zw != nil {
		zw.Close()
	}
	p := filepath.Join(t.TempDir(), "many.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestArchiveEntriesBounded: an archive of more entries than any image
// archive holds is refused while it is read, naming the limit. Guards: a
// docker-archive of a million empty entries took 1.26 GB (917 MB from a
// 9.5 MB gzip), and an oci-archive extracted them all into $TMPDIR.
func TestArchiveEntriesBounded(t *testing.T) {
	want := fmt.Sprintf("over %d entries", maxArchiveEntries)
	plain, gzipped := writeManyEntries(t, maxArchiveEntries+1, false), writeManyEntries(t, maxArchiveEntries+1, true)
	for _, tc := range []struct{ name, source string }{
		{"docker-archive", "docker-archive:" + plain},
		{"docker-archive gzipped", "docker-archive:" + gzipped},
		{"oci-archive", "oci-archive:" + plain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			_, err := Export(context.Background(), newRoot(t), tc.source, "many:v1", Options{})
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("export: %v; want %q", err, want)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left %d files in $TMPDIR", len(left))
			}
		})
	}
}

// TestUntarOnlyLayoutFiles: extracting an oci-archive writes the files of
// a layout and skips everything else unread, so a large entry the layout
// does not name never reaches $TMPDIR.
func TestUntarOnlyLayoutFiles(t *testing.T) {
	blob := "blobs/sha256/" + strings.Repeat("ab", 32)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, body string }{
		{"oci-layout", `{"imageLayoutVersion":"1.0.0"}`},
		{"index.json", `{}`},
		{blob, "blob"},
		{"blobs/sha256/not-a-digest", "junk"},
		{"blobs/md5/" + strings.Repeat("ab", 16), "junk"},
		{"README", "junk"},
		{"other/big", strings.Repeat("x", 1<<20)},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	archive := filepath.Join(t.TempDir(), "layout.tar")
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := untar(context.Background(), archive, dir); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if want := []string{blob, "index.json", "oci-layout"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("extracted %v, want only %v", got, want)
	}
}
