package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/distreg"
	"github.com/image-serve/image-serve/internal/testlock"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// rootlessUID is the unprivileged user the rootless tests run podman and
// image-serve as: nobody, which every Debian machine has, so that the
// tests add no user to the machine. It has no /etc/subuid range, so its
// podman maps only its own uid into its user namespace (podman's "single
// mapping"), which needs no newuidmap.
const rootlessUID = 65534

// rootlessUser is an unprivileged user's podman set-up of the test's own:
// HOME and XDG_RUNTIME_DIR in a temporary directory, a storage.conf there
// choosing the driver, with ignore_chown_errors (a store with a single
// mapping cannot give a file any owner but the user: containers/storage
// refuses such layers unless told to ignore it).
type rootlessUser struct {
	t         *testing.T
	driver    string // vfs or overlay
	dir       string // the user's directories are in it
	home, run string // HOME, XDG_RUNTIME_DIR
	graphRoot string // podman's default store for the user
	runRoot   string
}

// skipUnlessRoot skips a rootless test where it cannot switch users.
func skipUnlessRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("rootless stores: not tested: the test switches to an unprivileged user, which needs root (CI runs as root)")
	}
}

// newRootlessUser sets up the user with a store of driver, or skips the
// test saying exactly why this machine cannot run a rootless podman with
// it. With storagePath, the user's storage.conf puts the store there
// (rootless_storage_path, expanded by containers/storage) instead of
// ~/.local/share/containers/storage; graphRoot is what it expands to.
func newRootlessUser(t *testing.T, driver, storagePath, graphRoot string) *rootlessUser {
	t.Helper()
	skipUnlessRoot(t)
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is not installed: %s", testserver.Setup)
	}
	dir := testserver.SharedTempDir(t, "rootless-")
	u := &rootlessUser{t: t, driver: driver, dir: dir, home: filepath.Join(dir, "home"), run: filepath.Join(dir, "run")}
	u.graphRoot = filepath.Join(u.home, ".local", "share", "containers", "storage")
	settings := fmt.Sprintf("driver = %q\n", driver)
	if storagePath != "" {
		u.graphRoot = strings.ReplaceAll(graphRoot, "$HOME", u.home)
		settings += fmt.Sprintf("rootless_storage_path = %q\n", storagePath)
	}
	u.runRoot = filepath.Join(u.run, "containers")
	conf := filepath.Join(u.home, ".config", "containers", "storage.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("[storage]\n%s\n[storage.options.%s]\nignore_chown_errors = \"true\"\n", settings, driver)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(u.run, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{u.home, u.run} {
		if err := filepath.WalkDir(d, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, rootlessUID, rootlessUID)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// podman leaves a pause process holding the user's namespace; this
	// test started it, so it ends it (podman writes its pid here).
	t.Cleanup(func() { killRootlessPause(filepath.Join(u.run, "libpod", "tmp", "pause.pid")) })
	if out, err := u.command("unshare", "--user", "--map-root-user", "true").CombinedOutput(); err != nil {
		limit, _ := os.ReadFile("/proc/sys/user/max_user_namespaces")
		t.Skipf("rootless stores: not tested: uid %d cannot create a user namespace here (unshare --user: %v: %s; user.max_user_namespaces = %s)",
			rootlessUID, err, bytes.TrimSpace(out), bytes.TrimSpace(limit))
	}
	if out, err := u.command("podman", "--events-backend", "none", "info", "--format", "{{.Store.GraphDriverName}}").CombinedOutput(); err != nil {
		t.Skipf("rootless %s stores: not tested: uid %d's podman cannot use %s here: %v: %s", driver, rootlessUID, driver, err, bytes.TrimSpace(out))
	}
	return u
}

// killRootlessPause ends the pause process whose pid podman wrote in
// pidFile, when it is still the user's.
func killRootlessPause(pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	var st syscall.Stat_t
	if syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st) == nil && st.Uid == rootlessUID {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// command is prog with args run as the user, in its HOME, with its own
// environment: what the user's login shell would give it.
func (u *rootlessUser) command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command(prog, args...)
	cmd.Dir = u.home
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + u.home, "XDG_RUNTIME_DIR=" + u.run, "USER=nobody", "LOGNAME=nobody"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: rootlessUID, Gid: rootlessUID, Groups: []uint32{}}}
	cmd.WaitDelay = time.Second
	return cmd
}

