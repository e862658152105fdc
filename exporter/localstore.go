package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LocalOptions tune the sources on this machine: containers-storage:
// and docker-daemon:.
type LocalOptions struct {
	// LockTimeout ends, with an error, a wait for a container store's lock
	// that a running build holds; 0 waits as long as it takes.
	LockTimeout time.Duration
	// Notify, if set, is told once when a store's lock has to be waited
	// for, with a sentence saying whose.
	Notify func(msg string)
	// Podman is the program run for containers-storage:; "" looks
	// "podman" up in PATH.
	Podman string
	// DockerHost is the Docker Engine's socket as DOCKER_HOST writes it
	// (unix:///PATH); "" reads DOCKER_HOST, then /var/run/docker.sock.
	DockerHost string
}

// The containers-storage: source runs the store's own tooling, podman,
// rather than linking containers/image and containers/storage: those
// need cgo (a C constructor that re-executes a rootless user in its user
// namespace, C headers for btrfs), which image-serve builds without;
// podman is installed wherever podman manages the store (the undercloud's
// case), and an export without it says so. podman image save writes the
// image as a docker save stream to its stdout (a pipe), which
// readDockerSave reads in one pass.

// stderrTail is how much of a tool's stderr is kept to explain a failure:
// the error line is the last one.
const stderrTail = 64 << 10

// openLocalStore reads the image src names from a containers store
// through podman: it checks that the store is there, waits while a build
// holds the store's lock, and streams `podman image save`.
func openLocalStore(ctx context.Context, src SourceRef, o Options) (*streamedArchive, error) {
	what := src.String()
	p, err := preparePodman(ctx, what, src.store, o)
	if err != nil {
		return nil, err
	}
	defer p.done()
	args := append(storeFlags(src.store), "image", "save", "--format", "docker-archive", "--", storeImageArg(src.Image))
	return streamCommand(ctx, what, "podman image save", p.path, args, o, p.setup)
}

// podmanRun is podman ready to run on one store: its path, how to set up
// the command (podmanRunner), and done, which removes its staging
// directory once the command has exited.
type podmanRun struct {
	path  string
	setup func(*exec.Cmd)
	done  func()
}

