package exporter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
)

// TestExportMany: three images sharing a base layer, exported into three
// repositories in one run, fetch the shared layer once (the others link
// it); a job that fails in the middle leaves the other two exported and
// is named in the error; every image is planned before any blob moves.
func TestExportMany(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 256<<10, types.OCILayer)
	var refs []string
	for _, name := range []string{"a", "b", "c"} {
		img := testregistry.OCIImage(t, "amd64", base, testregistry.Layer(t, 4<<10, types.OCILayer))
		refs = append(refs, "docker://"+reg.PushImage(t, "src/"+name+":v1", img).Ref)
	}
	root := newRoot(t)
	o := plainHTTP()
	o.Jobs = 3
	jobs := []Job{
		{Source: refs[0], Dest: "a:v1"},
		{Source: "docker://" + reg.Ref("src/nosuch:v1"), Dest: "bad:v1"},
		{Source: refs[1], Dest: "b:v1"},
		{Source: refs[2], Dest: "c:v1"},
	}
	sums, err := ExportMany(context.Background(), root, jobs, o)
	if err == nil || !strings.Contains(err.Error(), "src/nosuch:v1") || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("error %v, want one line naming the failed source", err)
	}
	if sums[1] != nil {
		t.Errorf("the failed job has a summary: %+v", sums[1])
	}
	bd, _ := base.Digest()
	if n := reg.BlobGets(bd.String()); n != 1 {
		t.Errorf("the shared layer was fetched %d times in one run, want once", n)
	}
	fetched, reused := 0, 0
	for i, repo := range map[int]string{0: "a", 2: "b", 3: "c"} {
		if sums[i] == nil {
			t.Fatalf("job %d (%s) failed", i, repo)
		}
		fetched += sums[i].BlobsFetched
		reused += sums[i].BlobsReused
		if tags, _ := tree.Fixture(root).Tags(repo); len(tags) != 1 {
			t.Errorf("%s: tags %v", repo, tags)
		}
		checkBlobs(t, root, repo)
	}
	// 3 configs + 3 own layers + the base once; the base linked twice.
	if fetched != 7 || reused != 2 {
		t.Errorf("fetched %d blobs and reused %d, want 7 and 2", fetched, reused)
	}
	if tags, _ := tree.Fixture(root).Tags("bad"); len(tags) != 0 {
		t.Errorf("the failed job tagged %v", tags)
	}
}

// TestBatchSharesConnections: the sources of one batch share a transport
// per registry setting, so their connections are pooled, while sources
// outside a batch get their own.
func TestBatchSharesConnections(t *testing.T) {
	p := &transportPool{}
	a, b := p.get(true, time.Minute, nil), p.get(true, time.Minute, nil)
	if a != b {
		t.Error("two sources of a batch got different transports")
	}
	if p.get(false, time.Minute, nil) == a || p.get(true, time.Second, nil) == a {
		t.Error("sources with other TLS or timeout settings share a transport")
	}
	var none *transportPool
	if none.get(true, time.Minute, nil) == none.get(true, time.Minute, nil) {
		t.Error("sources outside a batch share a transport")
	}
}
