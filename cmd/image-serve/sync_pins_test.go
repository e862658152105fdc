package main

import (
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
)

// TestSyncDigestPinPulls: a sync file's digest entry — a multi-arch index
// no tag of the file names — lands as a digest pin, pulls by digest
// through the embedded server (the index, each child and every blob
// validated), and survives gc with no grace.
func TestSyncDigestPinPulls(t *testing.T) {
	reg := testregistry.Start(t)
	base := syncSource(t, reg)
	idx := reg.PushIndex(t, "tools:nightly", types.OCIImageIndex, map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 300, types.OCILayer)),
		"arm64": testregistry.OCIImage(t, "arm64", base),
	})
	file := writeFile(t, "sync.yaml", reg.Host+":\n  tls-verify: false\n  images:\n    tools:\n      - v1\n      - \""+idx.Digest+"\"\n")
	dir := filepath.Join(t.TempDir(), "root")
	mustRun(t, "--root", dir, "sync", "-f", file)
	mustRun(t, "--root", dir, "gc", "--grace", "0s")
	out := mustRun(t, "--root", dir, "list", "--long", "tools").stdout
	if !strings.Contains(out, "tools@"+idx.Digest) || !strings.Contains(out, "(pinned)") || !strings.Contains(out, "tools:v1") {
		t.Errorf("list --long tools: want tag v1 and the pin of %s:\n%s", idx.Digest, out)
	}
	root, err := tree.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	base2 := startServe(t, root)
	host := strings.TrimPrefix(base2, "http://")
	got, err := pullDigest(host + "/tools@" + idx.Digest)
	if err != nil {
		t.Fatalf("pull tools@%s through the embedded server: %v", idx.Digest, err)
	}
	if got.String() != idx.Digest {
		t.Errorf("pulled %s, want %s", got, idx.Digest)
	}
	for platform, child := range idx.Children {
		if _, err := pullDigest(host + "/tools@" + child); err != nil {
			t.Errorf("pull the %s child %s: %v", platform, child, err)
		}
	}
}
