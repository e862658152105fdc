package catalog

import (
	"github.com/image-serve/image-serve/tree"
)

// RepoUsage is what one repository costs. Its files share inodes with
// other repositories' (hard-linked blobs), so summing du of repository
// directories counts shared bytes several times; these numbers do not.
type RepoUsage struct {
	Repository string `json:"repository"`
	// Bytes is the size of every distinct file of the repository.
	Bytes int64 `json:"bytes"`
	// Unique is the part no other repository of the tree links: what
	// deleting the repository would free.
	Unique int64 `json:"unique_bytes"`
	// Shared is the rest, Bytes - Unique.
	Shared int64 `json:"shared_bytes"`
}

// Usage is what repositories cost, and the whole tree.
type Usage struct {
	Repositories []RepoUsage `json:"repositories"`
	// Total is the size of every distinct file of the tree, each inode
	// counted once, as the file system counts it: not the sum of the
	// repositories' Bytes.
	Total int64 `json:"total_bytes"`
}

// DiskUsage measures repos (every repository of the tree decides what is
// unique, whichever are shown) and the tree. The repositories are those
// the tree stores (View.StoredRepositories), tagged or not: one that
// holds only pinned manifests, in no _catalog, costs what its pins keep
// and is measured as any other. The pin files themselves, a line each
// under .image-serve, are not counted.
func DiskUsage(view *tree.View, repos []string) (*Usage, error) {
	all, err := view.StoredRepositories()
	if err != nil {
		return nil, err
	}
	files := map[string]map[[2]uint64]int64{}
	holders := map[[2]uint64]int{}
	for _, repo := range all {
		ins, err := view.RepoFiles(repo)
		if err != nil {
			return nil, err
		}
		own := map[[2]uint64]int64{}
		for _, in := range ins {
			own[[2]uint64{in.Dev, in.Ino}] = in.Size
		}
		for k := range own {
			holders[k]++
		}
		files[repo] = own
	}
	u := &Usage{Repositories: []RepoUsage{}}
	for _, repo := range repos {
		ru := RepoUsage{Repository: repo}
		for k, size := range files[repo] {
			ru.Bytes += size
			if holders[k] == 1 {
				ru.Unique += size
			}
		}
		ru.Shared = ru.Bytes - ru.Unique
		u.Repositories = append(u.Repositories, ru)
	}
	tree, err := view.TreeFiles()
	if err != nil {
		return nil, err
	}
	for _, in := range tree {
		u.Total += in.Size
	}
	return u, nil
}