// podman runs the user's podman and returns its stdout.
func (u *rootlessUser) podman(args ...string) string {
	u.t.Helper()
	all := append([]string{"--cgroup-manager", "cgroupfs", "--events-backend", "none"}, args...)
	cmd := u.command("podman", all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		u.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			u.t.Fatalf("podman %s as uid %d: %v\n%s", strings.Join(args, " "), rootlessUID, err, stderr.String())
		}
	case <-time.After(podmanTimeout):
		_ = cmd.Process.Kill()
		<-done
		u.t.Fatalf("podman %s as uid %d: no answer in %v\n%s", strings.Join(args, " "), rootlessUID, podmanTimeout, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// imageServe runs image-serve as the user.
func (u *rootlessUser) imageServe(args ...string) result {
	u.t.Helper()
	return runCmd(u.t, u.command(binary, args...))
}

// foreignFiles lists the files under dirs that are not the user's.
func (u *rootlessUser) foreignFiles(dirs ...string) []string {
	u.t.Helper()
	var foreign []string
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(path string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(path, &st); err != nil {
				return err
			}
			if st.Uid != rootlessUID || st.Gid != rootlessUID {
				foreign = append(foreign, fmt.Sprintf("%s (%d:%d)", path, st.Uid, st.Gid))
			}
			return nil
		})
		if err != nil {
			u.t.Fatal(err)
		}
	}
	return foreign
}

