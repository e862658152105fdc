package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/image-serve/image-serve/catalog"
	"github.com/urfave/cli/v2"
)

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "print the repositories of the tree, or the tags of one",
		ArgsUsage: "[REPO]",
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError(c, "want at most one REPO, got %d arguments", c.NArg())
			}
			root, err := openTree(c)
			if err != nil {
				return err
			}
			var names []string
			if c.NArg() == 0 {
				names, err = root.Repositories()
			} else {
				names, err = listTags(root, c.Args().First())
			}
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintln(c.App.Writer, n)
			}
			return nil
		},
	}
}

func listTags(root *catalog.Root, repo string) ([]string, error) {
	if err := catalog.ValidateRepo(repo); err != nil {
		return nil, err
	}
	if _, err := os.Stat(root.RepoDir(repo)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repository %s: not in %s", repo, root.Dir())
	}
	return root.Tags(repo)
}
