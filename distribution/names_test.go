package distribution

import "testing"

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
