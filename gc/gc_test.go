package gc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"

	"github.com/opencontainers/go-digest"
)

// item is a manifest or blob of a repository a test expects kept or gone.
type item struct {
	repo string
	d    desc
	blob bool
}

func m(repo string, d desc) item { return item{repo: repo, d: d} }
func b(repo string, d desc) item { return item{repo: repo, d: d, blob: true} }

func (it item) String() string {
	kind := "manifest"
	if it.blob {
		kind = "blob"
	}
	return fmt.Sprintf("%s %s of %s", kind, it.d.Digest, it.repo)
}

func (tr *fixture) exists(it item) bool {
	if it.blob {
		return tr.hasBlob(it.repo, it.d)
	}
	return tr.hasManifest(it.repo, it.d)
}

// later is a clock two hours ahead: everything written by the test is
// past the default grace period.
func later() time.Time { return time.Now().Add(2 * time.Hour) }

// TestGCCollect builds trees with tree's writers, changes them as users
// do (deleting tags), collects, and checks what must stay and what must
// be gone. Every remaining tag must resolve: the tree verifies clean.
func TestGCCollect(t *testing.T) {
	base := layer("base", 3000)
	tests := []struct {
		name  string
		opts  Options
		build func(tr *fixture) (kept, gone []item)
	}{
		{
			name: "deleted single-arch tag",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				l1, l2 := layer("one", 100), layer("two", 200)
				v1 := tr.image("app", "v1", base, l1)
				v2 := tr.image("app", "v2", base, l2)
				tr.tag("app", "v1", v1)
				tr.tag("app", "v2", v2)
				tr.untag("app", "v1")
				return []item{m("app", v2), b("app", desc{Digest: digest.FromBytes(base)}), b("app", desc{Digest: digest.FromBytes(l2)})},
					[]item{m("app", v1), b("app", desc{Digest: digest.FromBytes(l1)})}
			},
		},
		{
			// TripleO deleted the arm64 child of the remaining tag (§3.2).
			name: "multi-arch tags sharing a child",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				amd := tr.image("app", "amd64", base, layer("amd", 100))
				arm := tr.image("app", "arm64", layer("arm", 100))
				amd2 := tr.image("app", "amd64-2", layer("amd2", 100))
				idx1 := tr.index("app", ociIndex, map[string]desc{"amd64": amd, "arm64": arm})
				idx2 := tr.index("app", dockerList, map[string]desc{"amd64": amd2, "arm64": arm})
				tr.tag("app", "multi", idx1, amd)
				tr.tag("app", "multi2", idx2, amd2)
				tr.untag("app", "multi2")
				return []item{m("app", idx1), m("app", amd), m("app", arm), b("app", desc{Digest: digest.FromBytes(layer("arm", 100))})},
					[]item{m("app", idx2), m("app", amd2), b("app", desc{Digest: digest.FromBytes(layer("amd2", 100))})}
			},
		},
		{
			name: "nested index keeps grandchildren",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				img := tr.image("app", "deep", layer("deep", 100))
				inner := tr.index("app", ociIndex, map[string]desc{"arm64": img})
				outer := tr.index("app", ociIndex, map[string]desc{"amd64": inner})
				tr.tag("app", "v1", outer)
				return []item{m("app", outer), m("app", inner), m("app", img), b("app", desc{Digest: digest.FromBytes(layer("deep", 100))})}, nil
			},
		},
		{
			name: "referrers live by their subject",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				s := tr.image("app", "subject", layer("s", 100))
				gone := tr.image("app", "gone", layer("g", 100))
				sig := tr.referrer("app", s, "sig-of-subject")
				sigGone := tr.referrer("app", gone, "sig-of-gone")
				tr.tag("app", "v1", s)
				tr.tag("app", "old", gone)
				tr.untag("app", "old")
				return []item{m("app", s), m("app", sig.manifest), b("app", sig.blob)},
					[]item{m("app", gone), m("app", sigGone.manifest), b("app", sigGone.blob)}
			},
		},
		{
			name: "schema1 fsLayers",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				l := tr.blob("app", layer("s1", 100))
				orphan := tr.blob("app", layer("orphan", 100))
				raw := fmt.Appendf(nil, `{"schemaVersion":1,"name":"app","tag":"v1","architecture":"amd64","fsLayers":[{"blobSum":%q}],"history":[{"v1Compatibility":"{}"}]}`, l.Digest)
				s1 := tr.raw("app", schema1, raw)
				tr.tag("app", "v1", s1)
				return []item{m("app", s1), b("app", l)}, []item{b("app", orphan)}
			},
		},
		{
			name: "legacy .gz blobs are the blob",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				img := tr.image("app", "legacy", layer("kept", 100))
				orphan := tr.blob("app", layer("orphan", 100))
				kept := desc{Digest: digest.FromBytes(layer("kept", 100))}
				for _, d := range []digest.Digest{kept.Digest, orphan.Digest} {
					if err := os.Rename(tr.fx.BlobPath("app", d), tr.fx.LegacyBlobPath("app", d)); err != nil {
						tr.t.Fatal(err)
					}
				}
				tr.tag("app", "v1", img)
				return []item{m("app", img), b("app", kept)}, []item{b("app", orphan)}
			},
		},
		{
			name: "untagged manifests within the grace period stay",
			opts: Options{Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				fresh := tr.image("app", "fresh", layer("fresh", 100))
				orphan := tr.blob("app", layer("orphan", 100))
				tr.tag("app", "v1", tr.image("app", "tagged"))
				return []item{m("app", fresh), b("app", desc{Digest: digest.FromBytes(layer("fresh", 100))})}, []item{b("app", orphan)}
			},
		},
		{
			name: "untagged keep",
			opts: Options{Now: later, Grace: time.Hour, Untagged: KeepUntagged},
			build: func(tr *fixture) ([]item, []item) {
				old := tr.image("app", "old", layer("old", 100))
				orphan := tr.blob("app", layer("orphan", 100))
				tr.tag("app", "v1", tr.image("app", "tagged"))
				return []item{m("app", old), b("app", desc{Digest: digest.FromBytes(layer("old", 100))})}, []item{b("app", orphan)}
			},
		},
		{
			name: "a repository without tags goes",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				img := tr.image("gone/app", "v1", base)
				tr.tag("gone/app", "v1", img)
				tr.untag("gone/app", "v1")
				kept := tr.image("kept", "v1", base)
				tr.tag("kept", "v1", kept)
				return []item{m("kept", kept), b("kept", desc{Digest: digest.FromBytes(base)})},
					[]item{m("gone/app", img), b("gone/app", desc{Digest: digest.FromBytes(base)})}
			},
		},
		{
			name: "debris of an interrupted removal",
			opts: Options{Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				img := tr.image("app", "v1")
				tr.tag("app", "v1", img)
				half := tr.image("app", "half")
				if err := os.Remove(tr.fx.ManifestPath("app", half.Digest)); err != nil {
					tr.t.Fatal(err)
				}
				return []item{m("app", img)}, []item{m("app", half)}
			},
		},
		{
			name: "foreign layers are not missing",
			opts: Options{Now: later, Grace: time.Hour},
			build: func(tr *fixture) ([]item, []item) {
				cfg := tr.blob("app", []byte(`{"config":{}}`))
				cfg.MediaType = ociConfig
				foreign := desc{MediaType: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", Digest: digest.FromString("elsewhere"), Size: 9}
				img := tr.manifest("app", ociManifest, map[string]any{"schemaVersion": 2, "mediaType": ociManifest, "config": cfg, "layers": []desc{foreign}})
				tr.tag("app", "v1", img)
				return []item{m("app", img), b("app", cfg)}, nil
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTree(t)
			kept, gone := tt.build(tr)
			rep, err := Collect(tr.root, tt.opts)
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			for _, it := range kept {
				if !tr.exists(it) {
					t.Errorf("%s was deleted, want kept", it)
				}
			}
			for _, it := range gone {
				if tr.exists(it) {
					t.Errorf("%s is still there, want it deleted", it)
				}
			}
			if len(gone) > 0 && rep.ManifestsDeleted+rep.BlobsDeleted == 0 {
				t.Errorf("report %+v deletes nothing", rep)
			}
			tr.verify()
			again, err := Collect(tr.root, tt.opts)
			if err != nil || again.ManifestsDeleted+again.BlobsDeleted+again.RepositoriesRemoved != 0 || again.BytesFreed != 0 {
				t.Errorf("second Collect: %+v, %v; want nothing left to do", again, err)
			}
		})
	}
}