// preparePodman finds podman, checks that the store spec names is there
// (podman would make a new, empty one), waits while a build holds its
// lock, and makes podman's private staging directory: what every run of
// podman on a store needs first, an export's save and a sync's listing
// alike.
func preparePodman(ctx context.Context, what string, spec *StoreSpec, o Options) (*podmanRun, error) {
	prog := o.Local.Podman
	if prog == "" {
		prog = "podman"
	}
	path, err := exec.LookPath(prog)
	if err != nil {
		return nil, fmt.Errorf("%s: reading a containers store needs podman, and there is no %s in PATH (install podman)", what, prog)
	}
	graphRoot, err := storeGraphRoot(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := waitStoreUnlocked(ctx, what, graphRoot, storeDriverOf(spec), o.Local); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp("", "image-serve-podman-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	done := func() { os.RemoveAll(stage) } // podman killed mid-layer leaves its copy here
	setup, err := podmanRunner(spec, graphRoot, stage)
	if err != nil {
		done()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &podmanRun{path: path, setup: setup, done: done}, nil
}

// podman image save copies each blob of the image — every layer, whole
// and uncompressed, and the config — into a temporary file before it
// writes it to the archive (containers/image's storage source does so to
// hold the store's lock briefly, whatever the destination), one blob at a
// time, removing each once written. Its directory is containers.conf's
// image_copy_tmp_dir, /var/tmp unless set, which TMPDIR overrides. podmanRunner points TMPDIR at stage, a private
// directory in image-serve's own temporary directory ($TMPDIR, else
// /tmp: where the compressed layers are staged too), so that one setting
// places everything an export stages, and so that a copy a killed podman
// leaves (podman 4.3 removes it only when it closes it) is removed with
// stage.

// podmanRunner is how podman is run on the store spec names, whose graph
// root is graphRoot (podman's own store when spec is nil), staging its
// copies in stage.
//
// Run by root on a store another user owns — a rootless store, named by
// its STORE-SPEC — podman runs as that owner, as the owner's own podman
// does: in the owner's user namespace, with the owner's uid mappings.
// Root's podman would read the store, but it also makes the store its
// own: containers/storage's vfs driver chowns its directory (GRAPHROOT/vfs)
// to root each time it starts, after which the owner's podman fails
// ("chown …/vfs: operation not permitted"); the overlay driver makes
// GRAPHROOT/overlay/l and RUNROOT/overlay root's, to the same end.
func podmanRunner(spec *StoreSpec, graphRoot, stage string) (func(*exec.Cmd), error) {
	env := withoutEnv(os.Environ(), "TMPDIR")
	if spec == nil || graphRoot == "" || os.Geteuid() != 0 {
		env = append(env, "TMPDIR="+stage)
		return func(c *exec.Cmd) { c.Env = env }, nil
	}
	fi, err := os.Stat(graphRoot)
	if err != nil {
		return nil, fmt.Errorf("container store %s: %w", graphRoot, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		env = append(env, "TMPDIR="+stage)
		return func(c *exec.Cmd) { c.Env = env }, nil
	}
	// The owner's podman needs a HOME it can read (root's is not) and
	// writes caches under it: the owner's own, else stage.
	home, name := stage, ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(st.Uid), 10)); err == nil {
		name = u.Username
		if hi, err := os.Stat(u.HomeDir); err == nil && hi.IsDir() {
			if hs, ok := hi.Sys().(*syscall.Stat_t); ok && hs.Uid == st.Uid {
				home = u.HomeDir
			}
		}
	}
	if err := os.Chown(stage, int(st.Uid), int(st.Gid)); err != nil {
		return nil, fmt.Errorf("staging directory for podman: %w", err)
	}
	// Root's settings name root's files: the owner's podman finds its own
	// as it does for the owner (the temporary directory its store's
	// database records, where the owner's pause process is; the owner's
	// /run/user/UID, else one it makes in TMPDIR).
	env = withoutEnv(env, "HOME", "USER", "LOGNAME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
		"XDG_CACHE_HOME", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE")
	env = append(env, "TMPDIR="+stage, "HOME="+home)
	if name != "" {
		env = append(env, "USER="+name, "LOGNAME="+name)
	}
	cred := &syscall.Credential{Uid: st.Uid, Gid: st.Gid, Groups: []uint32{}}
	return func(c *exec.Cmd) {
		c.Env = env
		c.Dir = "/" // root's working directory may be closed to the owner
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}, nil
}

// withoutEnv is env without the variables named.
func withoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			out = append(out, kv)
		}
	}
	return out
}

// storeFlags are podman's global flags that select the store spec
// names; none for podman's configured store.
func storeFlags(spec *StoreSpec) []string {
	if spec == nil {
		return nil
	}
	args := []string{"--root", spec.GraphRoot}
	if spec.RunRoot != "" {
		args = append(args, "--runroot", spec.RunRoot)
	}
	if spec.Driver != "" {
		args = append(args, "--storage-driver", spec.Driver)
	}
	for _, opt := range spec.Options {
		args = append(args, "--storage-opt", opt)
	}
	return args
}

func storeDriverOf(spec *StoreSpec) string {
	if spec == nil {
		return ""
	}
	return spec.Driver
}

// storeImageArg is what podman is asked to save for a reference: the
// image ID of NAME@ID, which podman does not take whole; the reference
// itself otherwise.
func storeImageArg(image string) string {
	if i := strings.LastIndexByte(image, '@'); i >= 0 && imageID.MatchString(image[i+1:]) {
		return image[i+1:]
	}
	return image
}

// storeGraphRoot is the graph root of the store spec names, which must
// exist and hold a store (podman would make a new, empty one anywhere it
// is pointed at); with no spec, podman's configured one as far as it can
// be told without running podman (whose own reads wait for the lock):
// storage.conf's graphroot, else containers/storage's default. "" when
// neither is there: podman then says what it finds.
func storeGraphRoot(spec *StoreSpec) (string, error) {
	if spec != nil {
		fi, err := os.Stat(spec.GraphRoot)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("no container store at %s: no such directory", spec.GraphRoot)
		case err != nil:
			return "", fmt.Errorf("container store %s: %w", spec.GraphRoot, err)
		case !fi.IsDir():
			return "", fmt.Errorf("container store %s: not a directory", spec.GraphRoot)
		}
		if _, err := os.Stat(filepath.Join(spec.GraphRoot, "storage.lock")); err != nil {
			return "", fmt.Errorf("no container store at %s: it has no storage.lock (a store podman, buildah or CRI-O wrote has one)", spec.GraphRoot)
		}
		return spec.GraphRoot, nil
	}
	root := defaultGraphRoot()
	if _, err := os.Stat(filepath.Join(root, "storage.lock")); err != nil {
		return "", nil
	}
	return root, nil
}

