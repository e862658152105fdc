package gc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

// pinTree is a tree with repository pinned holding only a pinned index
// of two images (no tag), and app with a tag and a pinned image.
type pinTree struct {
	tr                  *fixture
	idx, amd, arm, solo desc
	armLayer            digest.Digest
}

func newPinTree(t *testing.T) *pinTree {
	tr := newTree(t)
	p := &pinTree{tr: tr}
	p.amd = tr.image("pinned", "amd64", layer("amd", 100))
	p.arm = tr.image("pinned", "arm64", layer("arm", 100))
	p.armLayer = digest.FromBytes(layer("arm", 100))
	p.idx = tr.index("pinned", ociIndex, map[string]desc{"amd64": p.amd, "arm64": p.arm})
	tr.pin("pinned", p.idx)
	p.solo = tr.image("app", "solo", layer("solo", 100))
	tr.pin("app", p.solo)
	tr.tag("app", "v1", tr.image("app", "v1", layer("v1", 100)))
	return p
}

// TestVerifyPins: verify reports, at the pin's file and naming the
// repository and digest, a pin whose manifest is missing (its repository
// gone too, or corrupt) or incomplete (a child or a blob gone), and every
// entry of the pins directories that is no pin; verify --repair removes
// the debris and the pins of manifests gone for good (reported in
// Unpinned and NeedExport, each a problem left once), keeps a pin of an
// incomplete manifest (NeedExport, the problem stays), and a second
// repair finds nothing more to do. Guards: broken pins that nothing
// reported, which keep nothing and stop every collection of their
// repository.
func TestVerifyPins(t *testing.T) {
	type want struct {
		problem  string   // a verify problem's message contains it; "" for a clean tree
		at       string   // and its path ends so
		unpinned []string // REPO@DIGEST the repair removes
		need     []string // REPO@DIGEST the repair names to export again
		why      string   // the repair's why for each pin it removes contains it
		debris   int      // entries of the pins directories the repair removes
		left     bool     // a problem stays after the repair
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, p *pinTree) want
	}{
		{"healthy", func(t *testing.T, p *pinTree) want { return want{} }},
		{"pinned manifest missing", func(t *testing.T, p *pinTree) want {
			p.rm(t, p.tr.fx.ManifestDir("app", p.solo.Digest))
			ref := "app@" + p.solo.Digest.String()
			return want{problem: "pins " + ref + ", which is not in the repository", at: p.solo.Digest.String(), unpinned: []string{ref}, need: []string{ref}}
		}},
		{"pinned manifest without its index.json", func(t *testing.T, p *pinTree) want {
			p.rm(t, p.tr.fx.ManifestPath("app", p.solo.Digest))
			ref := "app@" + p.solo.Digest.String()
			return want{problem: "pins " + ref + ", which is not in the repository", at: p.solo.Digest.String(), unpinned: []string{ref}, need: []string{ref}}
		}},
		{"pinned manifest corrupt", func(t *testing.T, p *pinTree) want {
			path := p.tr.fx.ManifestPath("app", p.solo.Digest)
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, append(raw, ' '), 0o644); err != nil {
				t.Fatal(err)
			}
			ref := "app@" + p.solo.Digest.String()
			return want{problem: "not the manifest its directory names", unpinned: []string{ref}, why: "was corrupt, and is removed", need: []string{ref}}
		}},
		{"repository gone, pin left", func(t *testing.T, p *pinTree) want {
			p.rm(t, p.tr.fx.RepoDir("pinned"))
			ref := "pinned@" + p.idx.Digest.String()
			return want{problem: "pins " + ref + ", but the tree has no repository pinned", at: p.idx.Digest.String(), unpinned: []string{ref}, need: []string{ref}}
		}},
		{"child of the pinned index missing", func(t *testing.T, p *pinTree) want {
			p.rm(t, p.tr.fx.ManifestDir("pinned", p.arm.Digest))
			ref := "pinned@" + p.idx.Digest.String()
			return want{problem: "pins " + ref + ", which is incomplete: index child " + p.arm.Digest.String(), at: p.idx.Digest.String(), need: []string{ref}, left: true}
		}},
		{"layer of a pinned child missing", func(t *testing.T, p *pinTree) want {
			p.rm(t, p.tr.fx.BlobPath("pinned", p.armLayer))
			ref := "pinned@" + p.idx.Digest.String()
			return want{problem: "pins " + ref + ", which is incomplete: blob " + p.armLayer.String() + " is missing", at: p.idx.Digest.String(), need: []string{ref}, left: true}
		}},
		{"pin file not named as a digest", func(t *testing.T, p *pinTree) want {
			p.write(t, filepath.Join(p.pinsDir("app"), "sha256:short"))
			return want{problem: "no digest pin (not named as a digest)", at: "sha256:short", debris: 1}
		}},
		{"pin that is a directory", func(t *testing.T, p *pinTree) want {
			dir := filepath.Join(p.pinsDir("app"), digest.FromString("dir").String())
			p.write(t, filepath.Join(dir, "inside"))
			return want{problem: "no digest pin (not a regular file (directory))", at: digest.FromString("dir").String(), debris: 1}
		}},
		{"pin that is a symlink", func(t *testing.T, p *pinTree) want {
			link := filepath.Join(p.pinsDir("app"), digest.FromString("link").String())
			if err := os.Symlink(p.solo.Digest.String(), link); err != nil {
				t.Fatal(err)
			}
			return want{problem: "no digest pin (not a regular file (symlink))", at: digest.FromString("link").String(), debris: 1}
		}},
		{"pin that is a FIFO", func(t *testing.T, p *pinTree) want {
			fifo := filepath.Join(p.pinsDir("app"), digest.FromString("fifo").String())
			if err := syscall.Mkfifo(fifo, 0o644); err != nil {
				t.Fatal(err)
			}
			// RemoveNotRegular takes it, before the pins' own repair.
			return want{problem: "not a regular file (fifo)", at: digest.FromString("fifo").String()}
		}},
		{"no repository's pins directory", func(t *testing.T, p *pinTree) want {
			p.write(t, filepath.Join(p.pinsDir("app"), "..", "Not+A+Repo", digest.FromString("x").String()))
			p.write(t, filepath.Join(p.pinsDir("app"), "..", "loose-file"))
			return want{problem: "no digest pin (not a repository's pins directory", at: "loose-file", debris: 2}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPinTree(t)
			w := tt.damage(t, p)
			rep, err := Verify(p.tr.root, nil)
			if err != nil {
				t.Fatal(err)
			}
			if w.problem == "" && len(rep.Problems) > 0 {
				t.Errorf("problems in a healthy pinned tree: %v", rep.Problems)
			}
			if w.problem != "" && !slices.ContainsFunc(rep.Problems, func(pr Problem) bool {
				return strings.Contains(pr.Message, w.problem) && strings.HasSuffix(pr.Path, w.at)
			}) {
				t.Errorf("problems %v, want one at …%s saying %q", rep.Problems, w.at, w.problem)
			}

			rr, err := Repair(p.tr.root, nil)
			if err != nil {
				t.Fatal(err)
			}
			var unpinned []string
			for _, u := range rr.Unpinned {
				unpinned = append(unpinned, u.Ref)
				if !strings.Contains(u.Why, w.why) {
					t.Errorf("unpinned %s because %q, want it to say %q", u.Ref, u.Why, w.why)
				}
			}
			if !slices.Equal(unpinned, w.unpinned) || len(rr.RemovedPinDebris) != w.debris {
				t.Errorf("repair unpinned %v and removed %v, want %v unpinned and %d removed", rr.Unpinned, rr.RemovedPinDebris, w.unpinned, w.debris)
			}
			for _, ref := range w.need {
				if !slices.Contains(rr.NeedExport, ref) {
					t.Errorf("need export %v lacks %s", rr.NeedExport, ref)
				}
			}
			for _, ref := range w.unpinned {
				repo, d, _ := strings.Cut(ref, "@")
				if pinned, err := p.tr.root.IsPinned(repo, digest.Digest(d)); err != nil || pinned {
					t.Errorf("%s still pinned after the repair (%v)", ref, err)
				}
			}
			if got := len(rr.Verify.Problems) > 0; got != w.left {
				t.Errorf("problems left after the repair: %v, want some: %v", rr.Verify.Problems, w.left)
			}
			if n := len(w.unpinned); rr.ProblemsLeft() != len(rr.Verify.Problems)+n {
				t.Errorf("ProblemsLeft %d, want the verify's %d and the %d pins removed", rr.ProblemsLeft(), len(rr.Verify.Problems), n)
			}
			again, err := Repair(p.tr.root, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(again.Unpinned)+len(again.RemovedPinDebris) > 0 {
				t.Errorf("a second repair removed more: %+v %+v", again.Unpinned, again.RemovedPinDebris)
			}
			if !w.left {
				p.tr.verify()
			}
			if w.problem == "" || w.debris > 0 {
				// Nothing a pin kept went: the debris kept nothing.
				if !p.tr.pinned("pinned", p.idx) || !p.tr.pinned("app", p.solo) {
					t.Error("a valid pin went")
				}
			}
		})
	}
}

func (p *pinTree) pinsDir(repo string) string {
	return filepath.Dir(p.tr.fx.PinPath(repo, p.solo.Digest))
}

func (p *pinTree) rm(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

func (p *pinTree) write(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}
