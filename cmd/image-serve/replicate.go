package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/airgap"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/exporter"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
	"github.com/urfave/cli/v2"
)

func replicateCommand() *cli.Command {
	return &cli.Command{
		Name:      "replicate",
		Usage:     "keep a replica (another root, or ssh://HOST/ROOT) in step with this tree: only missing blobs travel, all tags move or none",
		ArgsUsage: "DEST [REPO|REPO:TAG...]",
		Description: `DEST is another root on this machine (a directory holding a tree, or an empty one), or
ssh://[USER@]HOST[:PORT]/ROOT, where HOST runs image-serve (on its PATH, or --remote-command).
The far side is asked for its inventory and its tags (image-serve inventory, list --json); the tags
of this tree (every tag, or those of the REPOs and REPO:TAGs named) that the replica lacks, or
holds naming another manifest, go into one delta bundle of only the blobs the replica lacks, which
streams into the far side's bundle load: every tag moves there, or none. The tags it holds
already, naming the same manifests, go in too but carry no layer (their manifests and configs):
loading them changes nothing there, but finishes what a load killed on the far side left. With --delete, the tags the replica holds that this
tree does not (in the repositories named, or in every repository) are then deleted there, as
image-serve delete deletes them: the replica mirrors this tree exactly. --dry-run prints what
would be replicated and deleted, and changes nothing. Digest pins are not replicated.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "delete", Usage: "delete the replica's tags this tree does not have"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be replicated and deleted; change nothing"},
			&cli.StringFlag{Name: "remote-command", Usage: "the far side's image-serve command (default: image-serve over ssh, this executable for a local root)"},
			&cli.StringSliceFlag{Name: "ssh-option", Usage: "an ssh -o option, KEY=VALUE (repeatable): IdentityFile=..., UserKnownHostsFile=..."},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "the longest wait: connecting, a lock on the far side, a stalled stream, each far-side command"},
		},
		Action: runReplicate,
	}
}

// replicaTag is a tag as the far side's list --json describes it.
type replicaTag struct {
	Repository string        `json:"repository"`
	Tag        string        `json:"tag"`
	Digest     digest.Digest `json:"digest"`
	Pinned     bool          `json:"pinned"`
	Status     string        `json:"status"`
}

// replicaScope is what a run replicates: every tag, or those of some
// repositories and some tags.
type replicaScope struct {
	repos map[string]bool
	tags  map[airgap.Ref]bool
}

func (s replicaScope) all() bool { return len(s.repos) == 0 && len(s.tags) == 0 }

func (s replicaScope) has(ref airgap.Ref) bool {
	return s.all() || s.repos[ref.Repo] || s.tags[ref]
}

// deletable reports whether --delete may remove ref from the replica:
// it is in the scope, or in a repository the scope names a tag of.
func (s replicaScope) deletable(ref airgap.Ref) bool {
	if s.has(ref) {
		return true
	}
	for t := range s.tags {
		if t.Repo == ref.Repo {
			return true
		}
	}
	return false
}

func runReplicate(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError(c, "want DEST: a root on this machine, or ssh://[USER@]HOST[:PORT]/ROOT")
	}
	if c.Duration("timeout") <= 0 {
		return usageError(c, "--timeout %v: want more than 0", c.Duration("timeout"))
	}
	far, err := parseReplica(c, c.Args().First())
	if err != nil {
		return usageError(c, "%v", err)
	}
	scope := replicaScope{repos: map[string]bool{}, tags: map[airgap.Ref]bool{}}
	for _, a := range c.Args().Tail() {
		if strings.Contains(a, ":") {
			ref, err := airgap.ParseRef(a)
			if err != nil {
				return usageError(c, "%v", err)
			}
			scope.tags[ref] = true
			continue
		}
		if err := tree.ValidateRepo(a); err != nil {
			return usageError(c, "%q: %v", a, err)
		}
		scope.repos[a] = true
	}
	root, err := openTree(c)
	if err != nil {
		return err
	}
	if far.local != "" {
		if same, err := sameDir(root.Dir(), far.local); err != nil {
			return fmt.Errorf("replica %s: %w", far.name, err)
		} else if same {
			return usageError(c, "replica %s is --root itself", far.name)
		}
	}
	ctx := c.Context
	inv, err := far.inventory(ctx)
	if err != nil {
		return err
	}
	theirs, err := far.tags(ctx)
	if err != nil {
		return err
	}

	var (
		send, same []airgap.Ref
		remove     []airgap.Ref
		plan       *airgap.Plan
		report     *exporter.LoadReport
		streamed   int64
	)
	err = root.Inspect(func(v *tree.View) error {
		ours, err := sourceTags(v, scope)
		if err != nil {
			return err
		}
		for ref := range scope.tags {
			if _, ok := ours[ref]; !ok {
				return fmt.Errorf("%s: no such tag in %s", ref, root.Dir())
			}
		}
		for _, ref := range slices.SortedFunc(mapKeys(ours), compareRefs) {
			if t, ok := theirs[ref]; ok && t.Digest == ours[ref] && t.Status == "" {
				same = append(same, ref)
			} else {
				send = append(send, ref)
			}
		}
		if c.Bool("delete") {
			for _, ref := range slices.SortedFunc(mapKeys(theirs), compareRefs) {
				if _, ok := ours[ref]; !ok && scope.deletable(ref) {
					remove = append(remove, ref)
				}
			}
		}
		// The tags the replica has already go in too: their manifests
		// and configs, never a layer it holds. Loading them changes
		// nothing there, but finishes what a load killed after its last
		// tag moved left undone (its journal, tags/list, _catalog, the
		// catalog page), which no comparison of tags can see.
		images := slices.SortedFunc(slices.Values(slices.Concat(send, same)), compareRefs)
		if len(images) == 0 {
			return nil
		}
		if plan, err = airgap.MakePlan(v, airgap.Request{Images: images, Inventories: []*bundle.Inventory{inv}}); err != nil {
			return err
		}
		if c.Bool("dry-run") {
			return nil
		}
		// The bundle streams from the tree as the far side loads it,
		// under the tree lock held shared: exports go on, and no
		// collection removes a blob the bundle is still to read.
		report, streamed, err = far.load(ctx, func(w io.Writer) (int64, error) { return bundle.Write(w, plan.Descriptor, plan.Open(v)) })
		return err
	})
	if err != nil {
		return err
	}
	if c.Bool("dry-run") {
		w := c.App.Writer
		for _, ref := range send {
			fmt.Fprintf(w, "would replicate %s\n", ref)
		}
		for _, ref := range remove {
			fmt.Fprintf(w, "would delete %s\n", ref)
		}
		if !quiet(c) {
			carried := int64(0)
			if plan != nil {
				carried = plan.Descriptor.Bytes.Members
			}
			fmt.Fprintf(os.Stderr, "replica %s: would replicate %s (%s unchanged), carrying %s; would delete %s\n", far.name,
				plural(len(send), "tag", "tags"), plural(len(same), "tag", "tags"), humanBytes(carried), plural(len(remove), "tag", "tags"))
		}
		return nil
	}
	if len(remove) > 0 {
		if err := far.delete(ctx, remove); err != nil {
			return err
		}
	}
	if quiet(c) {
		return nil
	}
	for _, ref := range send {
		fmt.Fprintf(os.Stderr, "replicated %s\n", ref)
	}
	for _, ref := range remove {
		fmt.Fprintf(os.Stderr, "deleted %s\n", ref)
	}
	if report == nil {
		fmt.Fprintf(os.Stderr, "replica %s: this tree has no tag to replicate, nothing sent; deleted %s\n", far.name, plural(len(remove), "tag", "tags"))
		return nil
	}
	fmt.Fprintf(os.Stderr, "replica %s: replicated %s (%s unchanged): sent %s, carrying %s of the images' %s, and it wrote %s; deleted %s\n",
		far.name, plural(len(send), "tag", "tags"), plural(len(same), "tag", "tags"), humanBytes(streamed),
		humanBytes(report.Carried), humanBytes(report.Full), humanBytes(report.Written), plural(len(remove), "tag", "tags"))
	return nil
}

// sourceTags are the tags of the tree in scope, each with the manifest it
// names.
func sourceTags(v *tree.View, scope replicaScope) (map[airgap.Ref]digest.Digest, error) {
	repos, err := v.Repositories()
	if err != nil {
		return nil, err
	}
	out := map[airgap.Ref]digest.Digest{}
	for _, repo := range repos {
		tags, err := v.Tags(repo)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", repo, err)
		}
		for _, tag := range tags {
			ref := airgap.Ref{Repo: repo, Tag: tag}
			if !scope.has(ref) {
				continue
			}
			vs, err := v.TagVariants(repo, tag)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
			if len(vs) == 0 {
				return nil, fmt.Errorf("%s: its type map offers no manifest", ref)
			}
			out[ref] = vs[0].Digest
		}
	}
	return out, nil
}

func mapKeys[V any](m map[airgap.Ref]V) func(func(airgap.Ref) bool) {
	return func(yield func(airgap.Ref) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func compareRefs(a, b airgap.Ref) int {
	if c := strings.Compare(a.Repo, b.Repo); c != 0 {
		return c
	}
	return strings.Compare(a.Tag, b.Tag)
}

// sameDir reports whether a and b are one directory. A b that does not
// exist is not a: the far side's inventory then names what is wrong.
func sameDir(a, b string) (bool, error) {
	fa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	fb, err := os.Stat(b)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fa, fb), nil
}

// replica is the far side of a replication: image-serve run on another
// root, through sh on this machine or through ssh on another. Every
// exchange is one image-serve command line, so that both run the same
// way and the far side is whatever image-serve is installed there.
type replica struct {
	name    string   // DEST as given, for messages
	root    string   // the far side's --root
	local   string   // the root, when it is on this machine
	command string   // the far side's image-serve, as a shell word or words
	argv    []string // what runs a command line: sh -c, or ssh ... HOST
	host    string   // the ssh host, for messages; "" for a local root
	timeout time.Duration
}

func parseReplica(c *cli.Context, dest string) (*replica, error) {
	r := &replica{name: dest, command: c.String("remote-command"), timeout: c.Duration("timeout")}
	if rest, ok := strings.CutPrefix(dest, "ssh://"); ok {
		u, err := url.Parse("ssh://" + rest)
		if err != nil || u.Host == "" || u.Hostname() == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("%q: want ssh://[USER@]HOST[:PORT]/ROOT", dest)
		}
		if u.Path == "" || u.Path == "/" {
			return nil, fmt.Errorf("%q: want the far side's root after the host: ssh://HOST/ROOT", dest)
		}
		if _, set := u.User.Password(); set {
			return nil, fmt.Errorf("%q: a password in DEST is not taken (ssh runs with BatchMode=yes: use a key)", dest)
		}
		r.root, r.host = u.Path, u.Hostname()
		if r.command == "" {
			r.command = "image-serve"
		}
		secs := strconv.Itoa(max(1, int(r.timeout.Seconds())))
		r.argv = []string{"ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=" + secs,
			"-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"}
		for _, o := range c.StringSlice("ssh-option") {
			if !strings.Contains(o, "=") || strings.HasPrefix(o, "-") {
				return nil, fmt.Errorf("--ssh-option %q: want KEY=VALUE", o)
			}
			r.argv = append(r.argv, "-o", o)
		}
		if p := u.Port(); p != "" {
			r.argv = append(r.argv, "-p", p)
		}
		if u.User != nil && u.User.Username() != "" {
			r.argv = append(r.argv, "-l", u.User.Username())
		}
		r.argv = append(r.argv, "--", u.Hostname())
		return r, nil
	}
	if strings.Contains(dest, "://") {
		return nil, fmt.Errorf("%q: want a root on this machine, or ssh://[USER@]HOST[:PORT]/ROOT", dest)
	}
	if len(c.StringSlice("ssh-option")) > 0 {
		return nil, errors.New("--ssh-option goes with an ssh:// DEST")
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return nil, err
	}
	r.root, r.local = abs, abs
	if r.command == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding this executable: %w", err)
		}
		r.command = shellQuote(self)
	}
	r.argv = []string{"/bin/sh", "-c"}
	return r, nil
}

// commandLine is the far side's command line for args.
func (r *replica) commandLine(args ...string) string {
	words := []string{"exec", r.command, "--root", shellQuote(r.root), "--lock-timeout", r.timeout.String()}
	for _, a := range args {
		words = append(words, shellQuote(a))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s as one word for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// farError is a far-side command that failed: its name, and what it
// said, its own last line of stderr.
func (r *replica) farError(what string, err error, stderr []byte) error {
	msg := strings.TrimSpace(string(stderr))
	if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
		msg = msg[i+1:]
	}
	msg = strings.TrimPrefix(msg, "image-serve: ")
	var ee *exec.ExitError
	if r.host != "" && errors.As(err, &ee) && ee.ExitCode() == 255 {
		// ssh's own failure: the host could not be reached, or refused us.
		return fmt.Errorf("replica %s: ssh to %s failed: %s", r.name, r.host, orCause(msg, err))
	}
	if errors.As(err, &ee) && ee.ExitCode() == 127 {
		return fmt.Errorf("replica %s: %s: no image-serve there (%s; see --remote-command)", r.name, what, orCause(msg, err))
	}
	return fmt.Errorf("replica %s: %s: %s", r.name, what, orCause(msg, err))
}

func orCause(msg string, err error) string {
	if msg == "" {
		return err.Error()
	}
	return msg
}

// run runs one far-side command to its end, within the timeout, and
// returns what it printed on stdout.
func (r *replica) run(ctx context.Context, what string, stdoutOK func([]byte) bool, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := r.cmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && ctx.Err() != nil && context.Cause(ctx) == context.DeadlineExceeded {
		return nil, fmt.Errorf("replica %s: %s: no answer within --timeout %v", r.name, what, r.timeout)
	}
	if err != nil && (stdoutOK == nil || !stdoutOK(stdout.Bytes())) {
		return nil, r.farError(what, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func (r *replica) cmd(ctx context.Context, args ...string) *exec.Cmd {
	argv := append(slices.Clone(r.argv), r.commandLine(args...))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// Output pipes a killed far side's children may hold open must not
	// hold up Wait past the kill.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// inventory is what the far side holds. A far side that is no tree, or
// whose inventory is of a format this image-serve does not read (a newer
// image-serve), is refused here, before anything is sent.
func (r *replica) inventory(ctx context.Context) (*bundle.Inventory, error) {
	out, err := r.run(ctx, "inventory", nil, "-q", "inventory", "-o", "-")
	if err != nil {
		return nil, err
	}
	inv, err := bundle.ReadInventory(bytes.NewReader(out))
	if err != nil {
		return nil, fmt.Errorf("replica %s: its inventory: %w (refused: nothing was changed there)", r.name, err)
	}
	return inv, nil
}

// tags are the far side's tags, each with the manifest it names. A tag
// a pull cannot fetch whole there is listed with its Status: list exits
// 1 for it, and what it printed is taken all the same.
func (r *replica) tags(ctx context.Context) (map[airgap.Ref]replicaTag, error) {
	parses := func(b []byte) bool {
		var ts []replicaTag
		return json.Unmarshal(b, &ts) == nil
	}
	out, err := r.run(ctx, "list", parses, "list", "--json")
	if err != nil {
		return nil, err
	}
	var ts []replicaTag
	if err := json.Unmarshal(out, &ts); err != nil {
		return nil, fmt.Errorf("replica %s: list --json: %w", r.name, err)
	}
	m := map[airgap.Ref]replicaTag{}
	for _, t := range ts {
		if !t.Pinned {
			m[airgap.Ref{Repo: t.Repository, Tag: t.Tag}] = t
		}
	}
	return m, nil
}

// load streams a bundle, as write writes it, into the far side's bundle
// load, and returns the far side's report and the bytes sent. A stream
// that takes no write for the timeout, or a far side that does not finish
// within it once the stream has ended, is killed.
func (r *replica) load(ctx context.Context, write func(io.Writer) (int64, error)) (*exporter.LoadReport, int64, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cmd := r.cmd(ctx, "-q", "bundle", "load", "--json", "-")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, 0, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("replica %s: %w", r.name, err)
	}
	stalled := errors.New("stalled")
	w := &watchdog{w: stdin, timeout: r.timeout, expire: func() { cancel(stalled) }}
	n, werr := write(w)
	if cerr := stdin.Close(); werr == nil {
		werr = cerr
	}
	w.arm() // the far side's publishing after the stream's end is bounded too
	err = cmd.Wait()
	w.disarm()
	switch {
	case context.Cause(ctx) == stalled:
		return nil, n, fmt.Errorf("replica %s: bundle load: no progress within --timeout %v (killed; it publishes all tags or none)", r.name, r.timeout)
	case err != nil:
		return nil, n, r.farError("bundle load", err, stderr.Bytes())
	case werr != nil:
		return nil, n, fmt.Errorf("replica %s: sending the bundle: %w", r.name, werr)
	}
	var rep exporter.LoadReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return nil, n, fmt.Errorf("replica %s: bundle load's report: %w", r.name, err)
	}
	return &rep, n, nil
}

// delete deletes refs on the far side, as image-serve delete does.
func (r *replica) delete(ctx context.Context, refs []airgap.Ref) error {
	args := []string{"-q", "delete"}
	for _, ref := range refs {
		args = append(args, ref.String())
	}
	_, err := r.run(ctx, "delete", nil, args...)
	return err
}

// watchdog passes writes on, and calls expire when one write, or the wait
// after arm, lasts longer than timeout.
type watchdog struct {
	w       io.Writer
	timeout time.Duration
	expire  func()
	mu      sync.Mutex
	t       *time.Timer
}

func (d *watchdog) Write(p []byte) (int, error) {
	d.arm()
	defer d.disarm()
	return d.w.Write(p)
}

func (d *watchdog) arm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = time.AfterFunc(d.timeout, d.expire)
}

func (d *watchdog) disarm() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil {
		d.t.Stop()
	}
}
