package main

import (
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdRegistry is "registry": run go-containerregistry's in-memory
// registry over plain HTTP on 127.0.0.1 until the script ends, holding
// $TESTDATA/hello-oci's image (its multi-arch index) as hello:latest,
// and set $REGISTRY to its HOST:PORT: a source to export from by digest.
func cmdRegistry(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: registry")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	ts.Defer(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	p, err := layout.FromPath(filepath.Join(ts.Getenv("TESTDATA"), "hello-oci"))
	ts.Check(err)
	outer, err := p.ImageIndex()
	ts.Check(err)
	im, err := outer.IndexManifest()
	ts.Check(err)
	if len(im.Manifests) != 1 {
		ts.Fatalf("hello-oci: %d images, want one", len(im.Manifests))
	}
	idx, err := outer.ImageIndex(im.Manifests[0].Digest)
	ts.Check(err)
	ref, err := name.ParseReference(host+"/hello:latest", name.Insecure)
	ts.Check(err)
	ts.Check(remote.WriteIndex(ref, idx))
	ts.Setenv("REGISTRY", host)
}
