package bench

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5}, 5},
		{[]time.Duration{9, 1, 5}, 5},
		{[]time.Duration{4, 1, 3, 2}, 2}, // (2+3)/2, truncated
		{[]time.Duration{10, 30, 20, 40}, 25},
	} {
		in := slices.Clone(c.in)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("Median(%v) reordered its argument", in)
		}
	}
	if r := Ratio(3, 2); r != 1.5 {
		t.Errorf("Ratio(3, 2) = %v", r)
	}
	if r := Ratio(3, 0); !math.IsNaN(r) {
		t.Errorf("Ratio(3, 0) = %v, want NaN", r)
	}
}

func TestPairAlternates(t *testing.T) {
	var order []string
	p := Pair{Ours: "a", Ref: "b"}
	run := func(name string) func() error {
		return func() error { order = append(order, name); return nil }
	}
	for range 3 {
		if err := p.Round(run("a"), run("b")); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"a", "b", "b", "a", "a", "b"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if len(p.OursRuns) != 3 || len(p.RefRuns) != 3 {
		t.Errorf("%d and %d runs recorded, want 3 each", len(p.OursRuns), len(p.RefRuns))
	}
	boom := errors.New("boom")
	if err := p.Round(func() error { return boom }, run("b")); !errors.Is(err, boom) {
		t.Errorf("Round: %v, want boom", err)
	}
}

func TestWriteLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	img := Image{Layers: 2, LayerSize: 3<<20 + 5, Seed: 7}
	l, err := WriteLayout(dir, img)
	if err != nil {
		t.Fatal(err)
	}
	if l.Source() != "oci:"+dir+":bench" {
		t.Errorf("Source() = %q", l.Source())
	}
	blob := func(b Blob) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", b.Digest.Encoded()))
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(data) != b.Digest || int64(len(data)) != b.Size {
			t.Errorf("blob %s: %d bytes hashing to %s", b.Digest, len(data), digest.FromBytes(data))
		}
		return data
	}
	var config struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(blob(l.Config), &config); err != nil {
		t.Fatal(err)
	}
	total := l.Config.Size
	for i, layer := range l.Layers {
		total += layer.Size
		zr, err := gzip.NewReader(bytes.NewReader(blob(layer)))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, zr)
		if err != nil || n != img.LayerSize {
			t.Errorf("layer %d: %d bytes (%v), want %d", i, n, err, img.LayerSize)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != string(config.RootFS.DiffIDs[i]) {
			t.Errorf("layer %d: diff_id %s, config says %s", i, got, config.RootFS.DiffIDs[i])
		}
		if layer.Size < img.LayerSize {
			t.Errorf("layer %d: %d bytes compressed from %d: not incompressible", i, layer.Size, img.LayerSize)
		}
	}
	if l.Layers[0].Digest == l.Layers[1].Digest {
		t.Error("both layers are equal")
	}
	if total != l.BlobBytes {
		t.Errorf("BlobBytes %d, blobs hold %d", l.BlobBytes, total)
	}
	var manifest struct {
		Layers []Blob `json:"layers"`
	}
	if err := json.Unmarshal(blob(l.Manifest), &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest.Layers) != 2 || manifest.Layers[1].Digest != l.Layers[1].Digest {
		t.Errorf("manifest layers %+v, want %+v", manifest.Layers, l.Layers)
	}
	again, err := WriteLayout(filepath.Join(t.TempDir(), "again"), img)
	if err != nil {
		t.Fatal(err)
	}
	if again.Manifest != l.Manifest {
		t.Errorf("same image, manifests %s and %s: not deterministic", again.Manifest.Digest, l.Manifest.Digest)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if len(entries) != 4 {
		t.Errorf("%d files in blobs/sha256, want 4 (temporary files left?)", len(entries))
	}
}

func TestHeapSampler(t *testing.T) {
	h := StartHeapSampler(time.Millisecond)
	keep := make([]byte, 8<<20)
	for i := range keep {
		keep[i] = byte(i)
	}
	// Stop samples once more, so no wait is needed for the ticker; the
	// rest of the process (the test framework, a GC finishing) may free
	// a few kilobytes of the baseline meanwhile, hence the slack.
	growth := h.Stop()
	if growth < 7<<20 {
		t.Errorf("peak growth %d while holding 8 MiB", growth)
	}
	runtime.KeepAlive(keep)
}

func TestWriteImages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "images")
	base := LayerSpec{Seed: 1, Index: 0, Size: 1 << 16}
	l, err := WriteImages(dir, []ImageSpec{
		{Ref: "a", Platforms: []PlatformImage{{Arch: "amd64", Layers: []LayerSpec{base, {Seed: 2, Size: 100}}}}},
		{Ref: "b", Platforms: []PlatformImage{{Arch: "amd64", Layers: []LayerSpec{base, {Seed: 3, Size: 100}}}}},
		{Ref: "multi", Platforms: []PlatformImage{
			{Arch: "amd64", Layers: []LayerSpec{base}},
			{Arch: "arm64", Layers: []LayerSpec{{Seed: 4, Size: 100}}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.Source("a") != "oci:"+dir+":a" {
		t.Errorf("Source(a) = %q", l.Source("a"))
	}
	if l.Top["a"].MediaType != MediaTypeManifest || l.Top["multi"].MediaType != MediaTypeIndex {
		t.Errorf("tops %+v", l.Top)
	}
	if l.Blobs["a"][0] != l.Blobs["b"][0] {
		t.Errorf("the shared base differs: %v, %v", l.Blobs["a"][0], l.Blobs["b"][0])
	}
	var total int64
	entries, _ := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if digest.FromBytes(data).Encoded() != e.Name() {
			t.Errorf("blob %s does not hash to its name", e.Name())
		}
		total += int64(len(data))
	}
	if total != l.UniqueBytes {
		t.Errorf("UniqueBytes %d, blobs hold %d", l.UniqueBytes, total)
	}
	var index struct {
		Manifests []struct {
			Digest      digest.Digest     `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 3 || index.Manifests[2].Digest != l.Top["multi"].Digest ||
		index.Manifests[2].Annotations["org.opencontainers.image.ref.name"] != "multi" {
		t.Errorf("index.json: %s", data)
	}
}