// referrer is an artifact manifest whose subject is s.
type referrerOf struct{ manifest, blob desc }

func (tr *fixture) referrer(repo string, s desc, name string) referrerOf {
	tr.t.Helper()
	blob := tr.blob(repo, []byte(name))
	empty := tr.blob(repo, []byte("{}"))
	empty.MediaType = "application/vnd.oci.empty.v1+json"
	man := tr.manifest(repo, ociManifest, map[string]any{
		"schemaVersion": 2, "mediaType": ociManifest, "artifactType": "application/vnd.example.sig",
		"config": empty, "layers": []desc{blob}, "subject": s,
	})
	// as an export does, before any tag
	if err := tr.fx.UpdateReferrers(repo, s.Digest); err != nil {
		tr.t.Fatal(err)
	}
	return referrerOf{manifest: man, blob: blob}
}

// TestGCRemovesEmptyRepository: the repository directory goes, with
// its empty parents, and _catalog and tags/list are rewritten.
func TestGCRemovesEmptyRepository(t *testing.T) {
	tr := newTree(t)
	tr.tag("ns/gone", "v1", tr.image("ns/gone", "v1", layer("x", 10)))
	tr.tag("other", "v1", tr.image("other", "v1"))
	tr.untag("ns/gone", "v1")
	rep, err := Collect(tr.root, Options{Now: later, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RepositoriesRemoved != 1 || rep.Repositories != 2 {
		t.Errorf("report %+v: want 2 scanned, 1 removed", rep)
	}
	for _, p := range []string{tr.fx.RepoDir("ns/gone"), filepath.Dir(tr.fx.RepoDir("ns/gone"))} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v, want it gone", p, err)
		}
	}
	repos, err := tr.fx.ReadCatalog()
	if err != nil || !slices.Equal(repos, []string{"other"}) {
		t.Errorf("_catalog %v %v, want [other]", repos, err)
	}
	tr.verify()
}

