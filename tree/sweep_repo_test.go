package tree

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSweepRepoTempsBothWays: the sweep of a repository removes the same
// temporary files with openat2 (each directory opened through its
// parent) and through os.Root (each by its path): those of the manifest
// and link directories, deeper directories too, and the temporary links
// of nginx's tags; it enters no directory link, neither one inside the
// tree nor one leading out, and removes nothing there or outside.
func TestSweepRepoTempsBothWays(t *testing.T) {
	for _, viaOSRoot := range []bool{false, true} {
		r := newTree(t)
		if viaOSRoot {
			WithoutOpenat2(r)
		}
		d := gcPutManifest(t, r, "ns/app", `{"schemaVersion":2}`)
		outside := t.TempDir()
		kept := []string{filepath.Join(outside, ".x123")}
		manifests := r.manifestsDir("ns/app")
		stale := []string{
			filepath.Join(r.manifestDir("ns/app", d), ".index.json42"),
			filepath.Join(manifests, ".v1.type-map77"),
			filepath.Join(manifests, tagLinksDir, ".v1123"),
			filepath.Join(manifests, "deep", "er", ".f9"),
			filepath.Join(r.repoDir("ns/app"), tagsDir, ".list5"),
		}
		other := filepath.Join(r.Dir(), "v2", "other")
		kept = append(kept, filepath.Join(other, ".y7"))
		for _, p := range append(append([]string{}, stale...), kept...) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if filepath.Base(p) == ".v1123" {
				if err := os.Symlink("../"+d.String(), p); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range [][2]string{{outside, "out"}, {"../../other", "in"}} {
			if err := os.Symlink(l[0], filepath.Join(manifests, l[1])); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := r.sweepRepoTemps("ns/app"); err != nil || n != len(stale) {
			t.Errorf("os.Root %v: sweepRepoTemps = %d, %v; want %d", viaOSRoot, n, err, len(stale))
		}
		for _, p := range stale {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("os.Root %v: %s left", viaOSRoot, p)
			}
		}
		for _, p := range kept {
			if _, err := os.Lstat(p); err != nil {
				t.Errorf("os.Root %v: %s: %v, want it kept", viaOSRoot, p, err)
			}
		}
		if !r.isFile(r.manifestPath("ns/app", d)) || !r.isFile(r.headersPath("ns/app", d)) {
			t.Errorf("os.Root %v: the manifest or its .htaccess went", viaOSRoot)
		}
	}
}
