package exporter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/tree"
)

// syncRegistry is a registry of two repositories whose tags share a base
// layer: app (1.0, 1.1, 2.0-rc1, latest; latest is 1.1) and tools (a
// multi-arch index as v1, an image as v2).
func syncRegistry(t *testing.T) (*testregistry.Registry, v1.Layer) {
	reg := testregistry.Start(t)
	base := testregistry.Layer(t, 4096, types.DockerLayer)
	for _, tag := range []string{"1.0", "1.1", "2.0-rc1"} {
		img := testregistry.DockerImage(t, base, testregistry.Layer(t, 512, types.DockerLayer))
		reg.PushImage(t, "app:"+tag, img)
		if tag == "1.1" {
			reg.PushImage(t, "app:latest", img)
		}
	}
	reg.PushIndex(t, "tools:v1", types.OCIImageIndex, map[string]v1.Image{
		"amd64": testregistry.OCIImage(t, "amd64", base),
		"arm64": testregistry.OCIImage(t, "arm64", base),
	})
	reg.PushImage(t, "tools:v2", testregistry.DockerImage(t, base))
	// A cosign signature tag: never a release tag of a listing.
	reg.PushImage(t, "app:sha256-"+strings.Repeat("ab", 32)+".sig", testregistry.DockerImage(t, base))
	return reg, base
}

func syncOptions() SyncOptions {
	return SyncOptions{Export: plainHTTP()}
}

// syncAll syncs entries into root and fails the test unless every entry
// was synced.
func syncAll(t *testing.T, root *tree.Root, entries []SyncEntry, o SyncOptions) *SyncReport {
	t.Helper()
	rep, err := Sync(context.Background(), root, entries, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != SyncSynced {
			t.Errorf("%s: %s, want synced", r.Dest, r.Status)
		}
	}
	return rep
}

func statuses(rep *SyncReport) map[string]SyncStatus {
	out := map[string]SyncStatus{}
	for _, r := range rep.Results {
		out[r.Dest] = r.Status
	}
	return out
}

func TestSyncIncremental(t *testing.T) {
	reg, base := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	reg.ResetRequests()
	noRC := regexp.MustCompile(`-rc`)
	entries := []SyncEntry{
		{Entry: "app", Source: reg.Host + "/app", Dest: "mirror/app", Select: func(tag string) bool { return !noRC.MatchString(tag) }},
		{Entry: "tools", Source: reg.Host + "/tools", Dest: "mirror/tools", Tags: []string{"v1", "v2"}},
	}
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]SyncStatus{"mirror/app:1.0": SyncSynced, "mirror/app:1.1": SyncSynced, "mirror/app:latest": SyncSynced, "mirror/tools:v1": SyncSynced, "mirror/tools:v2": SyncSynced}
	if got := statuses(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first run: %v, want %v", got, want)
	}
	d, _ := base.Digest()
	if n := reg.BlobGets(d.String()); n != 1 {
		t.Errorf("the shared base layer was fetched %d times, want once", n)
	}
	// No ping: each repository's first request serves as one, and the
	// exports go through the client the listing and the HEADs opened.
	if n := reg.Requests()["GET ping"]; n != 0 {
		t.Errorf("first run: %d pings, want none", n)
	}

	// A run with nothing changed: one HEAD per tag, no manifest or blob GET.
	reg.ResetRequests()
	rep, err = Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	for dest, s := range statuses(rep) {
		if s != SyncUnchanged {
			t.Errorf("second run: %s %s, want unchanged", dest, s)
		}
	}
	reqs := reg.Requests()
	if reqs["HEAD manifests"] != 5 || reqs["GET manifests"] != 0 || reqs["GET blobs"] != 0 || reqs["HEAD blobs"] != 0 {
		t.Errorf("second run requests %v: want 5 HEAD manifests, no manifest or blob GET", reqs)
	}
	// The report counts what the registry got, and the https leg of the
	// ping of each repository, which a plain HTTP registry never answers.
	got := 0
	for _, n := range reqs {
		got += n
	}
	if rep.Requests < int64(got) || rep.Requests > int64(got+2) {
		t.Errorf("report says %d requests, the registry got %d (%v)", rep.Requests, got, reqs)
	}

	// Immutable tags the tree has: no request at all.
	reg.ResetRequests()
	immutable := []SyncEntry{entries[1]}
	immutable[0].Immutable = func(string) bool { return true }
	rep, err = Sync(ctx, root, immutable, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	for dest, s := range statuses(rep) {
		if s != SyncImmutable {
			t.Errorf("immutable run: %s %s", dest, s)
		}
	}
	if reqs := reg.Requests(); len(reqs) != 0 || rep.Requests != 0 {
		t.Errorf("immutable tags present: requests %v (report: %d), want none", reqs, rep.Requests)
	}

	// A retag upstream moves the tag, and only it.
	moved := reg.PushImage(t, "app:latest", testregistry.DockerImage(t, base, testregistry.Layer(t, 300, types.DockerLayer)))
	rep, err = Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	after := statuses(rep)
	if after["mirror/app:latest"] != SyncSynced || after["mirror/app:1.0"] != SyncUnchanged || after["mirror/tools:v1"] != SyncUnchanged {
		t.Errorf("after a retag: %v", after)
	}
	if cur, ok, err := root.TagDigest("mirror/app", "latest"); err != nil || !ok || cur.String() != moved.Digest {
		t.Errorf("mirror/app:latest names %s (%v, %v), want %s", cur, ok, err, moved.Digest)
	}
}

