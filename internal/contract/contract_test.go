package contract_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/image-serve/image-serve/internal/contract"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
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

// TestRootBehindSymlink serves the whole contract, on every server, from
// a tree whose own path goes through a symlink, as /srv/registry ->
// /data/registry on a host: links above the tree are the admin's and are
// followed, where links inside it are refused. The link's name needs
// quoting, so nginx's "disable_symlinks … from=<tree>" is proven to name
// the tree.
func TestRootBehindSymlink(t *testing.T) {
	target := testserver.TempRoot(t)
	link := filepath.Join(testserver.SharedTempDir(t, "image-serve-link-"), `tree "odd" 'link' \ `)
	if err := os.Symlink(target.Dir(), link); err != nil {
		t.Fatal(err)
	}
	root, err := tree.Open(link)
	if err != nil {
		t.Fatal(err)
	}
	f := contract.Build(t, root)
	for _, s := range []struct {
		name string
		base string
		o    contract.Options
	}{
		{"Apache", testserver.Apache(t, root), contract.Apache},
		{"nginx", testserver.Nginx(t, root), contract.Nginx},
		{"embedded", testserver.Embedded(t, root), contract.Embedded},
	} {
		t.Run(s.name, func(t *testing.T) { contract.Run(t, s.base, f, s.o) })
	}
}
