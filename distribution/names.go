package distribution

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// The distribution grammar for repository names and tags.
var (
	repoComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
)

// MaxRepoLength is the limit most clients put on host[:port]/name.
const MaxRepoLength = 255

// MaxRepoDepth is the most path components a valid name has: one
// character each, a slash between them, within MaxRepoLength. Whatever
// matches names one depth at a time (Apache's <Directory> wildcards,
// whose * never crosses a slash) covers every name up to this depth.
const MaxRepoDepth = (MaxRepoLength + 1) / 2

// ValidateRepo reports whether name is a repository name of the
// distribution grammar: lowercase components separated by single slashes,
// at most MaxRepoLength characters. It does not know which components a
// tree's layout reserves.
func ValidateRepo(name string) error {
	if name == "" {
		return fmt.Errorf("invalid repository name %q: empty", name)
	}
	if len(name) > MaxRepoLength {
		return fmt.Errorf("invalid repository name %q: longer than %d characters", name, MaxRepoLength)
	}
	for _, c := range RepoComponents(name) {
		switch {
		case c == "":
			return fmt.Errorf("invalid repository name %q: empty path component", name)
		case !repoComponent.MatchString(c):
			return fmt.Errorf("invalid repository name %q: component %q is not lowercase [a-z0-9] separated by '.', '_', '__' or '-'", name, c)
		}
	}
	return nil
}

// RepoComponents splits name at its slashes; it validates nothing.
func RepoComponents(name string) []string {
	var cs []string
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		cs = append(cs, name[start:i])
		start = i + 1
	}
	return cs
}

// ValidateTag reports whether tag is a tag of the distribution grammar.
func ValidateTag(tag string) error {
	if !isTag(tag) {
		return fmt.Errorf("invalid tag %q: must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag)
	}
	return nil
}

// isTag matches [A-Za-z0-9_][A-Za-z0-9._-]{0,127} by hand: the regular
// expression's counted repetition compiles into 128 copies, a cost every
// process start paid (a tenth of a no-op sync's CPU).
func isTag(tag string) bool {
	if len(tag) == 0 || len(tag) > 128 || tag[0] == '.' || tag[0] == '-' {
		return false
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateDigest reports whether d is a digest a registry tree stores:
// sha256 or sha512, lowercase hex of the right length.
func ValidateDigest(d digest.Digest) error {
	if isServedDigest(string(d)) {
		return nil // the common case, without go-digest's regular expression
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %v", d, err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return fmt.Errorf("invalid digest %q: algorithm %s is not served (sha256 or sha512 only)", d, a)
	}
	return nil
}

// isServedDigest matches sha256:<64 hex> and sha512:<128 hex>, lowercase,
// by hand: gc validates every digest of a tree, and go-digest's regular
// expression was a twentieth of its CPU. Anything else takes the slow path,
// which words the error.
func isServedDigest(s string) bool {
	var hexLen int
	switch {
	case strings.HasPrefix(s, "sha256:"):
		s, hexLen = s[len("sha256:"):], 64
	case strings.HasPrefix(s, "sha512:"):
		s, hexLen = s[len("sha512:"):], 128
	default:
		return false
	}
	if len(s) != hexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// SplitHost splits a name as docker and podman read one: its first
// component is a registry host when it is localhost or holds a dot or a
// colon (reg.io/app, reg.io:5000/app, localhost/app), and host is ""
// when it has none (library/app). Neither part is checked.
func SplitHost(name string) (host, path string) {
	if h, p, ok := strings.Cut(name, "/"); ok && (h == "localhost" || strings.ContainsAny(h, ".:")) {
		return h, p
	}
	return "", name
}

// SplitTag splits "repo:tag" at the last colon that follows the last
// slash, so that a registry's port ("host:5000/app") is not taken for a
// tag. ok is false when there is no such colon; neither part is checked.
func SplitTag(s string) (repo, tag string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}
