package tree

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

const gcOCIManifest = "application/vnd.oci.image.manifest.v1+json"

func gcPutBlob(t *testing.T, r *Root, repo string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	if _, _, err := Fixture(r).PutBlob(repo, d, int64(len(content)), false, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(content)), nil
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

func gcPutManifest(t *testing.T, r *Root, repo, body string) digest.Digest {
	t.Helper()
	d := digest.FromString(body)
	if err := r.putManifest(repo, d, gcOCIManifest, []byte(body)); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestGCRemoveManifest: everything in the digest directory goes, nginx's
// typed link too, and the manifest leaves the listing.
func TestGCRemoveManifest(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2}`)
	keep := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2,"x":1}`)
	if typed, ok := r.typedManifestPath("ns/app", d, gcOCIManifest); !ok || !r.isFile(typed) {
		t.Fatalf("no typed link %s to test with", typed)
	}
	if err := r.removeManifest("ns/app", d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.manifestDir("ns/app", d)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("digest directory: %v, want it gone", err)
	}
	ds, err := r.manifestDigests("ns/app")
	if err != nil || !slices.Equal(ds, []digest.Digest{keep}) {
		t.Errorf("ManifestDigests = %v, %v; want only %s", ds, err, keep)
	}
	if err := r.removeManifest("ns/app", d); err != nil {
		t.Errorf("removing it again: %v", err)
	}
}

// TestGCManifestDigestsListsDebris: a digest directory whose index.json is
// gone is listed (a collector must remove it) but not complete.
func TestGCManifestDigestsListsDebris(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2}`)
	if err := os.Remove(r.manifestPath("ns/app", d)); err != nil {
		t.Fatal(err)
	}
	ds, err := r.manifestDigests("ns/app")
	if err != nil || !slices.Equal(ds, []digest.Digest{d}) {
		t.Errorf("ManifestDigests = %v, %v; want %s", ds, err, d)
	}
	if r.manifestComplete("ns/app", d) {
		t.Error("a directory without index.json is complete")
	}
	if _, err := r.readManifest("ns/app", d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadManifest: %v, want not exist", err)
	}
}

// TestGCBlobsAndRemoveBlob: legacy names are the blob; the last link frees
// the bytes.
func TestGCBlobsAndRemoveBlob(t *testing.T) {
	r := newTree(t)
	shared := gcPutBlob(t, r, "a", []byte("shared content"))
	gcPutBlob(t, r, "b", []byte("shared content"))
	legacy := gcPutBlob(t, r, "a", []byte("legacy layer"))
	if err := os.Rename(r.blobPath("a", legacy), r.legacyBlobPath("a", legacy)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(r.blobPath("a", legacy)), ".tmp123"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bs, err := r.blobs("a")
	if err != nil || len(bs) != 2 {
		t.Fatalf("Blobs = %v, %v; want the plain and the legacy blob, no temporary file", bs, err)
	}
	for _, b := range bs {
		if b.Legacy != (b.Digest == legacy) {
			t.Errorf("blob %+v: wrong legacy flag", b)
		}
		if !r.isFile(r.blobFilePath("a", b)) {
			t.Errorf("BlobFilePath(%+v) = %s: no such file", b, r.blobFilePath("a", b))
		}
	}
	ins, err := r.blobInodes("a", shared)
	if err != nil || len(ins) != 1 || ins[0].Links != 2 {
		t.Errorf("BlobInodes = %+v, %v; want one inode with 2 links", ins, err)
	}
	for _, tc := range []struct {
		repo string
		d    digest.Digest
		want int64
	}{{"a", shared, 0}, {"a", legacy, int64(len("legacy layer"))}, {"b", shared, int64(len("shared content"))}} {
		if got, err := r.removeBlob(tc.repo, tc.d); err != nil || got != tc.want {
			t.Errorf("RemoveBlob(%s, %s) = %d, %v; want %d", tc.repo, tc.d, got, err, tc.want)
		}
	}
}

// TestGCRemoveRepo: only an empty repository goes, with empty parents but
// never a nested repository.
func TestGCRemoveRepo(t *testing.T) {
	r := newTree(t)
	gcPutBlob(t, r, "ns/full", []byte("x"))
	gcPutBlob(t, r, "ns/parent/child", []byte("y"))
	d := gcPutManifest(t, r, "ns/parent", `{"schemaVersion":2}`)
	if gone, err := r.removeRepo("ns/full"); gone || err != nil {
		t.Errorf("RemoveRepo of a repository with a blob: %v %v", gone, err)
	}
	if err := r.removeManifest("ns/parent", d); err != nil {
		t.Fatal(err)
	}
	if gone, err := r.removeRepo("ns/parent"); !gone || err != nil {
		t.Fatalf("RemoveRepo of an empty repository: %v %v", gone, err)
	}
	if r.isRepoDir(r.repoDir("ns/parent")) {
		t.Error("ns/parent is still a repository")
	}
	repos, err := r.storedRepositories()
	if err != nil || !slices.Equal(repos, []string{"ns/full", "ns/parent/child"}) {
		t.Errorf("StoredRepositories = %v, %v", repos, err)
	}
	if _, err := r.removeBlob("ns/parent/child", digest.FromString("y")); err != nil {
		t.Fatal(err)
	}
	if gone, err := r.removeRepo("ns/parent/child"); !gone || err != nil {
		t.Fatalf("RemoveRepo of the nested repository: %v %v", gone, err)
	}
	if _, err := os.Stat(r.repoDir("ns/parent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty parent ns/parent: %v, want it gone", err)
	}
	if _, err := os.Stat(r.repoDir("ns")); err != nil {
		t.Errorf("ns, which holds ns/full: %v", err)
	}
}

// TestGCTagsInStep: tags/list and nginx's link directories are compared
// with the type maps by name; RefreshTags brings them back in step.
func TestGCTagsInStep(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2}`)
	for _, tag := range []string{"v1", "v2"} {
		if err := r.putTag("ns/app", tag, []TagVariant{{Digest: d, MediaType: gcOCIManifest}}); err != nil {
			t.Fatal(err)
		}
	}
	inStep := func() bool {
		t.Helper()
		tags, err := r.tags("ns/app")
		if err != nil {
			t.Fatal(err)
		}
		ok, err := r.tagsInStep("ns/app", tags)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !inStep() {
		t.Fatal("a freshly tagged repository is out of step")
	}
	for name, damage := range map[string]func(){
		"type map gone":  func() { os.Remove(r.typeMapPath("ns/app", "v2")) },
		"tag link gone":  func() { os.Remove(r.tagLinkPath("ns/app", "v1")) },
		"tags/list gone": func() { os.Remove(r.tagsListPath("ns/app")) },
	} {
		damage()
		if inStep() {
			t.Errorf("%s: in step", name)
		}
		if err := r.refreshTags("ns/app"); err != nil {
			t.Fatal(err)
		}
		if !inStep() {
			t.Errorf("%s: RefreshTags did not bring the repository back in step", name)
		}
	}
}

