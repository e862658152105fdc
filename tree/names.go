package tree

import (
	"fmt"
	"regexp"

	"github.com/opencontainers/go-digest"
)

// The distribution grammar for repository names and tags. Anything else
// could escape the tree ("..", "/abs") or collide with our own files.
var (
	repoComponent = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// reservedComponents are directory names of the layout: a repository
// "a/tags" would live inside repository "a", and "a/referrers" would
// collide with a's referrers indexes.
var reservedComponents = map[string]bool{"blobs": true, "manifests": true, "tags": true, "referrers": true}

// maxRepoLength is the limit most clients put on host[:port]/name.
const maxRepoLength = 255

// ValidateRepo reports whether name is a repository name of the
// distribution grammar: lowercase components separated by single slashes.
func ValidateRepo(name string) error {
	if name == "" {
		return fmt.Errorf("invalid repository name %q: empty", name)
	}
	if len(name) > maxRepoLength {
		return fmt.Errorf("invalid repository name %q: longer than %d characters", name, maxRepoLength)
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		c := name[start:i]
		switch {
		case c == "":
			return fmt.Errorf("invalid repository name %q: empty path component", name)
		case reservedComponents[c]:
			return fmt.Errorf("invalid repository name %q: component %q is reserved by the tree layout", name, c)
		case !repoComponent.MatchString(c):
			return fmt.Errorf("invalid repository name %q: component %q is not lowercase [a-z0-9] separated by '.', '_', '__' or '-'", name, c)
		}
		start = i + 1
	}
	return nil
}

// ValidateTag reports whether tag is a tag of the distribution grammar.
func ValidateTag(tag string) error {
	if !tagPattern.MatchString(tag) {
		return fmt.Errorf("invalid tag %q: must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", tag)
	}
	return nil
}

// ValidateDigest reports whether d is a digest this tree can store:
// sha256 or sha512, lowercase hex of the right length.
func ValidateDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %v", d, err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return fmt.Errorf("invalid digest %q: algorithm %s is not served (sha256 or sha512 only)", d, a)
	}
	return nil
}