// storageConfString is the string setting key of the storage.conf file
// at path (TOML, one line, as containers' files write it); "" when the
// file or the setting is not there.
func storageConfString(path, key string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `\s*=\s*(?:"([^"]*)"|'([^']*)')`)
	m := re.FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1]) + string(m[2])
}

// firstFile is the first of paths that exists; the last when none does.
func firstFile(paths ...string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return paths[len(paths)-1]
}

// defaultGraphRoot is where podman keeps its store for this user when no
// spec names one, worked out as containers/storage (1.43, Debian 12's
// podman's) does. Its system file is CONTAINERS_STORAGE_CONF, else the
// first of $XDG_CONFIG_HOME/containers/storage.conf,
// /etc/containers/storage.conf and /usr/share/containers/storage.conf.
// For root: that file's graphroot, else /var/lib/containers/storage. For
// a rootless user, its own file (CONTAINERS_STORAGE_CONF, else
// $XDG_CONFIG_HOME/containers/storage.conf, else
// ~/.config/containers/storage.conf): graphroot, else
// rootless_storage_path; else the system file's rootless_storage_path;
// else the XDG data directory's containers/storage. $UID and the
// environment's variables in a setting are expanded.
func defaultGraphRoot() string {
	home, _ := os.UserHomeDir()
	uid := os.Geteuid()
	expand := func(p string) string {
		return filepath.Clean(os.ExpandEnv(strings.ReplaceAll(p, "$UID", strconv.Itoa(uid))))
	}
	configHome := os.Getenv("XDG_CONFIG_HOME")
	system := os.Getenv("CONTAINERS_STORAGE_CONF")
	if _, set := os.LookupEnv("CONTAINERS_STORAGE_CONF"); !set {
		paths := []string{"/etc/containers/storage.conf", "/usr/share/containers/storage.conf"}
		if configHome != "" {
			paths = append([]string{filepath.Join(configHome, "containers", "storage.conf")}, paths...)
		}
		system = firstFile(paths...)
	}
	if uid == 0 {
		if g := storageConfString(system, "graphroot"); g != "" {
			return expand(g)
		}
		return "/var/lib/containers/storage"
	}
	own := os.Getenv("CONTAINERS_STORAGE_CONF")
	switch {
	case own != "":
	case configHome != "":
		own = filepath.Join(configHome, "containers", "storage.conf")
	case home != "":
		own = filepath.Join(home, ".config", "containers", "storage.conf")
	}
	for _, setting := range []struct{ file, key string }{
		{own, "graphroot"}, {own, "rootless_storage_path"}, {system, "rootless_storage_path"},
	} {
		if g := storageConfString(setting.file, setting.key); g != "" {
			return expand(g)
		}
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		return filepath.Join(x, "containers", "storage")
	}
	return filepath.Join(home, ".local", "share", "containers", "storage")
}

// storeLockFiles are the lock files of the store at graphRoot that a
// writer holds while it changes the store: containers/storage's
// storage.lock, and its layers' and images' locks (of driver, or of every
// driver there when driver is "").
func storeLockFiles(graphRoot, driver string) []string {
	files := []string{filepath.Join(graphRoot, "storage.lock")}
	d := driver
	if d == "" {
		d = "*"
	}
	for _, pattern := range []string{d + "-layers/layers.lock", d + "-images/images.lock"} {
		m, _ := filepath.Glob(filepath.Join(graphRoot, pattern))
		files = append(files, m...)
	}
	return files
}

// storeWriter is the pid of a process holding a write lock on one of
// files, and that file; 0 when none does. containers/storage locks with
// fcntl(2) record locks over the whole file (go.podman.io/storage's
// internal/rawfilelock), so F_GETLK asking for a read lock reports
// exactly a conflicting writer. The kernel never reports the caller's
// own locks, which this process does not take anyway.
func storeWriter(files []string) (int, string) {
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue // not there (yet): nobody holds it
		}
		lk := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: io.SeekStart}
		err = syscall.FcntlFlock(f.Fd(), syscall.F_GETLK, &lk)
		f.Close()
		if err == nil && lk.Type != syscall.F_UNLCK {
			return int(lk.Pid), name
		}
	}
	return 0, ""
}

