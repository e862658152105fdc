package tree

import (
	"fmt"

	"github.com/image-serve/image-serve/distribution"
)

// reservedComponents are directory names of the layout: a repository
// "a/tags" would live inside repository "a", and "a/referrers" would
// collide with a's referrers indexes.
var reservedComponents = map[string]bool{blobsDir: true, manifestsDir: true, tagsDir: true, referrersDir: true}

// ValidateRepo reports whether name is a repository name this tree can
// hold: one of the distribution grammar (anything else could escape the
// tree, "..", "/abs"), with no component the layout reserves.
func ValidateRepo(name string) error {
	if err := distribution.ValidateRepo(name); err != nil {
		return err
	}
	for _, c := range distribution.RepoComponents(name) {
		if reservedComponents[c] {
			return fmt.Errorf("invalid repository name %q: component %q is reserved by the tree layout", name, c)
		}
	}
	return nil
}
