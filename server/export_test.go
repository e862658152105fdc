package server

import (
	"os"

	"github.com/image-serve/image-serve/tree"
)

// The route table's cache classes, as header values: what tests expect.
const (
	cacheImmutable  = string(tree.CacheImmutable)
	cacheRevalidate = string(tree.CacheRevalidate)
	cacheNever      = string(tree.CacheNever)
)

// identity is the cache key of the file at path, by its name: what tests
// wait on.
func identity(path string) (fileKey, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileKey{}, false
	}
	return identityOf(fi)
}
