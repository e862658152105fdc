package contract_test

import (
	"testing"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
)

func TestApache(t *testing.T) {
	root := testserver.TempRoot(t)
	f := contract.Build(t, root)
	contract.Run(t, testserver.Apache(t, root), f, contract.Apache)
}

// TestApacheHostileEncoding runs the contract under a server-wide
// "AddEncoding x-gzip .gz", which broke every pull from TripleO's trees.
func TestApacheHostileEncoding(t *testing.T) {
	root := testserver.TempRoot(t)
	f := contract.Build(t, root)
	contract.Run(t, testserver.Apache(t, root, testserver.WithHostileEncoding()), f, contract.Apache)
}