// TestGCManifestChangedIsCtime: the age of a manifest is its ctime, which
// a touch of the mtime does not move back.
func TestGCManifestChangedIsCtime(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2}`)
	old := time.Now().Add(-72 * time.Hour)
	if err := os.Chtimes(r.manifestPath("ns/app", d), old, old); err != nil {
		t.Fatal(err)
	}
	changed, err := r.manifestChanged("ns/app", d)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(changed) > time.Minute {
		t.Errorf("ManifestChanged = %v: it follows the mtime", changed)
	}
}

// TestGCBlobLocks: lock files of blobs are listed and removed by digest.
func TestGCBlobLocks(t *testing.T) {
	r := newTree(t)
	d := gcPutBlob(t, r, "ns/app", []byte("locked once"))
	ds, err := r.blobLocks()
	if err != nil || !slices.Equal(ds, []digest.Digest{d}) {
		t.Fatalf("BlobLocks = %v, %v; want %s", ds, err, d)
	}
	if err := r.removeBlobLock(d); err != nil {
		t.Fatal(err)
	}
	if ds, _ := r.blobLocks(); len(ds) != 0 {
		t.Errorf("BlobLocks after the removal = %v", ds)
	}
	l, err := r.tryLockGC()
	if err != nil || l == nil {
		t.Fatalf("TryLockGC: %v %v", l, err)
	}
	defer l.Unlock()
	if l2, err := r.tryLockGC(); l2 != nil || err != nil {
		t.Errorf("a second TryLockGC: %v %v, want nil nil", l2, err)
	}
	if ds, _ := r.blobLocks(); len(ds) != 0 {
		t.Errorf("BlobLocks lists gc.lock: %v", ds)
	}
}

// TestGCSweepRepoTemps removes temporary files of one repository, not
// what servers read.
func TestGCSweepRepoTemps(t *testing.T) {
	r := newTree(t)
	d := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2}`)
	stale := []string{
		filepath.Join(r.manifestDir("ns/app", d), ".index.json42"),
		filepath.Join(filepath.Dir(r.typeMapPath("ns/app", "v1")), ".v1.type-map77"),
		filepath.Join(filepath.Dir(r.blobPath("ns/app", d)), "."+d.String()+"9"),
	}
	for _, p := range stale {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := r.sweepRepoTemps("ns/app"); err != nil || n != len(stale) {
		t.Errorf("SweepRepoTemps = %d, %v; want %d", n, err, len(stale))
	}
	if !r.isFile(r.manifestPath("ns/app", d)) || !r.isFile(r.headersPath("ns/app", d)) {
		t.Error("the manifest or its .htaccess went")
	}
}

// TestGCReadSmall refuses files over the limit.
func TestGCReadSmall(t *testing.T) {
	r := newTree(t)
	p := filepath.Join(r.Dir(), "v2", "f")
	if err := os.WriteFile(p, bytes.Repeat([]byte("x"), 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := r.readSmall(p, 10000); err != nil || len(b) != 10000 {
		t.Errorf("readSmall at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := r.readSmall(p, 9999); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("readSmall over the limit: %v", err)
	}
	if _, err := r.readSmall(p+"-missing", 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("readSmall of a missing file: %v", err)
	}
}
