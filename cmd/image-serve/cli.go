package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"github.com/xrash/smetrics"
)

// The command-line conventions operators know from skopeo and podman, on
// top of urfave/cli/v2: a usage error is one line — the problem, a "did
// you mean" when something close exists, and the usage line — with exit
// status 2, never the whole help; `help` and `help CMD` work; and flags
// may come before or after the arguments, global ones after the command
// too. urfave/cli/v2 parses with Go's flag package, which stops at the
// first argument, so flags are moved in front of the arguments before
// parsing (permute); everything else is its own hooks.

// conventions sets app's hooks, and every command's, once all are added.
func conventions(app *cli.App) {
	app.HideHelpCommand = false
	app.OnUsageError = onUsageError
	app.CommandNotFound = func(c *cli.Context, name string) {
		// Only `help NAME` gets here; the app's Action handles the rest.
		reportError(unknownCommand(c, name))
		os.Exit(2)
	}
	app.Action = func(c *cli.Context) error {
		if c.NArg() > 0 {
			return unknownCommand(c, c.Args().First())
		}
		return cli.ShowAppHelp(c)
	}
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, cmd := range cmds {
			cmd.OnUsageError = onUsageError
			if len(cmd.Subcommands) > 0 && cmd.CustomHelpTemplate == "" {
				cmd.CustomHelpTemplate = subcommandsHelp
			}
			walk(cmd.Subcommands)
		}
	}
	walk(app.Commands)
}

// subcommandsHelp is the help of a command with subcommands. urfave/cli's
// own lists them by category, and categories are filled in only when the
// command runs: `help config` listed none. This one lists the commands
// themselves, so `help config` and `config --help` print the same.
var subcommandsHelp = strings.Replace(cli.SubcommandHelpTemplate,
	`{{template "visibleCommandCategoryTemplate" .}}`, `{{template "visibleCommandTemplate" .}}`, 1)

