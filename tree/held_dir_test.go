package tree

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestRemoveManifestSteps: a manifest removed through its held directory
// takes the steps the removal by path takes (the way without openat2),
// in the same order, on the same paths — typed link, index.json, the
// directory's sync, then what is left and the directory — including a
// stray subdirectory in it; and a manifest directory that is a link is
// removed as a link, by path, its target left alone.
func TestRemoveManifestSteps(t *testing.T) {
	raw := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(raw)
	steps := func(viaOSRoot bool) []string {
		r := newTree(t)
		if viaOSRoot {
			WithoutOpenat2(r)
		}
		if err := r.putManifest("app", d, "application/vnd.oci.image.manifest.v1+json", raw); err != nil {
			t.Fatal(err)
		}
		stray := filepath.Join(r.manifestDir("app", d), "stray")
		if err := os.MkdirAll(stray, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stray, "f"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		trace := filepath.Join(t.TempDir(), "trace")
		if err := armCrashPoints("", trace); err != nil {
			t.Fatal(err)
		}
		defer func() {
			crash.trace.Close()
			crash.trace, crash.n, crashArmed = nil, 0, false
		}()
		if err := r.removeManifest("app", d); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(r.manifestDir("app", d)); err == nil {
			t.Errorf("os.Root %v: the manifest's directory is left", viaOSRoot)
		}
		var out []string
		for _, line := range readTrace(t, trace) {
			out = append(out, strings.ReplaceAll(line, r.Dir(), "ROOT"))
		}
		return out
	}
	held, byPath := steps(false), steps(true)
	if !slices.Equal(held, byPath) {
		t.Errorf("steps through the held directory:\n%s\nby path:\n%s", strings.Join(held, "\n"), strings.Join(byPath, "\n"))
	}
	if len(held) != 7 {
		t.Errorf("%d steps, want 7 (typed link, index.json, sync, .htaccess, stray/f, stray, the directory):\n%s", len(held), strings.Join(held, "\n"))
	}

	r := newTree(t)
	if err := r.putManifest("app", d, "application/vnd.oci.image.manifest.v1+json", raw); err != nil {
		t.Fatal(err)
	}
	dir := r.manifestDir("app", d)
	aside := filepath.Join(r.Dir(), "v2", "aside")
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../aside", dir); err != nil {
		t.Fatal(err)
	}
	if err := r.removeManifest("app", d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Error("the link is left")
	}
	if _, err := os.Stat(filepath.Join(aside, headersFile)); err != nil {
		t.Errorf("the link's target lost its .htaccess: %v", err)
	}
}

// TestRemoveBlobsSteps: Maint.Remove unlinks blobs through the held
// blobs directory in the steps the removal by path takes, under both
// names (TripleO's ".gz" too), and counts the same bytes freed: a blob
// whose last link goes, not one still linked into another repository.
func TestRemoveBlobsSteps(t *testing.T) {
	run := func(viaOSRoot bool) ([]string, RemovalReport) {
		r := newTree(t)
		if viaOSRoot {
			WithoutOpenat2(r)
		}
		m := gcPutManifest(t, r, "app", `{"schemaVersion":2}`)
		gcPutManifest(t, r, "app", `{"schemaVersion":2,"kept":1}`)
		alone := gcPutBlob(t, r, "app", []byte("alone"))
		shared := gcPutBlob(t, r, "app", []byte("shared"))
		if err := os.MkdirAll(filepath.Dir(r.blobPath("other", shared)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(r.blobPath("app", shared), r.blobPath("other", shared)); err != nil {
			t.Fatal(err)
		}
		legacy := gcPutBlob(t, r, "app", []byte("legacy"))
		if err := os.Rename(r.blobPath("app", legacy), r.legacyBlobPath("app", legacy)); err != nil {
			t.Fatal(err)
		}
		trace := filepath.Join(t.TempDir(), "trace")
		if err := armCrashPoints("", trace); err != nil {
			t.Fatal(err)
		}
		defer func() {
			crash.trace.Close()
			crash.trace, crash.n, crashArmed = nil, 0, false
		}()
		var done RemovalReport
		err := r.Maintain(MaintainOptions{}, func(mt *Maint) (err error) {
			done, err = mt.Remove("app", Removal{Manifests: []digest.Digest{m}, Blobs: []digest.Digest{alone, legacy, shared}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []digest.Digest{alone, legacy, shared} {
			for _, p := range []string{r.blobPath("app", d), r.legacyBlobPath("app", d)} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("os.Root %v: %s left", viaOSRoot, p)
				}
			}
		}
		var out []string
		for _, line := range readTrace(t, trace) {
			out = append(out, strings.ReplaceAll(line, r.Dir(), "ROOT"))
		}
		return out, done
	}
	held, heldDone := run(false)
	byPath, byPathDone := run(true)
	if !slices.Equal(held, byPath) {
		t.Errorf("steps through the held directory:\n%s\nby path:\n%s", strings.Join(held, "\n"), strings.Join(byPath, "\n"))
	}
	if !slices.ContainsFunc(held, func(l string) bool { return strings.HasSuffix(l, legacyBlobExt) && strings.Contains(l, " unlink ") }) {
		t.Errorf("no step unlinks a %s name:\n%s", legacyBlobExt, strings.Join(held, "\n"))
	}
	want := RemovalReport{ManifestsRemoved: 1, BlobsRemoved: 3, BytesFreed: int64(len("alone") + len("legacy"))}
	if heldDone != want || byPathDone != want {
		t.Errorf("Remove = %+v held, %+v by path; want %+v", heldDone, byPathDone, want)
	}
}