// TestGCRepairsInterruptedWrites: a delete killed between the type
// map and tags/list, or between tags/list and _catalog, leaves lists that
// disagree with the tree; the next collection rewrites them.
func TestGCRepairsInterruptedWrites(t *testing.T) {
	tr := newTree(t)
	img := tr.image("app", "v1")
	tr.tag("app", "v1", img)
	tr.tag("app", "v2", img)
	tr.tag("gone", "v1", tr.image("gone", "v1"))
	// As if killed right after the type maps went.
	for _, p := range []string{tr.fx.TypeMapPath("app", "v2"), tr.fx.TypeMapPath("gone", "v1")} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := Verify(tr.root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 2 {
		t.Errorf("verify before gc: %v, want tags/list of app and of gone", rep.Problems)
	}
	if _, err := Collect(tr.root, Options{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	tr.verify()
}

// TestGCProblemsSpareTheRepository: a tag naming a missing manifest
// or an unparseable manifest is reported, and that repository is not
// swept (what it references is unknown); others are.
func TestGCProblemsSpareTheRepository(t *testing.T) {
	tr := newTree(t)
	broken := tr.image("broken", "v1")
	tr.tag("broken", "v1", broken)
	orphanBroken := tr.blob("broken", layer("orphan", 10))
	if err := tr.fx.RemoveManifest("broken", broken.Digest); err != nil {
		t.Fatal(err)
	}
	bad := tr.raw("bad", ociManifest, []byte(`{"schemaVersion":2,"config":{"digest":"sha256:nothex"}}`))
	tr.tag("bad", "v1", bad)
	orphanBad := tr.blob("bad", layer("orphan", 10))
	tr.tag("fine", "v1", tr.image("fine", "v1"))
	orphanFine := tr.blob("fine", layer("orphan", 10))

	rep, err := Collect(tr.root, Options{Now: later, Grace: time.Hour})
	var pe *ProblemsError
	if !errors.As(err, &pe) || len(pe.Problems) != 2 {
		t.Fatalf("Collect: %v, want 2 problems", err)
	}
	for _, want := range []string{tr.fx.TypeMapPath("broken", "v1"), tr.fx.ManifestPath("bad", bad.Digest)} {
		if !slices.ContainsFunc(rep.Problems, func(p Problem) bool { return p.Path == want }) {
			t.Errorf("problems %v lack %s", rep.Problems, want)
		}
	}
	if !tr.hasBlob("broken", orphanBroken) || !tr.hasBlob("bad", orphanBad) {
		t.Error("a repository with problems was swept")
	}
	if tr.hasBlob("fine", orphanFine) {
		t.Error("a repository without problems was not swept")
	}
}

// TestGCBytesFreedCountsInodes: a blob hard-linked into several
// repositories frees its bytes with its last link, not before.
func TestGCBytesFreedCountsInodes(t *testing.T) {
	tr := newTree(t)
	base := layer("base", 5000)
	ua, ub := layer("a", 700), layer("b", 900)
	a := tr.image("a", "a", base, ua)
	bb := tr.image("b", "b", base, ub)
	tr.tag("a", "v1", a)
	tr.tag("b", "v1", bb)
	cfgSize := func(repo string, d desc) int64 {
		raw, err := tr.fx.ReadManifest(repo, d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		r, err := distribution.ParseReferences(raw)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(tr.fx.BlobPath(repo, r.Blobs[0]))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	wantA := int64(len(ua)) + cfgSize("a", a)
	wantB := int64(len(ub)+len(base)) + cfgSize("b", bb)

	tr.untag("a", "v1")
	rep, err := Collect(tr.root, Options{Now: later, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BytesFreed != wantA || rep.BlobsDeleted != 3 {
		t.Errorf("after deleting a: freed %d bytes in %d blobs, want %d in 3 (the base layer is still linked from b)", rep.BytesFreed, rep.BlobsDeleted, wantA)
	}
	tr.untag("b", "v1")
	rep, err = Collect(tr.root, Options{Now: later, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rep.BytesFreed != wantB {
		t.Errorf("after deleting b: freed %d bytes, want %d (the base layer's last link went)", rep.BytesFreed, wantB)
	}
}

// TestGCDryRun changes nothing, and reports exactly what the real run then
// does; a second run finds nothing.
func TestGCDryRun(t *testing.T) {
	tr := newTree(t)
	base := layer("base", 4000)
	for _, repo := range []string{"a", "b", "c"} {
		tr.tag(repo, "v1", tr.image(repo, repo+"1", base, layer(repo+"1", 100)))
		tr.tag(repo, "v2", tr.image(repo, repo+"2", base, layer(repo+"2", 100)))
	}
	tr.untag("a", "v1")
	tr.untag("b", "v1")
	tr.untag("b", "v2")
	tr.blob("c", layer("orphan", 300))
	if err := os.WriteFile(tr.fx.LegacyBlobPath("c", digest.FromBytes(layer("legacy", 50))), layer("legacy", 50), 0o644); err != nil {
		t.Fatal(err)
	}

	before := treeSnapshot(t, tr.root.Dir())
	o := Options{Now: later, Grace: time.Hour, DryRun: true}
	dry, err := Collect(tr.root, o)
	if err != nil {
		t.Fatal(err)
	}
	if after := treeSnapshot(t, tr.root.Dir()); after != before {
		t.Fatalf("a dry run changed the tree:\n--- before\n%s\n--- after\n%s", before, after)
	}
	o.DryRun = false
	real, err := Collect(tr.root, o)
	if err != nil {
		t.Fatal(err)
	}
	dry.DryRun = false
	if fmt.Sprintf("%+v", *dry) != fmt.Sprintf("%+v", *real) {
		t.Errorf("dry run %+v, real run %+v", *dry, *real)
	}
	if real.BytesFreed == 0 || real.RepositoriesRemoved != 1 {
		t.Errorf("real run %+v: want bytes freed and b removed", *real)
	}
	again, err := Collect(tr.root, o)
	if err != nil || again.BytesFreed != 0 || again.BlobsDeleted != 0 || again.ManifestsDeleted != 0 {
		t.Errorf("second run %+v %v, want nothing freed", again, err)
	}
	tr.verify()
}

// treeSnapshot describes dir, our own state (locks) aside.
func treeSnapshot(t *testing.T, dir string) string {
	t.Helper()
	return testtree.Snapshot(t, dir, ".image-serve")
}

// TestGCGraceUsesCtime: an untagged manifest whose mtime is old but which
// was (re)linked into the tree just now stays: link(2) and rename(2)
// update ctime, not mtime (serving-notes §3.15).
func TestGCGraceUsesCtime(t *testing.T) {
	tr := newTree(t)
	tr.tag("app", "v1", tr.image("app", "tagged"))
	fresh := tr.image("app", "fresh", layer("fresh", 100))
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(tr.fx.ManifestPath("app", fresh.Digest), old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Collect(tr.root, Options{Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if !tr.hasManifest("app", fresh) {
		t.Fatal("an untagged manifest with an old mtime but a fresh ctime was deleted inside the grace period")
	}
	if _, err := Collect(tr.root, Options{Grace: time.Hour, Now: later}); err != nil {
		t.Fatal(err)
	}
	if tr.hasManifest("app", fresh) {
		t.Fatal("an untagged manifest past the grace period was kept")
	}
}

// TestGCRunning: a second collection does nothing and says so.
func TestGCRunning(t *testing.T) {
	tr := newTree(t)
	l, err := tr.fx.TryLockGC()
	if err != nil || l == nil {
		t.Fatalf("TryLockGC: %v %v", l, err)
	}
	defer l.Unlock()
	if _, err := Collect(tr.root, Options{}); !errors.Is(err, ErrRunning) {
		t.Fatalf("Collect while another runs: %v, want ErrRunning", err)
	}
}

// TestGCWaitsForExports: an export holds the tree lock shared from
// its first blob to its tag. A collection started in between waits, so
// the blob written before the manifest landed survives.
func TestGCWaitsForExports(t *testing.T) {
	tr := newTree(t)
	export, err := tr.fx.LockShared()
	if err != nil {
		t.Fatal(err)
	}
	l := tr.blob("app", layer("in-flight", 1000)) // no manifest names it yet
	done := make(chan error, 1)
	waiting := make(chan struct{})
	var once sync.Once
	root := tr.root.WithWaits(tree.Waits{Notify: func(string) { once.Do(func() { close(waiting) }) }})
	go func() {
		_, err := Collect(root, Options{Grace: 0})
		done <- err
	}()
	// Tag the blob only once Collect says it waits for the tree lock, so
	// that a Collect that did not wait would have found it unreferenced.
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("Collect ran while an export held the tree: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("Collect neither waited nor ran within a minute")
	}
	select {
	case err := <-done:
		t.Fatalf("Collect ran while an export held the tree: %v", err)
	default:
	}
	img := tr.image("app", "in-flight", layer("in-flight", 1000))
	tr.tag("app", "v1", img)
	export.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !tr.hasBlob("app", l) || !tr.hasManifest("app", img) {
		t.Fatal("the export's blob or manifest was collected")
	}
	tr.verify()
}

// TestGCRemoveBlobFreed: tree.RemoveBlob frees an inode's bytes only with
// its last link.
func TestGCRemoveBlobFreed(t *testing.T) {
	tr := newTree(t)
	d := tr.blob("a", layer("shared", 1234))
	tr.blob("b", layer("shared", 1234))
	for _, tc := range []struct {
		repo string
		want int64
	}{{"a", 0}, {"b", 1234}, {"b", 0}} {
		got, err := tr.fx.RemoveBlob(tc.repo, d.Digest)
		if err != nil || got != tc.want {
			t.Errorf("RemoveBlob(%s) = %d, %v; want %d", tc.repo, got, err, tc.want)
		}
	}
}

// TestGCRepairsLinksBeforeSweep: a tag update killed between nginx's links
// and the type map leaves the links naming a manifest no tag names. gc
// removes that manifest, and must first point the links back at what the
// type map names, or nginx would serve the tag from a removed directory.
// A collection with nothing to remove from a repository in step reads its
// links and leaves them alone.
func TestGCRepairsLinksBeforeSweep(t *testing.T) {
	tr := newTree(t)
	v1 := tr.image("app", "v1", layer("one", 100))
	v2 := tr.image("app", "v2", layer("two", 100))
	tr.tag("app", "live", v1)
	for _, p := range []string{tr.fx.TagLinkPath("app", "live"), tr.fx.FallbackLinkPath("app", "live")} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../"+v2.Digest.String(), p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Collect(tr.root, Options{Now: later, Grace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if tr.hasManifest("app", v2) {
		t.Fatal("the untagged manifest was kept")
	}
	for _, p := range []string{tr.fx.TagLinkPath("app", "live"), tr.fx.FallbackLinkPath("app", "live")} {
		if target, err := os.Readlink(p); err != nil || target != "../"+v1.Digest.String() {
			t.Errorf("%s -> %q (%v), want the tagged manifest %s", p, target, err, v1.Digest)
		}
	}
	tr.verify()
}
