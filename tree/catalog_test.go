package tree

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

func TestValidateRepo(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // "" for valid
	}{
		{"app", ""},
		{"ns/app", ""},
		{"a/b/c/d", ""},
		{"tripleomaster/openstack-nova-api", ""},
		{"a.b_c__d--e", ""},
		{"", "empty"},
		{"../etc", "component \"..\""},
		{"ns/../../etc", "component \"..\""},
		{"/abs", "empty path component"},
		{"ns//app", "empty path component"},
		{"ns/app/", "empty path component"},
		{"NS/app", "component \"NS\""},
		{"ns/.hidden", "component \".hidden\""},
		{"ns/app/tags", "reserved"},
		{"blobs", "reserved"},
		{"ns/app/referrers", "reserved"},
		{"_catalog", "component \"_catalog\""},
		{strings.Repeat("a", 256), "longer than 255"},
	}
	for _, tt := range tests {
		err := ValidateRepo(tt.name)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ValidateRepo(%q) = %v, want nil", tt.name, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ValidateRepo(%q) = %v, want an error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

func TestValidateTag(t *testing.T) {
	for _, ok := range []string{"latest", "v1.2.3", "_x", "A-b_c.d", strings.Repeat("t", 128)} {
		if err := distribution.ValidateTag(ok); err != nil {
			t.Errorf("distribution.ValidateTag(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".hidden", "-x", "a/b", "a:b", "..", strings.Repeat("t", 129), "sha256:" + strings.Repeat("a", 64)} {
		if err := distribution.ValidateTag(bad); err == nil {
			t.Errorf("distribution.ValidateTag(%q) = nil, want an error", bad)
		}
	}
}

// TestSweepTemps: temporary files of a crashed writer go, everything a
// server reads stays.
func TestSweepTemps(t *testing.T) {
	r := newTree(t)
	d := digest.FromString("x")
	if err := r.putManifest("ns/app", d, "application/vnd.oci.image.manifest.v1+json", []byte("x")); err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Dir(r.blobPath("ns/app", d))
	stale := []string{
		filepath.Join(blobs, "."+d.String()+"8812345"),
		filepath.Join(r.manifestDir("ns/app", d), ".index.json42"),
		filepath.Join(r.manifestDir("ns/app", d), "..htaccess42"),
		// the temporary link of a tag that is all digits, "2019"
		filepath.Join(filepath.Dir(r.manifestDir("ns/app", d)), ".tags", ".20191234567"),
	}
	for _, p := range stale {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := r.sweepTemps()
	if err != nil || n != len(stale) {
		t.Fatalf("sweepTemps() = %d, %v; want %d", n, err, len(stale))
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s survived the sweep", p)
		}
	}
	for _, p := range []string{r.manifestPath("ns/app", d), r.headersPath("ns/app", d)} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the sweep removed %s", p)
		}
	}
}

// TestPutTagNeedsManifests: a tag is the last thing published, never
// ahead of what it names.
func TestPutTagNeedsManifests(t *testing.T) {
	r := newTree(t)
	d := digest.FromString("absent")
	err := r.putTag("ns/app", "v1", []TagVariant{{Digest: d, MediaType: "application/vnd.oci.image.manifest.v1+json"}})
	if err == nil || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("PutTag to a missing manifest: %v", err)
	}
	if _, err := os.Stat(r.typeMapPath("ns/app", "v1")); err == nil {
		t.Error("the tag was written anyway")
	}
}

func TestPutManifestRejectsMismatch(t *testing.T) {
	r := newTree(t)
	d := digest.FromString("one")
	err := r.putManifest("ns/app", d, "application/vnd.oci.image.manifest.v1+json", []byte("two"))
	if err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("PutManifest with the wrong bytes: %v", err)
	}
	if _, err := os.Stat(r.manifestDir("ns/app", d)); err == nil {
		t.Error("a manifest directory was created for bytes that do not match")
	}
	err = r.putManifest("ns/app", digest.FromString("{}"), "text/html\"\nHeader set X", []byte("{}"))
	if err == nil || !strings.Contains(err.Error(), "invalid media type") {
		t.Fatalf("PutManifest with a media type that would inject .htaccess lines: %v", err)
	}
}

// TestDeleteTag: the tag leaves tags/list; the last tag takes the
// repository out of the catalog.
func TestDeleteTag(t *testing.T) {
	r := newTree(t)
	d := digest.FromString("{}")
	mt := "application/vnd.oci.image.manifest.v1+json"
	if err := r.putManifest("ns/app", d, mt, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"v1", "v2"} {
		if err := r.putTag("ns/app", tag, []TagVariant{{Digest: d, MediaType: mt}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.deleteTag("ns/app", "v1"); err != nil {
		t.Fatal(err)
	}
	if tags, _ := r.tags("ns/app"); len(tags) != 1 || tags[0] != "v2" {
		t.Errorf("tags after deleting v1: %v", tags)
	}
	if b, _ := os.ReadFile(r.tagsListPath("ns/app")); !strings.Contains(string(b), `"tags":["v2"]`) {
		t.Errorf("tags/list after deleting v1: %s", b)
	}
	if err := r.deleteTag("ns/app", "v1"); !errors.Is(err, ErrTagUnknown) {
		t.Errorf("deleting v1 twice: %v, want ErrTagUnknown", err)
	}
	if err := r.deleteTag("ns/app", "v2"); err != nil {
		t.Fatal(err)
	}
	if repos, _ := r.repositories(); len(repos) != 0 {
		t.Errorf("catalog after deleting the last tag: %v", repos)
	}
	if _, err := os.Stat(r.tagsListPath("ns/app")); err == nil {
		t.Error("tags/list of a repository without tags remains")
	}
}

// newTree is an initialised, empty tree in a temporary directory.
func newTree(t *testing.T) *Root {
	t.Helper()
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	return r
}
