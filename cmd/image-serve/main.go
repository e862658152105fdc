// Command image-serve turns container images into a static-file registry
// that Apache httpd, nginx or its own embedded server serves read-only.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

// version is set by the linker for releases.
var version = "dev"

func main() {
	ctx := interruptible()
	app := newApp()
	err := app.RunContext(ctx, permute(app, os.Args))
	var sig *signalError
	if err != nil && errors.As(context.Cause(ctx), &sig) {
		// Whatever the command was doing when it stopped, the cause is
		// the signal: one line, and the shell's 128+N.
		err = &exitError{code: 128 + int(sig.sig), err: sig}
	}
	if err != nil {
		reportError(err)
		os.Exit(exitCode(err))
	}
}

// interruptible returns a context that SIGINT or SIGTERM cancel, with a
// *signalError as its cause. Commands stop at once — network transfers,
// lock waits, file and archive reads all watch it — and leave no
// temporary file; a second signal ends the process the default way.
func interruptible() context.Context {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		signal.Stop(sigs)
		cancel(&signalError{s.(syscall.Signal)})
	}()
	return ctx
}

// signalError is the cause of a command interrupted by a signal.
type signalError struct{ sig syscall.Signal }

func (e *signalError) Error() string {
	name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[e.sig]
	return "interrupted by " + name
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// jsonErrors is set once the global flags are parsed: failures are then
// reported as a JSON log record, so log collectors see them.
var jsonErrors bool

// The CLI's output rules, stated once, for every command:
//
//   - stdout carries what the command was asked for — a report, a
//     listing, a configuration — as text, or as one JSON value with --json
//     (or --log-format json); nothing else is ever written there.
//   - stderr carries logs (progress, warnings; JSON records with
//     --log-format json) and the failure: one line, `image-serve: …`,
//     naming the object and the cause (one JSON record at ERROR with
//     --log-format json), written by reportError and nowhere else.
//   - Exit 0 on success, 1 on failure, 2 for a command line that cannot
//     run (usageError: the problem, a "did you mean" when close, the
//     usage line), 130 and 143 for SIGINT and SIGTERM — except serve,
//     for which a signal is the way to stop, and which exits 0.
//   - --quiet silences what a success prints, never a failure.
//
// reportError writes err as the rules above say.
func reportError(err error) {
	if jsonErrors {
		slog.New(slog.NewJSONHandler(os.Stderr, nil)).Error("failed", "err", err.Error())
		return
	}
	fmt.Fprintf(os.Stderr, "image-serve: %v\n", err)
}

func newApp() *cli.App {
	// -v is --verbose here, not urfave/cli's default alias for --version.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version, commit and Go version"}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "image-serve %s\n", c.App.Version) }
	app := &cli.App{
		Name:    "image-serve",
		Usage:   "export container images into a static registry tree and serve it",
		Version: buildVersion(),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "root", Value: tree.DefaultRoot, EnvVars: []string{"IMAGE_SERVE_ROOT"}, Usage: "the registry tree (the web server's document root)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only errors"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "print debug logs"},
			&cli.DurationFlag{Name: "lock-timeout", Usage: "give up waiting for a lock another command holds after this long (0: wait)"},
		},
		Before: func(c *cli.Context) error {
			switch c.String("log-format") {
			case "json":
				jsonErrors = true
			case "text":
			default:
				return &exitError{code: 2, err: fmt.Errorf("--log-format %q: want text or json", c.String("log-format"))}
			}
			return nil
		},
		Commands: []*cli.Command{
			exportCommand(), syncCommand(), saveCommand(), inventoryCommand(), bundleCommand(), replicateCommand(),
			listCommand(), inspectCommand(), duCommand(),
			filesCommand(), diffCommand(), catCommand(),
			serveCommand(), watchCommand(), preheatCommand(),
			configCommand(),
			deleteCommand(), gcCommand(), verifyCommand(), migrateCommand(),
			completionCommand(), manCommand(),
		},
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {}, // main reports errors once
	}
	conventions(app)
	return app
}

