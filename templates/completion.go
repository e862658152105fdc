package templates

import (
	"embed"
	"fmt"
)

// Completion scripts for shells that ask the binary for candidates: they
// run "image-serve ... --generate-bash-completion", which urfave/cli
// answers from the commands and flags the binary has, so the scripts
// never go stale. fish takes a generated script instead (cli's
// ToFishCompletion), printed by the command itself.
//
//go:embed image-serve.bash image-serve.zsh
var completions embed.FS

// Completion returns the completion script for shell: "bash" or "zsh".
func Completion(shell string) ([]byte, error) {
	switch shell {
	case "bash", "zsh":
		return completions.ReadFile("image-serve." + shell)
	}
	return nil, fmt.Errorf("no completion script for %q", shell)
}
