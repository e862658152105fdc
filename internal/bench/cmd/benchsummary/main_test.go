package main

import (
	"bytes"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/image-serve/image-serve/exporter
cpu: Some CPU
BenchmarkExportOCILayout/layers=4x16MiB-2   	       5	  99801388 ns/op	 672.48 MB/s	         0.005807 alloc/content	    389976 peak-heap-B	  293906 B/op	    1409 allocs/op
BenchmarkVsSkopeo-2   	       5	 625859293 ns/op	       227.4 image-serve-ms	         0.5839 ratio-vs-skopeo	       389.5 skopeo-ms	   17018 B/op	     104 allocs/op
--- BENCH: BenchmarkVsSkopeo-2
    bench_test.go:172: 3 rounds: ...
PASS
ok  	github.com/image-serve/image-serve/exporter	4.887s
BenchmarkServeManifest/by-tag-2  5  241847452 ns/op  161.2 apache-ms  6203 apache-req/s  81.66 embedded-ms  12247 embedded-req/s  0.5065 ratio-vs-apache  17658560 B/op  209602 allocs/op
BenchmarkServeManifest/by-tag-2  5  241847452 ns/op  171.2 apache-ms  6203 apache-req/s  71.66 embedded-ms  12247 embedded-req/s  0.4065 ratio-vs-apache  17658560 B/op  209602 allocs/op
`

func TestSummary(t *testing.T) {
	var echo, out bytes.Buffer
	in, err := parse(strings.NewReader(sample), &echo)
	if err != nil {
		t.Fatal(err)
	}
	if echo.String() != sample {
		t.Errorf("echo differs from the input:\n%s", echo.String())
	}
	if in.failed || in.cpu != "Some CPU" || in.procs != "2" || len(in.results) != 3 {
		t.Fatalf("parsed failed=%v cpu=%q procs=%q, %d results", in.failed, in.cpu, in.procs, len(in.results))
	}
	summarize(&out, in)
	got := out.String()
	for _, want := range []string{
		"| VsSkopeo             | image-serve | 227.4 ms | skopeo    | 389.5 ms | 0.58  |",
		"| ServeManifest/by-tag | embedded    | 76.7 ms  | apache    | 166.2 ms | 0.46  | embedded 12247 req/s, apache 6203 req/s |",
		"| ExportOCILayout/layers=4x16MiB | 99801388 ns/op, 672 MB/s, 0.00581 alloc/content, 389976 peak-heap-B,",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
}

func TestSummaryFailure(t *testing.T) {
	in, err := parse(strings.NewReader("--- FAIL: BenchmarkX\nFAIL\n"), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !in.failed {
		t.Error("a failure went unnoticed")
	}
}