// logger builds the logger the global flags ask for, on stderr.
func logger(c *cli.Context) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case c.Bool("quiet"):
		level = slog.LevelError
	case c.Bool("verbose"):
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if c.String("log-format") == "json" {
		opts.ReplaceAttr = secondsForDurations
		h = slog.NewJSONHandler(os.Stderr, opts)
	} else {
		h = slog.NewTextHandler(os.Stderr, opts)
	}
	return slog.New(h)
}

// openRoot opens --root. Its lock waits end with the command's context
// (a signal) or --lock-timeout, and say once what they wait for.
// secondsForDurations writes every duration of a JSON record as seconds,
// a number: one schema for machines, whatever the record (serve's request
// duration, export's elapsed time). Sizes are integers of bytes already.
func secondsForDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key, a.Value.Duration().Seconds())
	}
	return a
}

// wantJSON reports whether a command prints its report as JSON: --json,
// or --log-format json, which makes every command's output one schema.
func wantJSON(c *cli.Context) bool {
	return c.Bool("json") || c.String("log-format") == "json"
}

// openTree is openRoot for the commands that work on an existing tree
// (verify, delete, migrate): --root must hold a tree this user can
// read, or the command says what is wrong with it, naming the path,
// before it does anything. A mistyped --root must not get a tree created
// there.
func openTree(c *cli.Context) (*tree.Root, error) {
	root, state, err := openTreeOrEmpty(c)
	if err == nil && state == tree.AwaitsTree {
		err = fmt.Errorf("root %s: %w: the directory is empty (export an image there first, or fix --root)", root.Dir(), tree.ErrNoTree)
	}
	return root, err
}

// openTreeOrEmpty is openRoot for the commands that may run before the
// first export — serve, watch, config, the views (list, inspect, du) and
// gc — so that the web server and the units can be installed first: --root
// holds a tree, or is an existing empty directory (tree.AwaitsTree), which
// they answer as an empty registry and never create a tree in (config
// apache|nginx write the skeleton, as they do in every tree). A missing
// root, a file, a directory holding other things and one this user cannot
// read are refused, naming the path and what is wrong.
func openTreeOrEmpty(c *cli.Context) (*tree.Root, tree.RootState, error) {
	root, err := openRoot(c)
	if err != nil {
		return nil, 0, err
	}
	state, err := root.State()
	if errors.Is(err, tree.ErrNoTree) {
		err = fmt.Errorf("%w (export an image there first, or fix --root)", err)
	}
	if err != nil {
		return nil, 0, err
	}
	return root, state, nil
}

// openTreeWithRepos is openTree for a command whose arguments are
// repository names: each must be a valid one (a usage error otherwise).
// With orEmpty, as openTreeOrEmpty, an empty root is accepted too; the
// state says which the root is.
func openTreeWithRepos(c *cli.Context, orEmpty bool) (*tree.Root, tree.RootState, []string, error) {
	for _, repo := range c.Args().Slice() {
		if err := tree.ValidateRepo(repo); err != nil {
			return nil, 0, nil, usageError(c, "%v", err)
		}
	}
	if orEmpty {
		root, state, err := openTreeOrEmpty(c)
		return root, state, c.Args().Slice(), err
	}
	root, err := openTree(c)
	return root, tree.HoldsTree, c.Args().Slice(), err
}

func openRoot(c *cli.Context) (*tree.Root, error) {
	root, err := tree.Open(c.String("root"))
	if err != nil {
		return nil, err
	}
	if c.Duration("lock-timeout") < 0 {
		return nil, usageError(c, "--lock-timeout %v: want 0 or more", c.Duration("lock-timeout"))
	}
	log := logger(c)
	return root.WithWaits(tree.Waits{
		Context: c.Context,
		Timeout: c.Duration("lock-timeout"),
		Notify:  func(msg string) { log.Info(msg) },
		Warn:    func(msg string) { log.Warn(msg) },
	}), nil
}

// usageError is a command line the command cannot run: exit 2, one line
// with the command's usage.
func usageError(c *cli.Context, format string, args ...any) error {
	return usageLineError(c, fmt.Sprintf(format, args...))
}