// TestRootlessStore: an unprivileged user's own podman store (rootless:
// its user namespace with a single mapping, ignore_chown_errors), vfs and
// overlay, exported by that user from containers-storage:REF into a tree
// it owns, and by root naming the store; both give the digest root's
// store gives the same image — a layer with a file the user's namespace
// cannot own included, which the store keeps as the user's but podman
// saves with its original owner —, verify clean, and pulled by skopeo,
// go-containerregistry and podman from the embedded server. Root's export
// leaves the store the user's: podman run by root on it would make the
// driver's directory root's (vfs: GRAPHROOT/vfs chowned; overlay:
// GRAPHROOT/overlay/l made), after which the user's podman fails.
func TestRootlessStore(t *testing.T) {
	skipUnlessRoot(t)
	reg := distreg.Start(t)
	owned := tarLayer(t, tarEntry{spec: "srv/", uid: 1000, gid: 1000}, tarEntry{spec: "srv/data", body: "owned by uid 1000\n", uid: 1000, gid: 1000})
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(owned)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img := testregistry.DockerImage(t, testregistry.Layer(t, 64<<10, types.DockerLayer), layer)
	base := pushImage(t, reg.Host+"/local/rootless:1", img)

	// The digest root's own store gives the image.
	p := newPodmanStore(t)
	p.podman("pull", "--tls-verify=false", "--quiet", base)
	want := exportJSON(t, testserver.TempRoot(t).Dir(), "containers-storage:[vfs@"+p.root+"+"+p.run+"]"+base, "rootless/app:1")
	puller := newPodmanStore(t) // here: podman's runroot may not be longer than 50 bytes

	for _, c := range []struct{ driver, storagePath, graphRoot string }{
		{driver: "vfs"},
		// Where the user's storage.conf moves the store, image-serve
		// looks for its lock there.
		{"overlay", "$HOME/store-$UID", "$HOME/store-" + strconv.Itoa(rootlessUID)},
	} {
		driver := c.driver
		t.Run(driver, func(t *testing.T) {
			u := newRootlessUser(t, driver, c.storagePath, c.graphRoot)
			u.podman("pull", "--tls-verify=false", "--quiet", base)
			if _, err := os.Stat(filepath.Join(u.graphRoot, "storage.lock")); err != nil {
				t.Fatalf("the user's podman made no store where its storage.conf says: %v", err)
			}

			// The user exports from its own store, podman's default for
			// it, into a tree it owns.
			userTree := filepath.Join(u.home, "tree")
			r := u.imageServe("--root", userTree, "export", "--json", "containers-storage:"+base, "rootless/app:1")
			var sum struct{ Digest string }
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil {
				t.Fatalf("export as uid %d: exit %d\n%s%s", rootlessUID, r.code, r.stdout, r.stderr)
			}
			if sum.Digest != want {
				t.Errorf("the user's export of its own store: %s; root's store gives %s", sum.Digest, want)
			}
			if r := u.imageServe("--root", userTree, "verify"); r.code != 0 || !strings.Contains(r.stdout+r.stderr, "no problems") {
				t.Errorf("verify as uid %d: exit %d\n%s%s", rootlessUID, r.code, r.stdout, r.stderr)
			}
			if foreign := u.foreignFiles(userTree); len(foreign) != 0 {
				t.Errorf("the user's tree holds files that are not its own:\n%s", strings.Join(foreign, "\n"))
			}
			root, err := tree.Open(userTree)
			if err != nil {
				t.Fatal(err)
			}
			im := fromArchive(t, root, "rootless/app", "1")
			host := strings.TrimPrefix(testserver.Embedded(t, root), "http://")
			checkSkopeo(t, host, im)
			checkGGCR(t, host, im)
			if got := puller.pull(host+"/rootless/app:1", ""); got != "amd64" {
				t.Errorf("podman pull %s/rootless/app:1 stored a %q image", host, got)
			}

			// Root exports from the user's store, naming it.
			spec := "containers-storage:[" + driver + "@" + u.graphRoot + "+" + u.runRoot + "]"
			rootTree := testserver.TempRoot(t)
			if d := exportJSON(t, rootTree.Dir(), spec+base, "rootless/app:1"); d != want {
				t.Errorf("root's export of the user's store: %s; root's own store gives %s", d, want)
			}
			if r := mustRun(t, "--root", rootTree.Dir(), "verify"); !strings.Contains(r.stdout+r.stderr, "no problems") {
				t.Errorf("verify: %s%s", r.stdout, r.stderr)
			}
			if foreign := u.foreignFiles(u.graphRoot, u.run); len(foreign) != 0 {
				t.Errorf("root's export left files in the user's store that are not the user's:\n%s", strings.Join(foreign, "\n"))
			}
			if got := u.podman("images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(got, "local/rootless:1") {
				t.Errorf("the user's podman images after root's export: %q", got)
			}

			// Sync lists the store with podman as export saves from it:
			// root naming the user's store lists it as the user, and the
			// store stays the user's; the user's own sync reads its
			// default store. Each exports the digest an export gives, and
			// finds it unchanged by the image's ID the next time.
			syncFile := filepath.Join(u.home, "sync.yaml")
			for _, c := range []struct {
				who, key string
				sync     func(args ...string) result
				tree     string
			}{
				{"root", spec, func(args ...string) result { return run(t, args...) }, rootTree.Dir()},
				{"the user", "containers-storage", u.imageServe, userTree},
			} {
				body := c.key + ":\n  prefix: rootless\n  images:\n    " + strings.TrimSuffix(base, ":1") + ": ['1']\n"
				if err := os.WriteFile(syncFile, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				for _, status := range []string{"synced", "unchanged"} {
					r := c.sync("--root", c.tree, "sync", "--json", "-f", syncFile)
					var recs []struct{ Dest, Status, Digest string }
					if r.code != 0 || json.Unmarshal([]byte(r.stdout), &recs) != nil || len(recs) != 1 || recs[0].Status != status || recs[0].Digest != want {
						t.Errorf("%s syncing the user's store: exit %d %s, want %s %s\n%s", c.who, r.code, r.stdout, status, want, r.stderr)
					}
				}
			}
			if foreign := u.foreignFiles(u.graphRoot, u.run); len(foreign) != 0 {
				t.Errorf("root's sync left files in the user's store that are not the user's:\n%s", strings.Join(foreign, "\n"))
			}

			// A build holding the user's store's lock stops the user's
			// export of its default store, and root's naming it.
			pid, release := testlock.Hold(t, filepath.Join(u.graphRoot, driver+"-layers", "layers.lock"))
			defer release()
			held := fmt.Sprintf("the container store's lock is still held by pid %d after 10ms (--lock-timeout)", pid)
			r = u.imageServe("--root", userTree, "--lock-timeout", "10ms", "export", "containers-storage:"+base, "locked:1")
			if r.code != 1 || !strings.Contains(r.stderr, held) {
				t.Errorf("the user's export while a build holds its store's lock: exit %d, %q; want 1 and %q", r.code, r.stderr, held)
			}
			r = run(t, "--root", rootTree.Dir(), "--lock-timeout", "10ms", "export", spec+base, "locked:1")
			if r.code != 1 || !strings.Contains(r.stderr, held) {
				t.Errorf("root's export while a build holds the user's store's lock: exit %d, %q; want 1 and %q", r.code, r.stderr, held)
			}
		})
	}
}
