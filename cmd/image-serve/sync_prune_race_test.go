package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
)

// TestSyncPruneTagMovedAfterPlan: sync --prune plans to delete app:1.1,
// which the file no longer names; between the plan and the delete
// (afterPrunePlan) an export re-creates app:1.1 naming another image. The
// prune leaves the tag, naming the new image, and says so; the tree
// verifies clean. Guards: a prune deleting what a concurrent export just
// published.
func TestSyncPruneTagMovedAfterPlan(t *testing.T) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 1024, types.DockerLayer)
	for _, tag := range []string{"1.0", "1.1", "2.0"} {
		reg.PushImage(t, "app:"+tag, testregistry.DockerImage(t, base, testregistry.Layer(t, 128, types.DockerLayer)))
	}
	root := filepath.Join(t.TempDir(), "root")
	both := writeFile(t, "both.yaml", fmt.Sprintf("%s:\n  tls-verify: false\n  images:\n    app: ['1.0', '1.1']\n", reg.Host))
	next := writeFile(t, "next.yaml", fmt.Sprintf("%s:\n  tls-verify: false\n  images:\n    app: ['1.0']\n", reg.Host))
	mustRun(t, "-q", "--root", root, "sync", "-f", both)

	tr, err := tree.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	planned, _, err := tr.TagDigest("app", "1.1")
	if err != nil {
		t.Fatal(err)
	}
	afterPrunePlan = func() {
		mustRun(t, "-q", "--root", root, "export", "--src-tls-verify=false", "docker://"+reg.Host+"/app:2.0", "app:1.1")
	}
	t.Cleanup(func() { afterPrunePlan = nil })

	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	if err := app.RunContext(context.Background(), permute(app, []string{"image-serve", "--root", root, "sync", "-f", next, "--prune"})); err != nil {
		t.Fatalf("sync --prune: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "pruned app:1.1") {
		t.Errorf("the moved tag was reported pruned:\n%s", out.String())
	}
	now, ok, err := tr.TagDigest("app", "1.1")
	if err != nil || !ok || now == planned {
		t.Fatalf("app:1.1: %s %v %v, want it kept, naming app:2.0's image and not %s", now, ok, err, planned)
	}
	if want, _, _ := tr.TagDigest("app", "1.0"); now == want {
		t.Errorf("app:1.1 names app:1.0's image")
	}
	mustRun(t, "--root", root, "verify")
}
