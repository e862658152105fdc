package distribution

import (
	"strings"
	"testing"
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
