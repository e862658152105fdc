package main

import (
	"testing"

	"github.com/image-serve/image-serve/internal/legacytree"
)

// TestCrashPointsMigrate stops migrate at every durable step it takes over
// a TripleO tree — modes, .gz layers given their plain names, headers,
// typed links, type maps ranked by qs, symlink tags converted, listings
// sorted, a per-repository .htaccess removed — with the promise of
// TestCrashPoints: after each stop every tag pulls completely through
// Apache, nginx and the embedded server (nginx may lack a tag migrate is
// giving links to), and running migrate again, verify and gc end in the
// tree an uninterrupted migration leaves.
func TestCrashPointsMigrate(t *testing.T) {
	runCrashScenario(t, crashScenario{
		name: "migrate a TripleO tree",
		setup: func(t *testing.T, c *crashCase) {
			b := legacytree.New(t, c.root.Dir())
			shared := legacytree.Layer(t, 2<<10)
			b.Single("ns/api", "current", "amd64", shared)
			old := b.Untagged("ns/api", "amd64", legacytree.Layer(t, 1<<10))
			b.UnlistedSymlink("ns/api", "r2019", old.Digest, true)
			b.MultiArch("ns/compute", "current", []string{"amd64", "arm64"}, shared)
			b.Single("flat", "v1", "amd64", shared)
			b.RepoHtaccess("ns/api")
			b.Finish()
			b.Umask(0o002) // readable, but not our modes
		},
		args:   func(*crashCase) []string { return []string{"-q", "migrate"} },
		moving: []string{"ns/api:current", "ns/api:r2019", "ns/compute:current", "flat:v1"},
		steps: []string{
			`^lock \.image-serve/tree\.lock$`,
			`^chmod v2/ns/api/manifests$`,
			`^link v2/ns/api/blobs/sha256:[0-9a-f]{64}$`,
			`^link v2/ns/compute/blobs/sha256:[0-9a-f]{64}$`,
			`^rename v2/ns/api/manifests/sha256:[0-9a-f]{64}/\.htaccess$`,
			`^link v2/ns/compute/manifests/sha256:[0-9a-f]{64}/manifest\.docker-list$`,
			`^rename v2/ns/compute/manifests/\.tags-fallback/current$`,
			`^rename v2/ns/compute/manifests/current\.type-map$`,
			`^rename v2/ns/api/manifests/r2019\.type-map$`,
			`^unlink v2/ns/api/manifests/r2019$`,
			`^rename v2/ns/api/tags/list$`,
			`^unlink v2/ns/api/manifests/\.htaccess$`,
			`^rename v2/_catalog$`,
		},
		minSteps: 60,
	})
}
