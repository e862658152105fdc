package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/image-serve/image-serve/templates"
	"github.com/urfave/cli/v2"
)

// Set by the linker (make build does, from git), for toolchains that do
// not stamp version control information (GOFLAGS=-buildvcs=false).
var (
	commit     string
	commitTime string
	dirty      string // "true" when the work tree had changes
)

// buildVersion describes the binary: the module version (a release tag,
// or "(devel)" for a build from a checkout), the commit, its date and
// whether the work tree had changes, and the Go version — from the build
// information the Go toolchain stamps, or else from what the linker set.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version + " (no build information)"
	}
	v := version
	if v == "dev" && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	settings := map[string]string{"vcs.revision": commit, "vcs.time": commitTime, "vcs.modified": dirty}
	for _, s := range bi.Settings {
		if s.Value != "" {
			settings[s.Key] = s.Value
		}
	}
	rev := settings["vcs.revision"]
	if rev == "" {
		rev = "unknown"
	}
	parts := []string{v, "commit " + rev}
	if settings["vcs.modified"] == "true" {
		parts = append(parts, "dirty")
	}
	if t := settings["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	parts = append(parts, bi.GoVersion)
	return strings.Join(parts, ", ")
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `bash: source it, or install it as /usr/share/bash-completion/completions/image-serve.
zsh: install it as _image-serve in a directory of $fpath. fish: install it as
~/.config/fish/completions/image-serve.fish. make install puts all three in place.`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError(c, "want one of bash, zsh, fish")
			}
			switch shell := c.Args().First(); shell {
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.App.Writer, s)
				return err
			case "bash", "zsh":
				b, err := templates.Completion(shell)
				if err != nil {
					return err
				}
				_, err = c.App.Writer.Write(b)
				return err
			default:
				return usageError(c, "unknown shell %q: want bash, zsh or fish", shell)
			}
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (roff), for man -l or share/man/man1/image-serve.1",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError(c, "unexpected argument %q", c.Args().First())
			}
			s, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(c.App.Writer, s)
			return err
		},
	}
}