func TestSyncPlatformsUnchanged(t *testing.T) {
	reg, _ := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	entries := []SyncEntry{{Entry: "tools", Source: reg.Host + "/tools", Dest: "tools", Tags: []string{"v1"}, Platforms: []string{"linux/arm64"}}}
	if _, err := Sync(ctx, root, entries, syncOptions()); err != nil {
		t.Fatal(err)
	}
	reg.ResetRequests()
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	// The tree's tag names the arm64 child, the source's the index: the
	// plan tells, from manifests alone.
	if s := statuses(rep)["tools:v1"]; s != SyncUnchanged {
		t.Errorf("tools:v1 %s, want unchanged", s)
	}
	if reqs := reg.Requests(); reqs["GET blobs"] != 0 {
		t.Errorf("requests %v: want no blob GET", reqs)
	}
}

// pagedTags answers tags/list of repo from tags, two a page, with Link
// headers as distribution sends them (relative, last= and n=).
func pagedTags(reg *testregistry.Registry, repo string, tags []string) {
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/v2/"+repo+"/tags/list" {
			return false
		}
		start := 0
		if last := r.URL.Query().Get("last"); last != "" {
			start = sort.SearchStrings(tags, last) + 1
		}
		end := min(start+2, len(tags))
		if end < len(tags) {
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?last=%s&n=2>; rel="next"`, repo, tags[end-1]))
		}
		fmt.Fprintf(w, `{"name":%q,"tags":["%s"]}`, repo, strings.Join(tags[start:end], `","`))
		return true
	}
}

func TestRepositoryTagsPaginated(t *testing.T) {
	reg := testregistry.Start(t)
	tags := []string{"a", "b", "c", "d", "e"}
	pagedTags(reg, "app", tags)
	ctx := context.Background()
	repo, err := OpenRepository(ctx, reg.Host+"/app", RegistryOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	got, err := repo.Tags(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Errorf("tags %v, want every page's", got)
	}
	if n := reg.Requests()["GET tags"]; n != 3 {
		t.Errorf("%d pages asked for, want 3", n)
	}
	if _, err := repo.Tags(ctx, 4); err == nil || !strings.Contains(err.Error(), "over 4 tags") {
		t.Errorf("over the cap: %v", err)
	}
}

func TestRepositoryTagsBad(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
		want   string
	}{
		{"loop", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `</v2/app/tags/list?n=1000>; rel="next"`)
			fmt.Fprint(w, `{"tags":["a"]}`)
		}, "links back to a page it sent"},
		{"other host", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", `<http://example.com/v2/app/tags/list?last=a>; rel="next"`)
			fmt.Fprint(w, `{"tags":["a"]}`)
		}, "next page is on another host (example.com)"},
		{"garbage", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `<html>`) }, "the page does not parse"},
		{"bad tag", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"tags":["../x"]}`) }, `lists "../x"`},
		{"fails halfway", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("last") == "" {
				w.Header().Set("Link", `</v2/app/tags/list?last=a>; rel="next"`)
				fmt.Fprint(w, `{"tags":["a"]}`)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
		}, "(failed after 1 tags): authentication failed (HTTP 401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testregistry.Start(t)
			reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasSuffix(r.URL.Path, "/tags/list") {
					tc.answer(w, r)
					return true
				}
				return false
			}
			repo, err := OpenRepository(ctx, reg.Host+"/app", RegistryOptions{Insecure: true, retry: testPolicy(&waits{})})
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			_, err = repo.Tags(ctx, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "tag listing of "+reg.Host+"/app") {
				t.Errorf("error %v, want one naming the listing and saying %q", err, tc.want)
			}
		})
	}
}

// hashTree is every path under dir with its mode and, for files, its
// content's hash: equal before and after means nothing changed.
func hashTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v %d", p, fi.Mode(), fi.ModTime().UnixNano())
		if d.Type().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(c)
			b.WriteString(" " + hex.EncodeToString(sum[:]))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestSyncDryRun(t *testing.T) {
	reg, _ := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	entries := []SyncEntry{{Entry: "app", Source: reg.Host + "/app", Dest: "app", Tags: []string{"1.0"}}}
	if _, err := Sync(ctx, root, entries, syncOptions()); err != nil {
		t.Fatal(err)
	}
	before := hashTree(t, root.Dir())
	reg.ResetRequests()
	o := syncOptions()
	o.DryRun = true
	entries[0].Tags = nil
	rep, err := Sync(ctx, root, entries, o)
	if err != nil {
		t.Fatal(err)
	}
	got := statuses(rep)
	if got["app:1.0"] != SyncUnchanged || got["app:1.1"] != SyncWould || got["app:latest"] != SyncWould {
		t.Errorf("dry run: %v", got)
	}
	for _, r := range rep.Results {
		if r.Status == SyncWould && (r.Manifests != 1 || r.Blobs != 3 || r.Bytes == 0 || r.Digest == "") {
			t.Errorf("dry run of %s: %+v, want 1 manifest, 3 blobs and their bytes", r.Dest, r)
		}
	}
	if after := hashTree(t, root.Dir()); after != before {
		t.Errorf("a dry run changed the tree")
	}
	if n := reg.Requests()["GET blobs"]; n != 0 {
		t.Errorf("a dry run fetched %d blobs", n)
	}
}

func TestSyncFailures(t *testing.T) {
	reg, _ := syncRegistry(t)
	ctx := context.Background()
	entries := []SyncEntry{
		{Entry: "app", Source: reg.Host + "/app", Dest: "app", Tags: []string{"1.0"}},
		{Entry: "sync.yaml line 7: missing", Source: reg.Host + "/missing", Dest: "missing", Tags: []string{"1"}},
	}
	o := syncOptions()
	o.Export.Registry.retry = testPolicy(&waits{})

	// Without --keep-going one failure publishes nothing.
	root := newRoot(t)
	rep, err := Sync(ctx, root, entries, o)
	if err == nil || !strings.Contains(err.Error(), "sync.yaml line 7: missing: "+reg.Host+"/missing:1: not found") {
		t.Fatalf("error %v, want one naming the entry and the tag", err)
	}
	if _, ok, _ := root.TagDigest("app", "1.0"); ok {
		t.Errorf("app:1.0 published although the run failed")
	}
	if got := statuses(rep); got["missing:1"] != SyncFailed {
		t.Errorf("results %v", got)
	}

	// With it, the others go on.
	o.KeepGoing = true
	rep, err = Sync(ctx, root, entries, o)
	if err == nil {
		t.Fatal("no error")
	}
	if got := statuses(rep); got["app:1.0"] != SyncSynced || got["missing:1"] != SyncFailed {
		t.Errorf("keep going: %v", got)
	}

	// Two sources for one tree tag: refused before anything.
	clash := []SyncEntry{
		{Entry: "a", Source: reg.Host + "/app", Dest: "x", Tags: []string{"1.0"}},
		{Entry: "b", Source: reg.Host + "/tools", Dest: "x", Tags: []string{"1.0"}},
	}
	if _, err := Sync(ctx, newRoot(t), clash, o); err == nil || !strings.Contains(err.Error(), "x:1.0: both") {
		t.Errorf("clash: %v", err)
	}
}

func TestParseSourceDefaultsToLatest(t *testing.T) {
	src, err := ParseSource("docker://reg.example:5000/ns/app")
	if err != nil {
		t.Fatal(err)
	}
	if src.String() != "docker://reg.example:5000/ns/app:latest" {
		t.Errorf("source %s, want the tag latest", src)
	}
	d, err := resolveDest(src, "", "")
	if err != nil || d.String() != "ns/app:latest" {
		t.Errorf("dest %v (%v), want ns/app:latest", d, err)
	}
}

// TestSyncAtomic: with AllOrNothing, one tag of the run that fails to
// fetch keeps every other tag of the run where it was.
func TestSyncAtomic(t *testing.T) {
	reg, _ := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	bad := reg.PushImage(t, "broken:1", testregistry.DockerImage(t, testregistry.Layer(t, 700, types.DockerLayer)))
	m, err := v1.ParseManifest(strings.NewReader(string(bad.Raw)))
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0].Digest.String()
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/blobs/"+layer) {
			w.WriteHeader(http.StatusNotFound)
			return true
		}
		return false
	}
	o := syncOptions()
	o.Export.AllOrNothing = true
	o.Export.Registry.retry = testPolicy(&waits{})
	entries := []SyncEntry{
		{Entry: "app", Source: reg.Host + "/app", Dest: "app", Tags: []string{"1.0", "1.1"}},
		{Entry: "broken", Source: reg.Host + "/broken", Dest: "broken", Tags: []string{"1"}},
	}
	rep, err := Sync(ctx, root, entries, o)
	if err == nil || !strings.Contains(err.Error(), layer) {
		t.Fatalf("error %v, want one naming the missing blob", err)
	}
	for _, tag := range []string{"1.0", "1.1"} {
		if _, ok, _ := root.TagDigest("app", tag); ok {
			t.Errorf("app:%s tagged although the run was all or nothing", tag)
		}
	}
	for _, r := range rep.Results {
		if r.Status != SyncFailed {
			t.Errorf("%s: %s, want failed", r.Dest, r.Status)
		}
	}
}

// TestSyncHeadWithoutDigest: a registry whose HEAD answers no
// Docker-Content-Digest costs a GET of the manifest instead; a tag that
// has not moved still publishes nothing and fetches no blob.
func TestSyncHeadWithoutDigest(t *testing.T) {
	reg, _ := syncRegistry(t)
	root := newRoot(t)
	ctx := context.Background()
	entries := []SyncEntry{{Entry: "app", Source: reg.Host + "/app", Dest: "app", Tags: []string{"1.0", "1.1"}}}
	if _, err := Sync(ctx, root, entries, syncOptions()); err != nil {
		t.Fatal(err)
	}
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
			return true // 200, no digest
		}
		return false
	}
	reg.ResetRequests()
	rep, err := Sync(ctx, root, entries, syncOptions())
	if err != nil {
		t.Fatal(err)
	}
	for dest, s := range statuses(rep) {
		if s != SyncUnchanged {
			t.Errorf("%s: %s, want unchanged", dest, s)
		}
	}
	if reqs := reg.Requests(); reqs["GET manifests"] != 2 || reqs["GET blobs"] != 0 {
		t.Errorf("requests %v: want one manifest GET per tag and no blob", reqs)
	}
}

func TestNextLink(t *testing.T) {
	for in, want := range map[string]string{
		`</v2/a/tags/list?last=x&n=2>; rel="next"`:               "/v2/a/tags/list?last=x&n=2",
		`<https://r.example/v2/a/tags/list?last=x>; rel=next`:    "https://r.example/v2/a/tags/list?last=x",
		`</v2/a/tags/list?last=a>; rel="prev", </b>; rel="next"`: "/b",
		`</v2/a/tags/list?last=a>; type="x"; rel="next"`:         "/v2/a/tags/list?last=a",
		`</v2/a/tags/list?last=a>; rel="prev"`:                   "",
		``:                                                       "",
	} {
		if got := nextLink([]string{in}); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", in, got, want)
		}
	}
}
