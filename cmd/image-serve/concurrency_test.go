package main

import (
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// slowBlobs delays every blob GET, so that concurrent exports overlap.
func slowBlobs(d time.Duration) func(http.ResponseWriter, *http.Request) bool {
	return func(_ http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			time.Sleep(d)
		}
		return false
	}
}

// TestConcurrentExports runs four exports of images sharing base layers
// at once, as TripleO's parallel image prepare did: every tag must land in
// tags/list and _catalog, and each shared blob must be fetched once.
func TestConcurrentExports(t *testing.T) {
	reg := testregistry.Start(t)
	base1 := testregistry.Layer(t, 64<<10, types.DockerLayer)
	base2 := testregistry.Layer(t, 64<<10, types.DockerLayer)
	refs := []string{"ns/a:v1", "ns/b:v1", "ns/c:v1", "ns/c:v2"}
	var imgs []v1.Image
	for _, ref := range refs {
		img := testregistry.DockerImage(t, base1, base2, testregistry.Layer(t, 1024, types.DockerLayer))
		reg.PushImage(t, ref, img)
		imgs = append(imgs, img)
	}
	reg.Intercept = slowBlobs(150 * time.Millisecond)
	root := testserver.TempRoot(t)

	var wg sync.WaitGroup
	results := make([]result, len(refs))
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runCmd(t, exec.Command(binary, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref(ref)))
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("export %s: exit %d: %s", refs[i], r.code, r.stderr)
		}
	}

	var catalog struct{ Repositories []string }
	readJSON(t, tree.Fixture(root).CatalogPath(), &catalog)
	if want := []string{"ns/a", "ns/b", "ns/c"}; !slices.Equal(catalog.Repositories, want) {
		t.Errorf("_catalog %v, want %v", catalog.Repositories, want)
	}
	var tags struct{ Tags []string }
	readJSON(t, tree.Fixture(root).TagsListPath("ns/c"), &tags)
	if want := []string{"v1", "v2"}; !slices.Equal(tags.Tags, want) {
		t.Errorf("ns/c tags/list %v, want %v (a concurrent update was lost)", tags.Tags, want)
	}
	for _, l := range []v1.Layer{base1, base2} {
		d, _ := l.Digest()
		if n := reg.BlobGets(d.String()); n != 1 {
			t.Errorf("shared blob %s fetched %d times, want 1", d, n)
		}
	}
	for _, img := range imgs {
		m, _ := img.Manifest()
		if n := reg.BlobGets(m.Config.Digest.String()); n != 1 {
			t.Errorf("config %s fetched %d times, want 1", m.Config.Digest, n)
		}
	}
}
