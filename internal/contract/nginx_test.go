package contract_test

import (
	"testing"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
)

// TestNginx holds nginx with our template to the contract, as far as a
// server that neither negotiates nor pages can meet it (contract.Nginx).
// The rows that retag and delete prove the tree's links reach nginx with
// no reload.
func TestNginx(t *testing.T) {
	root := testserver.TempRoot(t)
	f := contract.Build(t, root)
	contract.Run(t, testserver.Nginx(t, root), f, contract.Nginx)
}
