package testserver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ContainerdSetup is what a test says when containerd or ctr is missing.
const ContainerdSetup = "run the project's test setup (make test-deps), which installs the Debian package containerd"

// ContainerdSnapshotter is the snapshotter every ctr command of
// ContainerdDaemon.Ctr unpacks with. native copies each layer into a plain
// directory: unlike overlayfs it needs no kernel support (overlay on
// overlay, old kernels, some sandboxes), only the bind mounts containerd
// makes while it applies a layer, which need root like any unpacking.
const ContainerdSnapshotter = "native"

// ctrTimeout bounds every ctr command; pulls of the test images take well
// under a second.
const ctrTimeout = 30 * time.Second

// ContainerdDaemon is a containerd private to one test: its own root,
// state and socket in a temporary directory, in its own process group.
type ContainerdDaemon struct {
	// Address is the daemon's gRPC socket.
	Address string
	dir     string
	ctr     string
	p       *process
}

// ContainerdBinaries returns the paths of containerd and ctr, and fails t
// when either is not installed.
func ContainerdBinaries(t testing.TB) (containerd, ctr string) {
	t.Helper()
	find := func(name string) string {
		for _, p := range []string{name, "/usr/bin/" + name, "/usr/local/bin/" + name, "/usr/sbin/" + name} {
			if path, err := exec.LookPath(p); err == nil {
				return path
			}
		}
		t.Fatalf("%s is not installed: %s", name, ContainerdSetup)
		return ""
	}
	return find("containerd"), find("ctr")
}

// containerdConfig is the daemon's whole configuration. Everything
// containerd writes goes under dir, which the caller fills in.
//
//   - No CRI plugin (it wants CNI, a sandbox image and kubelet-ish
//     setup), no "opt" plugin (it creates /opt/containerd), and none of
//     the snapshotters that only probe and log (aufs, btrfs, devmapper,
//     zfs).
//   - Sockets are chowned to uid/gid: containerd chowns them to 0 by
//     default, which only root may do.
//   - content_sharing_policy "isolated": a namespace sees only the blobs
//     it fetched itself. With the default ("shared") a blob another
//     namespace already fetched is taken from the local store, so a
//     second pull of the same image would not download it again, and a
//     test would prove nothing about the server it pulls from.
const containerdConfig = `version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %[3]q
  uid = %[5]d
  gid = %[6]d

[ttrpc]
  address = %[4]q
  uid = %[5]d
  gid = %[6]d

[debug]
  level = "info"

[plugins."io.containerd.metadata.v1.bolt"]
  content_sharing_policy = "isolated"
`

// Containerd starts a containerd of its own for t, waits until it answers
// on its socket, and stops it when the test ends: SIGTERM to its process
// group (SIGKILL if it lingers), then anything still mounted under its
// directory is unmounted and the directory removed. Its log is shown when
// the test fails.
//
// Fetching content works unprivileged; unpacking (ctr images pull) mounts,
// which needs root.
func Containerd(t testing.TB) *ContainerdDaemon {
	t.Helper()
	bin, ctr := ContainerdBinaries(t)
	// Not t.TempDir: a unix socket path must fit in 108 bytes, and test
	// names make t.TempDir's long.
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &ContainerdDaemon{Address: filepath.Join(dir, "containerd.sock"), dir: dir, ctr: ctr}
	if len(d.Address)+len(".ttrpc") >= 108 {
		os.RemoveAll(dir)
		t.Fatalf("containerd socket path %s is too long for a unix socket: set TMPDIR to a shorter directory", d.Address)
	}
	conf := filepath.Join(dir, "config.toml")
	text := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		d.Address, d.Address+".ttrpc", os.Getuid(), os.Getgid())
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	output := filepath.Join(dir, "containerd.log")
	out, err := os.Create(output)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatal(err)
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(bin, "--config", conf)
	cmd.Env = serverEnv
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	d.p = &process{cmd: cmd, done: make(chan struct{}), logs: []string{conf, output}}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start containerd: %v", err)
	}
	go func() { d.p.err = cmd.Wait(); close(d.p.done) }()
	t.Cleanup(func() {
		d.p.stop()
		if t.Failed() {
			t.Logf("containerd diagnostics:\n%s", d.p.diagnostics())
		}
		if err := unmountUnder(dir); err != nil {
			t.Errorf("containerd cleanup: %v", err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("containerd cleanup: %v", err)
		}
	})
	if err := d.waitReady(); err != nil {
		t.Fatalf("containerd did not come up: %v", err)
	}
	return d
}

// waitReady waits until the socket accepts connections and ctr talks to
// the daemon.
func (d *ContainerdDaemon) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-d.p.done:
			return fmt.Errorf("exited: %v", d.p.err)
		default:
		}
		c, err := net.DialTimeout("unix", d.Address, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no socket %s after %v: %v", d.Address, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := d.Ctr("default", "version")
	return err
}

// Ctr runs ctr against the daemon in namespace (created on first use) and
// returns its standard output. The error carries the command line and
// standard error, where ctr writes its own error. Each command is bounded
// by a timeout, and unpacks with ContainerdSnapshotter.
func (d *ContainerdDaemon) Ctr(namespace string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctrTimeout)
	defer cancel()
	all := append([]string{"--address", d.Address, "--namespace", namespace}, args...)
	cmd := exec.CommandContext(ctx, d.ctr, all...)
	// ctr itself talks to the registry: no proxy, no host configuration.
	cmd.Env = append(slices.Clone(serverEnv), "CONTAINERD_SNAPSHOTTER="+ContainerdSnapshotter)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", ctrTimeout, err)
	}
	if err != nil {
		// Not stdout: on failure it is progress bars.
		return stdout.Bytes(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(all, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

// unmountUnder detaches every mount at or below dir, deepest first.
// containerd unmounts what it mounts to apply a layer, but a daemon killed
// in the middle would leave it behind, and RemoveAll would then descend
// into the mounted tree.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer f.Close()
	var points []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		p := unescapeMountinfo(fields[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			points = append(points, p)
		}
	}
	if err := s.Err(); err != nil {
		return err
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountinfo decodes the octal escapes (\040 for a space) the
// kernel writes in /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
