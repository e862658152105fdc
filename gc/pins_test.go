package gc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// pin pins manifest d of repo, as a publication with a pin does.
func (tr *fixture) pin(repo string, d desc) {
	tr.t.Helper()
	if err := tr.fx.PutPin(repo, d.Digest); err != nil {
		tr.t.Fatal(err)
	}
}

// pinned reports whether manifest d of repo is pinned.
func (tr *fixture) pinned(repo string, d desc) bool {
	tr.t.Helper()
	ok, err := tr.root.IsPinned(repo, d.Digest)
	if err != nil {
		tr.t.Fatal(err)
	}
	return ok
}

// TestGCKeepsPinned: with no grace at all, a pinned manifest stays with
// everything it reaches — an index's children, configs, layers, and the
// referrers of what it keeps — while an untagged, unpinned one goes.
func TestGCKeepsPinned(t *testing.T) {
	tr := newTree(t)
	amd := tr.image("app", "amd64", layer("amd", 100))
	arm := tr.image("app", "arm64", layer("arm", 100))
	idx := tr.index("app", ociIndex, map[string]desc{"amd64": amd, "arm64": arm})
	sig := tr.referrer("app", idx, "sig-of-pinned")
	single := tr.image("pinonly", "single", layer("single", 100))
	loose := tr.image("app", "loose", layer("loose", 100))
	tr.pin("app", idx)
	tr.pin("pinonly", single)
	tr.tag("app", "v1", tr.image("app", "v1", layer("v1", 100)))

	rep, err := Collect(tr.root, Options{Grace: 0, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	kept := []item{
		m("app", idx), m("app", amd), m("app", arm), m("app", sig.manifest), b("app", sig.blob),
		b("app", desc{Digest: digest.FromBytes(layer("amd", 100))}), b("app", desc{Digest: digest.FromBytes(layer("arm", 100))}),
		m("pinonly", single), b("pinonly", desc{Digest: digest.FromBytes(layer("single", 100))}),
	}
	for _, it := range kept {
		if !tr.exists(it) {
			t.Errorf("%s collected, but a pin keeps it", it)
		}
	}
	for _, it := range []item{m("app", loose), b("app", desc{Digest: digest.FromBytes(layer("loose", 100))})} {
		if tr.exists(it) {
			t.Errorf("%s kept, but nothing names it", it)
		}
	}
	if rep.RepositoriesRemoved != 0 {
		t.Errorf("report %+v: a repository with pins alone was removed", rep)
	}
	if !tr.pinned("app", idx) || !tr.pinned("pinonly", single) {
		t.Error("gc removed a pin")
	}
	tr.verify()
}

// TestDeletePin: REPO@DIGEST of a pinned manifest removes the pin and,
// with the prune, what only the pin kept — the repository too when
// nothing else is left; without the prune the manifest stays for gc.
func TestDeletePin(t *testing.T) {
	t.Run("prune", func(t *testing.T) {
		tr := newTree(t)
		img := tr.image("pinonly", "single", layer("single", 100))
		tr.pin("pinonly", img)
		tr.tag("other", "v1", tr.image("other", "v1", layer("other", 100)))
		rep, err := Delete(tr.root, []Ref{{Repo: "pinonly", Digest: img.Digest}}, DeleteOptions{Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		want := "pinonly@" + img.Digest.String()
		if !slices.Equal(rep.Unpinned, []string{want}) || len(rep.Deleted) != 0 || rep.Prune == nil || rep.Prune.ManifestsDeleted != 1 || rep.Prune.RepositoriesRemoved != 1 {
			t.Errorf("report %+v %+v: want %s unpinned, its manifest pruned and the repository removed", rep, rep.Prune, want)
		}
		if tr.pinned("pinonly", img) {
			t.Error("the pin stays")
		}
		if _, err := os.Stat(tr.fx.RepoDir("pinonly")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("repository after its last pin went: %v, want it gone", err)
		}
		if _, err := os.Stat(filepath.Join(tr.root.Dir(), ".image-serve", "pins", "pinonly")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("pins directory after its last pin went: %v, want it gone", err)
		}
		tr.verify()
	})
	t.Run("no prune", func(t *testing.T) {
		tr := newTree(t)
		img := tr.image("app", "single", layer("single", 100))
		tr.pin("app", img)
		rep, err := Delete(tr.root, []Ref{{Repo: "app", Digest: img.Digest}}, DeleteOptions{NoPrune: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Unpinned) != 1 || len(rep.Deleted) != 0 {
			t.Errorf("report %+v: want one unpinned, none deleted", rep)
		}
		if tr.pinned("app", img) || !tr.hasManifest("app", img) {
			t.Error("want the pin gone and the manifest kept")
		}
		if _, err := Collect(tr.root, Options{Grace: 0, Now: later}); err != nil {
			t.Fatal(err)
		}
		if tr.hasManifest("app", img) {
			t.Error("gc kept a manifest whose pin was deleted")
		}
	})
	t.Run("tagged too", func(t *testing.T) {
		tr := newTree(t)
		img := tr.image("app", "single", layer("single", 100))
		tr.tag("app", "v1", img)
		tr.pin("app", img)
		rep, err := Delete(tr.root, []Ref{{Repo: "app", Digest: img.Digest}}, DeleteOptions{Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Unpinned) != 1 || !tr.hasManifest("app", img) || tr.pinned("app", img) {
			t.Errorf("report %+v: want the pin gone and the manifest its tag names kept", rep)
		}
		tr.verify()
	})
	t.Run("unpinned digest deletes the manifest", func(t *testing.T) {
		tr := newTree(t)
		kept := tr.image("app", "kept", layer("kept", 100))
		gone := tr.image("app", "gone", layer("gone", 100))
		tr.pin("app", kept)
		rep, err := Delete(tr.root, []Ref{{Repo: "app", Digest: gone.Digest}}, DeleteOptions{Grace: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rep.Deleted, []string{"app@" + gone.Digest.String()}) || len(rep.Unpinned) != 0 {
			t.Errorf("report %+v: want the unpinned manifest deleted", rep)
		}
		if tr.hasManifest("app", gone) || !tr.hasManifest("app", kept) || !tr.pinned("app", kept) {
			t.Error("want the unpinned manifest gone, the pinned one and its pin kept")
		}
	})
	t.Run("child of a pinned index is refused", func(t *testing.T) {
		tr := newTree(t)
		amd := tr.image("app", "amd64", layer("amd", 100))
		idx := tr.index("app", ociIndex, map[string]desc{"amd64": amd})
		tr.pin("app", idx)
		_, err := Delete(tr.root, []Ref{{Repo: "app", Digest: amd.Digest}}, DeleteOptions{Grace: time.Hour})
		var re *ReferencedError
		if !errors.As(err, &re) || !tr.hasManifest("app", amd) {
			t.Errorf("delete of a pinned index's child: %v, want it refused", err)
		}
	})
}
