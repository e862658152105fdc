package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteDiffImages: the two builds share their base layer and differ
// in their top one, and the rebuild did each kind of change it counts.
func TestWriteDiffImages(t *testing.T) {
	dir := t.TempDir()
	img, err := writeDiffImages(dir, 1<<20, 1<<20, 1)
	if err != nil {
		t.Fatal(err)
	}
	if img.changed == 0 || img.chmodded == 0 || img.deleted == 0 || img.added != 101 {
		t.Errorf("rebuild: %d changed, %d chmodded, %d deleted, %d added; want some of each and 101 added", img.changed, img.chmodded, img.deleted, img.added)
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	layers := map[string][]string{}
	for _, m := range index.Manifests {
		var manifest struct {
			Layers []struct {
				Digest string `json:"digest"`
			} `json:"layers"`
		}
		readJSON(t, filepath.Join(dir, "blobs", "sha256", m.Digest[len("sha256:"):]), &manifest)
		ref := m.Annotations["org.opencontainers.image.ref.name"]
		for _, l := range manifest.Layers {
			layers[ref] = append(layers[ref], l.Digest)
		}
	}
	v1, v2 := layers["v1"], layers["v2"]
	if len(v1) != 2 || len(v2) != 2 || v1[0] != v2[0] || v1[1] == v2[1] {
		t.Errorf("layers: v1 %v, v2 %v; want a shared base and two top layers", v1, v2)
	}
}

// TestTreeBytes counts a file with two names once.
func TestTreeBytes(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c"), make([]byte, 10), 0o644); err != nil {
		t.Fatal(err)
	}
	n, files, err := treeBytes(dir)
	if err != nil || n != 110 || files != 2 {
		t.Errorf("treeBytes = %d bytes, %d files, %v; want 110 bytes in 2 files", n, files, err)
	}
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}