// Polling bounds for a wait on a store's lock, which belongs to another
// program: there is nothing to wake on but the lock's release itself.
const (
	firstStorePoll = 10 * time.Millisecond
	maxStorePoll   = 250 * time.Millisecond
)

// waitStoreUnlocked returns once no process holds a write lock on the
// store at graphRoot, saying once that it waits and for whom; it fails
// when o.LockTimeout passes first, or ctx ends. podman takes the store's
// locks itself while it saves, so the image it reads is whole whatever
// starts after this returns; the wait is here to say why an export
// stands still, and to bound it.
func waitStoreUnlocked(ctx context.Context, what, graphRoot, driver string, o LocalOptions) error {
	if graphRoot == "" {
		return nil
	}
	files := storeLockFiles(graphRoot, driver)
	pid, _ := storeWriter(files)
	if pid == 0 {
		return nil
	}
	if o.Notify != nil {
		o.Notify(fmt.Sprintf("%s: waiting for the container store's lock held by pid %d (a running build?)", what, pid))
	}
	var deadline <-chan time.Time
	if o.LockTimeout > 0 {
		t := time.NewTimer(o.LockTimeout)
		defer t.Stop()
		deadline = t.C
	}
	for poll := firstStorePoll; ; poll = min(2*poll, maxStorePoll) {
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: waiting for the container store's lock: %w", what, context.Cause(ctx))
		case <-deadline:
			t.Stop()
			return fmt.Errorf("%s: the container store's lock is still held by pid %d after %v (--lock-timeout)", what, pid, o.LockTimeout)
		case <-t.C:
		}
		if pid, _ = storeWriter(files); pid == 0 {
			return nil
		}
	}
}

// streamCommand runs prog with args (tool names it in messages), each of
// setup applied to the command first, and reads its stdout as a docker
// save stream. A stdout that sends nothing for the source timeout ends
// the command. When the command fails by itself (not ended here), the
// last error line it wrote on stderr is the error: a stream it cut short
// because it failed is not reported as a truncated tar. It returns once
// the command has exited.
func streamCommand(ctx context.Context, what, tool, prog string, args []string, o Options, setup ...func(*exec.Cmd)) (*streamedArchive, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, prog, args...)
	for _, f := range setup {
		f(cmd)
	}
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: running %s: %w", what, tool, err)
	}
	body := &idleBody{rc: stdout, idle: sourceTimeout(o), cancel: cancel}
	a, rerr := readDockerSave(ctx, what, body, streamLimits{maxLayer: o.MaxBlobSize})
	if rerr != nil {
		cancel() // the command may still be writing: end it
	}
	werr := cmd.Wait()
	var exit *exec.ExitError
	byItself := errors.As(werr, &exit) && exit.ExitCode() >= 0 // not a signal
	if line := stderr.errorLine(); line != "" && byItself && ctx.Err() == nil {
		if a != nil {
			a.Close()
		}
		return nil, fmt.Errorf("%s: %s: %s", what, tool, line)
	}
	if body.stalled.Load() {
		// Killed for it: its stdout ended, which reads as a short tar.
		if a != nil {
			a.Close()
		}
		return nil, fmt.Errorf("%s: %s sent nothing for %v (--src-timeout): %w", what, tool, body.idle, ErrStalled)
	}
	if rerr != nil {
		return nil, rerr
	}
	if werr != nil {
		a.Close()
		return nil, fmt.Errorf("%s: %s: %v", what, tool, werr)
	}
	return a, nil
}

// sourceTimeout is how long a source on this machine may send nothing:
// --src-timeout, as for a registry.
func sourceTimeout(o Options) time.Duration {
	if o.Registry.Timeout > 0 {
		return o.Registry.Timeout
	}
	return DefaultSourceTimeout
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

// errorLine is the last line of what was written that says "Error:"
// (podman's), without that word; else the last non-empty line.
func (t *tailBuffer) errorLine() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(bytes.ToValidUTF8(t.b, []byte("?")))), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if _, msg, ok := strings.Cut(lines[i], "Error: "); ok {
			return strings.TrimSpace(msg)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}
