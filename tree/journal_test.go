package tree

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// publishAll publishes images, failing the test on any error.
func publishAll(t *testing.T, r *Root, images ...*testImage) {
	t.Helper()
	var batch []Image
	for _, im := range images {
		batch = append(batch, im.Image)
	}
	rep, err := r.Publish(context.Background(), batch, PublishOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range rep.Images {
		if im.Err != nil {
			t.Fatal(im.Err)
		}
	}
}

// writeJournal puts j in r's journal directory, as a batch does before
// its first tag moves, and returns its path.
func writeJournal(t *testing.T, r *Root, name string, j any) string {
	t.Helper()
	if err := r.mkdirAll(r.journalDir()); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.journalDir(), name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func tagDigest(t *testing.T, r *Root, repo, tag string) digest.Digest {
	t.Helper()
	vs, err := r.currentTag(repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0].Digest
}

// TestJournalLeavesLaterTags: finishing a crashed batch moves a tag only
// from where the batch left it; a tag another writer changed since keeps
// that writer's target, forward and backward alike.
func TestJournalLeavesLaterTags(t *testing.T) {
	for _, forward := range []bool{true, false} {
		name := "forward"
		if !forward {
			name = "backward"
		}
		t.Run(name, func(t *testing.T) {
			r := newTree(t)
			a1, a2, a3 := newTestImage("a", "v1", []byte("a1")), newTestImage("a", "v2", []byte("a2")), newTestImage("a", "v3", []byte("a3"))
			b := newTestImage("b", "staged", []byte("b"))
			c1, c2 := newTestImage("c", "v1", []byte("c1")), newTestImage("c", "v2", []byte("c2"))
			publishAll(t, r, a1, a2, a3, b, c1, c2)
			// Before the crash a:live and c:live named v1; the batch moved
			// a:live to v2 and crashed before b:live and c:live. Then
			// another writer pointed a:live at v3.
			for _, put := range []struct {
				repo string
				im   *testImage
			}{{"a", a3}, {"c", c1}} {
				if err := r.putTag(put.repo, "live", put.im.Variants); err != nil {
					t.Fatal(err)
				}
			}
			j := journal{Tags: []journalTag{
				{Repo: "a", Tag: "live", Variants: a2.Variants, Existed: true, Previous: a1.Variants},
				{Repo: "b", Tag: "live", Variants: b.Variants},
				{Repo: "c", Tag: "live", Variants: c2.Variants, Existed: true, Previous: c1.Variants},
			}}
			if !forward {
				// One manifest of the batch is gone: the move goes back.
				if err := r.removeManifest("b", b.Variants[0].Digest); err != nil {
					t.Fatal(err)
				}
			}
			path := writeJournal(t, r, "crashed.json", j)
			pending, err := r.pendingTags("a")
			if err != nil || len(pending) != 0 {
				t.Errorf("PendingTags(a) = %v, %v; want nothing: a:live was changed since", pending, err)
			}
			if _, err := r.completeJournals(); err != nil {
				t.Fatal(err)
			}
			want := map[string]digest.Digest{"a": a3.Variants[0].Digest, "b": b.Variants[0].Digest, "c": c2.Variants[0].Digest}
			if !forward {
				want = map[string]digest.Digest{"a": a3.Variants[0].Digest, "b": "", "c": c1.Variants[0].Digest}
			}
			for repo, d := range want {
				if got := tagDigest(t, r, repo, "live"); got != d {
					t.Errorf("%s:live names %q, want %q", repo, got, d)
				}
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("the journal is still there (%v)", err)
			}
		})
	}
}

// TestInvalidJournalSetAside: a journal that cannot be trusted is set
// aside with one warning naming it, and blocks nothing: maintainers,
// PendingTags and SettleJournals go on. Guards: one unreadable or invalid
// journal stopped gc, delete's prune, migrate, repair and every watch
// pass until removed by hand, and digests were not validated on read.
func TestInvalidJournalSetAside(t *testing.T) {
	a := newTestImage("a", "v1", []byte("a"))
	good := journalTag{Repo: "a", Tag: "live", Variants: a.Variants}
	withDigest := func(d string) journal {
		t := good
		t.Variants = []TagVariant{{Digest: digest.Digest(d), MediaType: a.Variants[0].MediaType}}
		return journal{Tags: []journalTag{t}}
	}
	for _, tc := range []struct {
		name string
		body any // a journal, or raw bytes as a string
	}{
		{"garbage", "\x00\x01garbage"},
		{"truncated", `{"tags":[{"repo":"a","tag":"li`},
		{"no tags", `{"tags":[]}`},
		{"digest leaving its directory", withDigest("sha256:../../../etc/passwd")},
		{"digest of the wrong length", withDigest("sha256:abcd")},
		{"repository outside the grammar", journal{Tags: []journalTag{{Repo: "../x", Tag: "live", Variants: a.Variants}}}},
		{"tag outside the grammar", journal{Tags: []journalTag{{Repo: "a", Tag: "-bad tag", Variants: a.Variants}}}},
		{"media type with a newline", journal{Tags: []journalTag{{Repo: "a", Tag: "live", Variants: []TagVariant{{Digest: a.Variants[0].Digest, MediaType: "a/b\nHeader set X y"}}}}}},
		{"a directory", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTree(t)
			publishAll(t, r, a)
			var warnings []string
			r = r.WithWaits(Waits{Warn: func(msg string) { warnings = append(warnings, msg) }})
			path := filepath.Join(r.journalDir(), "bad.json")
			switch body := tc.body.(type) {
			case string:
				if err := r.mkdirAll(r.journalDir()); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			case nil:
				if err := os.MkdirAll(path, 0o755); err != nil {
					t.Fatal(err)
				}
			default:
				writeJournal(t, r, "bad.json", body)
			}
			if _, err := r.pendingTags("a"); err != nil {
				t.Errorf("PendingTags: %v", err)
			}
			if err := r.settleJournals(); err != nil {
				t.Fatalf("SettleJournals: %v", err)
			}
			if err := r.Maintain(MaintainOptions{}, func(*Maint) error { return nil }); err != nil {
				t.Fatalf("Maintain after it: %v", err)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Errorf("the journal is still in place (%v)", err)
			}
			if _, err := os.Lstat(path + journalAsideExt); err != nil {
				t.Errorf("not set aside: %v", err)
			}
			if len(warnings) != 1 || !strings.Contains(warnings[0], path) || !strings.Contains(warnings[0], "image-serve verify") {
				t.Errorf("warnings %q, want one naming %s and what to do", warnings, path)
			}
			if got := tagDigest(t, r, "a", "v1"); got != a.Variants[0].Digest {
				t.Errorf("a:v1 names %q after the journal was set aside", got)
			}
		})
	}
}

// TestJournalFinishesDerivedFiles: a crash between a tag's type map and
// what is derived from it leaves the tag where the journal moves it, with
// tags/list and _catalog not naming it; finishing the journal writes them
// though the tag need not move. Guards: completing such a journal moved
// nothing and wrote nothing, and a rerun that found every tag in place
// (replicate, sync) left the repository out of _catalog.
func TestJournalFinishesDerivedFiles(t *testing.T) {
	r := newTree(t)
	im := newTestImage("fresh", "v1", []byte("fresh"))
	publishAll(t, r, im) // its manifest, and fresh:v1
	// The crash: fresh:live's type map written, nothing derived from it.
	if err := r.updateRepo("fresh", func() error {
		m, err := r.tagTypeMap("fresh", "live", im.Variants)
		if err != nil {
			return err
		}
		return r.publish(r.typeMapPath("fresh", "live"), m)
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.publish(r.tagsListPath("fresh"), []byte(`{"name":"fresh","tags":["v1"]}`)); err != nil {
		t.Fatal(err)
	}
	writeJournal(t, r, "crashed.json", journal{Tags: []journalTag{{Repo: "fresh", Tag: "live", Variants: im.Variants}}})
	if _, err := r.completeJournals(); err != nil {
		t.Fatal(err)
	}
	tags, _, err := r.readTagsList("fresh")
	if err != nil || strings.Join(tags, ",") != "live,v1" {
		t.Errorf("tags/list after finishing the journal: %v, %v; want live and v1", tags, err)
	}
}
