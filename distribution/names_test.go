package distribution

import (
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestSplitTag(t *testing.T) {
	tests := []struct {
		in, repo, tag string
		ok            bool
	}{
		{"app:v1", "app", "v1", true},
		{"ns/app:v1", "ns/app", "v1", true},
		{"host:5000/app", "host:5000/app", "", false},
		{"host:5000/app:v1", "host:5000/app", "v1", true},
		{"app", "app", "", false},
		{"app:", "app", "", true},
	}
	for _, tt := range tests {
		repo, tag, ok := SplitTag(tt.in)
		if repo != tt.repo || tag != tt.tag || ok != tt.ok {
			t.Errorf("SplitTag(%q) = %q, %q, %v; want %q, %q, %v", tt.in, repo, tag, ok, tt.repo, tt.tag, tt.ok)
		}
	}
}

// TestMaxRepoDepth: the deepest name the grammar admits has MaxRepoDepth
// components, and none has more.
func TestMaxRepoDepth(t *testing.T) {
	deepest := strings.Repeat("a/", MaxRepoDepth-1) + "a"
	if err := ValidateRepo(deepest); err != nil {
		t.Errorf("a name of %d components: %v", MaxRepoDepth, err)
	}
	if n := len(RepoComponents(deepest)); n != MaxRepoDepth {
		t.Fatalf("built %d components, want %d", n, MaxRepoDepth)
	}
	if err := ValidateRepo(deepest + "/a"); err == nil {
		t.Errorf("a name of %d components is valid; MaxRepoDepth is %d", MaxRepoDepth+1, MaxRepoDepth)
	}
}

// tagGrammar is the distribution spec's tag grammar as it writes it; isTag
// is the hand-written matcher that must agree with it on every string.
var tagGrammar = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

func TestValidateTag(t *testing.T) {
	for _, tc := range []struct {
		tag  string
		want bool
	}{
		{"latest", true},
		{"_x", true},
		{"v1.2.3-rc.1_b", true},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
		{"", false},
		{".hidden", false},
		{"-x", false},
		{"a/b", false},
		{"a:b", false},
		{"é", false},
	} {
		if got := ValidateTag(tc.tag) == nil; got != tc.want {
			t.Errorf("ValidateTag(%q) valid = %v, want %v", tc.tag, got, tc.want)
		}
	}
}

func FuzzValidateTag(f *testing.F) {
	for _, s := range []string{"latest", "", ".x", strings.Repeat("b", 128), strings.Repeat("b", 129), "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tag string) {
		if got, want := isTag(tag), tagGrammar.MatchString(tag); got != want {
			t.Fatalf("isTag(%q) = %v, the grammar says %v", tag, got, want)
		}
	})
}

// The hand-written fast path accepts exactly what the full check accepts.
func FuzzValidateDigest(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("a", 64), "sha512:" + strings.Repeat("0", 128), "sha256:" + strings.Repeat("A", 64),
		"sha256:" + strings.Repeat("a", 63), "sha384:" + strings.Repeat("a", 96), "md5:x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := digest.Digest(s)
		slow := d.Validate() == nil && (d.Algorithm() == digest.SHA256 || d.Algorithm() == digest.SHA512)
		if fast := isServedDigest(s); fast && !slow {
			t.Fatalf("isServedDigest(%q) accepts what go-digest refuses", s)
		}
		if got := ValidateDigest(d) == nil; got != slow {
			t.Fatalf("ValidateDigest(%q) valid = %v, want %v", s, got, slow)
		}
	})
}

func TestSplitHost(t *testing.T) {
	for _, c := range []struct{ in, host, path string }{
		{"localhost/app", "localhost", "app"},
		{"reg.io/team/app", "reg.io", "team/app"},
		{"reg.io:5000/app", "reg.io:5000", "app"},
		{"[::1]:5000/app", "[::1]:5000", "app"},
		{"library/app", "", "library/app"},
		{"app", "", "app"},
		{"localhost", "", "localhost"},
	} {
		if host, path := SplitHost(c.in); host != c.host || path != c.path {
			t.Errorf("SplitHost(%q) = %q, %q; want %q, %q", c.in, host, path, c.host, c.path)
		}
	}
}
