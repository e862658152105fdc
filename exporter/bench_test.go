package exporter_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/internal/bench"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// benchImage is the image the export benchmarks copy: 4 layers of 16 MiB.
var benchImage = bench.Image{Layers: 4, LayerSize: 16 << 20, Seed: 1}

func writeLayout(b *testing.B, img bench.Image) *bench.Layout {
	b.Helper()
	l, err := bench.WriteLayout(filepath.Join(b.TempDir(), "layout"), img)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func openRoot(b *testing.B, dir string) *tree.Root {
	b.Helper()
	r, err := tree.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	return r
}

// export copies l into root as bench:v1 and checks what moved.
func export(b *testing.B, root *tree.Root, l *bench.Layout, wantFetched int64) *exporter.Summary {
	b.Helper()
	sum, err := exporter.Export(context.Background(), root, l.Source(), "bench:v1", exporter.Options{})
	if err != nil {
		b.Fatal(err)
	}
	if sum.BytesFetched != wantFetched {
		b.Fatalf("export moved %d bytes, want %d", sum.BytesFetched, wantFetched)
	}
	return sum
}

// allocBudget is what one export of benchImage may allocate, whatever its
// size: a fraction of one layer, so that buffering a blob in memory fails.
const allocBudget = 8 << 20

// BenchmarkExportOCILayout exports a generated OCI layout into a fresh
// root per iteration: read, hash, write and fsync every blob. Two layer
// sizes show that memory does not grow with content: B/op and peak-heap-B
// stay about the same while the bytes grow 16-fold, and alloc/content is
// allocated bytes per byte exported.
func BenchmarkExportOCILayout(b *testing.B) {
	for _, img := range []bench.Image{
		{Layers: 4, LayerSize: 1 << 20, Seed: 1},
		benchImage,
	} {
		b.Run(fmt.Sprintf("layers=%dx%dMiB", img.Layers, img.LayerSize>>20), func(b *testing.B) {
			l := writeLayout(b, img)
			parent := b.TempDir()

			// One untimed export, sampled for peak heap and allocation.
			heap := bench.StartHeapSampler(time.Millisecond)
			before := bench.TotalAlloc()
			export(b, openRoot(b, filepath.Join(parent, "probe")), l, l.BlobBytes)
			alloc := bench.TotalAlloc() - before
			peak := heap.Stop()
			if alloc > allocBudget {
				b.Errorf("one export of %d bytes allocated %d bytes, over the %d budget: memory grows with content", l.BlobBytes, alloc, allocBudget)
			}

			b.SetBytes(l.BlobBytes)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				b.StopTimer()
				dir := filepath.Join(parent, fmt.Sprint("root", i))
				i++
				root := openRoot(b, dir)
				b.StartTimer()
				export(b, root, l, l.BlobBytes)
				b.StopTimer()
				if err := os.RemoveAll(dir); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(peak), "peak-heap-B")
			b.ReportMetric(float64(alloc)/float64(l.BlobBytes), "alloc/content")
		})
	}
}

// BenchmarkReexportUnchanged exports the same image again into a root that
// has it: every blob is found present, and no byte moves.
func BenchmarkReexportUnchanged(b *testing.B) {
	l := writeLayout(b, benchImage)
	root := openRoot(b, b.TempDir())
	export(b, root, l, l.BlobBytes)
	b.ReportAllocs()
	var fetched, reused, n int64
	for b.Loop() {
		sum := export(b, root, l, 0)
		fetched += sum.BytesFetched
		reused += sum.BytesReused
		n++
	}
	if reused != n*l.BlobBytes {
		b.Errorf("reused %d bytes in %d exports, want %d each", reused, n, l.BlobBytes)
	}
	b.ReportMetric(float64(fetched)/float64(n), "fetched-B/op")
}

// BenchmarkVsSkopeo times the image-serve binary exporting the generated
// layout into a fresh tree against skopeo copying it into a fresh dir:
// destination, alternately, one round per iteration. Both read every blob
// from the layout, verify its digest and write it; image-serve also fsyncs
// each file and directory, skopeo does not. Both are separate processes,
// so each pays its own start-up.
func BenchmarkVsSkopeo(b *testing.B) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		b.Fatalf("skopeo is not installed: %s", testserver.Setup)
	}
	bin := buildImageServe(b)
	l := writeLayout(b, benchImage)
	parent := b.TempDir()
	run := func(name string, args ...string) func() error {
		return func() error {
			var stderr bytes.Buffer
			cmd := exec.Command(name, args...)
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s %v: %v\n%s", name, args, err, stderr.Bytes())
			}
			return nil
		}
	}
	p := bench.Pair{Ours: "image-serve", Ref: "skopeo"}
	i := 0
	for b.Loop() {
		b.StopTimer()
		tree := filepath.Join(parent, fmt.Sprint("tree", i))
		out := filepath.Join(parent, fmt.Sprint("dir", i))
		i++
		b.StartTimer()
		err := p.Round(
			run(bin, "--root", tree, "--quiet", "export", l.Source(), "bench:v1"),
			run(skopeo, "--insecure-policy", "copy", "--quiet", "--all", l.Source(), "dir:"+out),
		)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		checkSameBlobs(b, openRoot(b, tree), out, l)
		for _, d := range []string{tree, out} {
			if err := os.RemoveAll(d); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	p.Report(b)
	ours, ref := p.Medians()
	b.ReportMetric(float64(l.BlobBytes)/1e6/ours.Seconds(), "image-serve-MB/s")
	b.ReportMetric(float64(l.BlobBytes)/1e6/ref.Seconds(), "skopeo-MB/s")
}

// buildImageServe builds the command into a temporary directory, as make
// build does.
func buildImageServe(b *testing.B) string {
	b.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.Fatalf("the go command is not in PATH: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "image-serve")
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", bin, "github.com/image-serve/image-serve/cmd/image-serve")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// checkSameBlobs asserts both copies hold every blob of l, at full size.
func checkSameBlobs(b *testing.B, root *tree.Root, dir string, l *bench.Layout) {
	b.Helper()
	for _, blob := range append([]bench.Blob{l.Config}, l.Layers...) {
		for _, p := range []string{tree.Fixture(root).BlobPath("bench", blob.Digest), filepath.Join(dir, blob.Digest.Encoded())} {
			fi, err := os.Stat(p)
			if err != nil {
				b.Fatal(err)
			}
			if fi.Size() != blob.Size {
				b.Fatalf("%s: %d bytes, want %d", p, fi.Size(), blob.Size)
			}
		}
	}
}