var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	// The flag package says `invalid boolean value "x" for -name` of a
	// boolean flag and `invalid value "x" for flag -name: why` of others.
	badFlagValue = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-+([^:]+): (.*)$`)
)

// onUsageError turns the flag package's complaint into our one line.
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		msg = "unknown flag " + dashed(m[1]) + didYouMean(m[1], flagNames(c), true)
	} else if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("%s %q: %s", dashed(m[2]), m[1], wantValue(c, m[2]))
	}
	return usageLineError(c, msg)
}

// wantValue says what flag name takes, for a value it could not parse.
func wantValue(c *cli.Context, name string) string {
	for _, x := range c.Lineage() {
		if x.Command == nil {
			continue
		}
		f, _ := lookupFlag(x.Command.Flags, "--"+name)
		switch f.(type) {
		case *cli.DurationFlag:
			return "want a duration such as 30s, 90m or 2h"
		case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
			return "want a whole number"
		case *cli.BoolFlag:
			return "want true or false"
		}
	}
	return "not a valid value"
}

// unknownCommand is the usage error for a command name that is none.
func unknownCommand(c *cli.Context, name string) error {
	cmds := c.App.Commands
	if !isRoot(c) && len(c.Command.Subcommands) > 0 {
		cmds = c.Command.Subcommands
	}
	var names []string
	for _, cmd := range cmds {
		names = append(names, cmd.Names()...)
	}
	return usageLineError(c, fmt.Sprintf("unknown command %q%s", name, didYouMean(name, names, false)))
}

// usageLineError is a usage error: exit 2, the command, the problem, and
// how the command is used.
func usageLineError(c *cli.Context, msg string) error {
	if isRoot(c) {
		return &exitError{code: 2, err: fmt.Errorf("%s (usage: image-serve [flags] COMMAND [ARGS]; see --help)", msg)}
	}
	name := c.Command.HelpName
	if name == "" {
		name = "image-serve " + c.Command.Name
	}
	usage := name + " [flags]"
	if c.Command.ArgsUsage != "" {
		usage += " " + c.Command.ArgsUsage
	}
	return &exitError{code: 2, err: fmt.Errorf("%s: %s (usage: %s; see --help)", strings.TrimPrefix(name, "image-serve "), msg, usage)}
}

// isRoot reports whether c is the app's own context, not a command's.
func isRoot(c *cli.Context) bool {
	return c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name
}

// didYouMean suggests the closest of candidates to got, if one is close
// (Jaro-Winkler similarity of 0.8 or more, as urfave/cli measures it);
// flags are suggested with their dashes.
func didYouMean(got string, candidates []string, flags bool) string {
	best, score := "", 0.0
	for _, c := range candidates {
		if s := smetrics.JaroWinkler(got, c, 0.7, 4); s > score {
			best, score = c, s
		}
	}
	if score < 0.8 {
		return ""
	}
	if flags {
		best = dashed(best)
	}
	return fmt.Sprintf("; did you mean %s?", best)
}

func flagNames(c *cli.Context) []string {
	var names []string
	for _, x := range c.Lineage() {
		if x.Command != nil {
			for _, f := range x.Command.Flags {
				names = append(names, f.Names()...)
			}
		}
	}
	for _, f := range c.App.Flags {
		names = append(names, f.Names()...)
	}
	return names
}

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// permute rewrites a command line so that the flag package sees every flag
// before the arguments: the flags of the command that come after its
// arguments move in front of them, and global flags given after the
// command move in front of the command. "--" ends flags as usual.
func permute(app *cli.App, args []string) []string {
	// urfave/cli looks for its completion flag at the very end.
	const complete = "--generate-bash-completion"
	if n := len(args); n > 1 && args[n-1] == complete {
		// The word being completed comes before the flag. A bare "--" is
		// a flag begun, not the end of flags: urfave/cli reads the word
		// from os.Args, so the parser need not see it (it would take the
		// completion flag for an argument and run the command).
		// Clipped: appending must not write over os.Args, where
		// urfave/cli reads that word.
		typed := slices.Clip(args[:n-1])
		if typed[len(typed)-1] == "--" {
			typed = typed[: len(typed)-1 : len(typed)-1]
		}
		return append(permute(app, typed), complete)
	}
	if len(args) < 2 {
		return args
	}
	global, rest := splitFlags(app.Flags, args[1:], true)
	if len(rest) == 0 {
		return args
	}
	cmd := findCommand(app.Commands, rest[0])
	if cmd == nil {
		return args
	}
	out := append([]string{args[0]}, global...)
	path := []string{rest[0]}
	rest = rest[1:]
	for len(cmd.Subcommands) > 0 && len(rest) > 0 {
		sub := findCommand(cmd.Subcommands, rest[0])
		if sub == nil {
			break
		}
		cmd, path, rest = sub, append(path, rest[0]), rest[1:]
	}
	own, positional, hoisted := sortCommandArgs(cmd.Flags, app.Flags, rest)
	if slices.ContainsFunc(own, func(a string) bool { f, _ := lookupFlag(nil, a); return f != nil }) {
		// Help asked for: urfave/cli would read the arguments as help
		// topics.
		positional = nil
	}
	out = append(out, hoisted...)
	out = append(out, path...)
	out = append(out, own...)
	return append(out, positional...)
}

// splitFlags takes the leading flags of args (stopping at the first
// argument when leadingOnly) that flags defines, with their values.
func splitFlags(flags []cli.Flag, args []string, leadingOnly bool) (taken, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return taken, args[i:]
		}
		f, inline := lookupFlag(flags, a)
		if f == nil {
			return taken, args[i:]
		}
		taken = append(taken, a)
		if !inline && takesValue(f) && i+1 < len(args) {
			i++
			taken = append(taken, args[i])
		}
	}
	return taken, nil
}

// sortCommandArgs splits a command's arguments into its own flags (with
// their values), its positional arguments, and global flags given after
// it. Unknown flags stay with the command's, for the parser to name.
func sortCommandArgs(own, global []cli.Flag, args []string) (flags, positional, hoisted []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		dst := &flags
		f, inline := lookupFlag(own, a)
		if f == nil {
			if g, gInline := lookupFlag(global, a); g != nil {
				f, inline, dst = g, gInline, &hoisted
			}
		}
		*dst = append(*dst, a)
		if f != nil && !inline && takesValue(f) && i+1 < len(args) {
			i++
			*dst = append(*dst, args[i])
		}
	}
	return flags, positional, hoisted
}

// lookupFlag finds the flag token a ("-q", "--jobs", "--jobs=2") names,
// and says whether its value is inline.
func lookupFlag(flags []cli.Flag, a string) (cli.Flag, bool) {
	name, _, inline := strings.Cut(strings.TrimLeft(a, "-"), "=")
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f, inline
		}
	}
	if name == "help" || name == "h" {
		return cli.HelpFlag, inline
	}
	return nil, false
}

// takesValue reports whether f consumes the next argument: every flag but
// a boolean one.
func takesValue(f cli.Flag) bool {
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if slices.Contains(c.Names(), name) {
			return c
		}
	}
	return nil
}

// plural is "1 blob", "2 blobs".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
