package main

import (
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/rogpeppe/go-internal/testscript"
)

// pushHello is "registry hello": push $TESTDATA/hello-oci's image (its
// multi-arch index) to the script's registry as hello:latest — a source
// to export and sync from by digest.
func pushHello(ts *testscript.TestScript, host string) {
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
}
