package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/distreg"
	"github.com/image-serve/image-serve/internal/testlock"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
)

// buildTimeout bounds one buildah build of a two-step image.
const buildTimeout = 2 * time.Minute

// buildahBud builds the Containerfile in dir as tag into p's store, with
// chroot isolation (no daemon, no user namespace of its own).
func (p *podmanStore) buildahBud(dir, tag string) {
	p.t.Helper()
	path, err := exec.LookPath("buildah")
	if err != nil {
		p.t.Fatalf("buildah is not installed: %s", testserver.Setup)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--root", p.root, "--runroot", p.run, "--storage-driver", "vfs",
		"bud", "--isolation", "chroot", "--quiet", "-t", tag, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("buildah bud -t %s: %v\n%s", tag, err, out)
	}
}

// buildContext writes a Containerfile FROM base whose RUN step runs a
// static Go program (the test images have no shell) that writes /built.
func buildContext(t *testing.T, base string) string {
	t.Helper()
	src, ctxDir := t.TempDir(), t.TempDir()
	writeFile := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(filepath.Join(src, "go.mod"), "module mk\n\ngo 1.26\n")
	writeFile(filepath.Join(src, "main.go"), "package main\n\nimport \"os\"\n\nfunc main() {\n\tif err := os.WriteFile(\"/built\", []byte(\"built by RUN\\n\"), 0o644); err != nil {\n\t\tpanic(err)\n\t}\n}\n")
	cmd := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "mk"), ".")
	cmd.Dir, cmd.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the RUN step's program: %v\n%s", err, out)
	}
	writeFile(filepath.Join(ctxDir, "Containerfile"), "FROM "+base+"\nCOPY mk /mk\nRUN [\"/mk\"]\n")
	return ctxDir
}

// exportJSON exports src as dest with --json and returns the digest the
// summary names.
func exportJSON(t *testing.T, root string, args ...string) string {
	t.Helper()
	r := mustRun(t, append([]string{"--root", root, "export", "--json"}, args...)...)
	var sum struct{ Digest string }
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil || sum.Digest == "" {
		t.Fatalf("export %v --json: %q, %v", args, r.stdout, err)
	}
	return sum.Digest
}

// pushImage pushes img to ref, a plain-HTTP registry's, and returns ref.
func pushImage(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestContainersStorageExport: an image pulled into a throwaway podman
// store and one built there with buildah (a RUN step, chroot isolation)
// export from containers-storage:; podman, skopeo and go-containerregistry
// pull both from Apache, nginx and the embedded server; exporting again,
// into the same tree or another, gives the same digests; verify is clean;
// and a source that is not there fails in one line, changing nothing.
func TestContainersStorageExport(t *testing.T) {
	reg := distreg.Start(t)
	img := testregistry.DockerImage(t, testregistry.Layer(t, 64<<10, types.DockerLayer), testregistry.Layer(t, 4<<10, types.DockerLayer))
	base := pushImage(t, reg.Host+"/local/base:1", img)
	p := newPodmanStore(t)
	p.podman("pull", "--tls-verify=false", "--quiet", base)
	p.buildahBud(buildContext(t, base), "localhost/built:1")

	store := "containers-storage:[vfs@" + p.root + "+" + p.run + "]"
	root := testserver.TempRoot(t)
	digests := map[string]string{
		"local/base": exportJSON(t, root.Dir(), store+base),
		"built":      exportJSON(t, root.Dir(), store+"localhost/built:1"),
	}
	for repo, d := range digests {
		if again := exportJSON(t, root.Dir(), store+map[string]string{"local/base": base, "built": "localhost/built:1"}[repo], "again/"+repo+":1"); again != d {
			t.Errorf("%s exported twice: %s, then %s", repo, d, again)
		}
	}
	other := t.TempDir()
	if d := exportJSON(t, other, store+"localhost/built:1"); d != digests["built"] {
		t.Errorf("built exported into another tree: %s, want %s", d, digests["built"])
	}
	// --from-file takes them too, into one more tree: the same digests.
	list := filepath.Join(t.TempDir(), "images.txt")
	if err := os.WriteFile(list, []byte(store+base+"\n"+store+"localhost/built:1 built:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var batch []struct{ Dest, Digest string }
	r := mustRun(t, "--root", t.TempDir(), "export", "--json", "--from-file", list)
	if err := json.Unmarshal([]byte(r.stdout), &batch); err != nil || len(batch) != 2 {
		t.Fatalf("export --from-file --json: %q, %v", r.stdout, err)
	}
	for _, b := range batch {
		if repo, _, _ := strings.Cut(b.Dest, ":"); b.Digest != digests[repo] {
			t.Errorf("--from-file exported %s as %s, want %s", b.Dest, b.Digest, digests[repo])
		}
	}
	if r := mustRun(t, "--root", root.Dir(), "verify"); !strings.Contains(r.stdout+r.stderr, "no problems") {
		t.Errorf("verify: %s%s", r.stdout, r.stderr)
	}

	images := []exported{fromArchive(t, root, "local/base", "1"), fromArchive(t, root, "built", "1")}
	for _, im := range images {
		if im.digest != digests[im.repo] {
			t.Errorf("%s: the tree tags %s, the export printed %s", im.repo, im.digest, digests[im.repo])
		}
		if bytes.Contains(im.raw, []byte(`"`+types.DockerUncompressedLayer+`"`)) {
			t.Errorf("%s: the manifest names an uncompressed layer:\n%s", im.repo, im.raw)
		}
	}
	servers := threeServers(t, root)
	puller := newPodmanStore(t)
	for srvName, baseURL := range servers {
		host := strings.TrimPrefix(baseURL, "http://")
		t.Run(srvName, func(t *testing.T) {
			for _, im := range images {
				checkSkopeo(t, host, im)
				checkGGCR(t, host, im)
				if got := puller.pull(host+"/"+im.repo+":"+im.tag, ""); got != "amd64" {
					t.Errorf("podman pull %s/%s:%s stored a %q image", host, im.repo, im.tag, got)
				}
			}
		})
	}

	// Bad input: one line, exit 1, the tree as it was.
	before := snapshot(t, root.Dir())
	for _, c := range []struct{ src, want string }{
		{store + "localhost/nosuch:1", "localhost/nosuch:1: image not known"},
		{"containers-storage:[vfs@" + filepath.Join(p.root, "nosuch") + "]app:1", "no container store at " + filepath.Join(p.root, "nosuch")},
	} {
		r := run(t, "--root", root.Dir(), "export", c.src, "bad:1")
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("export %s: exit %d, stderr %q; want 1 and one line containing %q", c.src, r.code, r.stderr, c.want)
		}
	}
	if r := run(t, "--root", root.Dir(), "export", "--preserve-digests", store+"localhost/built:1", "bad:1"); r.code != 1 || !strings.Contains(r.stderr, "--preserve-digests refuses") {
		t.Errorf("export --preserve-digests: exit %d, %q", r.code, r.stderr)
	}
	if after := snapshot(t, root.Dir()); after != before {
		t.Errorf("failed exports changed the tree:\n%s", testtree.Diff(before, after))
	}
	if _, err := os.Stat(filepath.Join(p.root, "nosuch")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a store was made where none was: %v", err)
	}

	// A build holding the store's lock: with --lock-timeout the export
	// gives up naming the holder, changing nothing; without, it waits,
	// saying so once, and goes on once the lock is released.
	pid, release := testlock.Hold(t, filepath.Join(p.root, "vfs-layers", "layers.lock"))
	r = run(t, "--root", root.Dir(), "--lock-timeout", "10ms", "export", store+"localhost/built:1", "locked:1")
	if want := fmt.Sprintf("the container store's lock is still held by pid %d after 10ms (--lock-timeout)", pid); r.code != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("export while a build holds the lock, --lock-timeout 10ms: exit %d, %q; want 1 and %q", r.code, r.stderr, want)
	}
	if after := snapshot(t, root.Dir()); after != before {
		t.Errorf("an export that gave up on the store's lock changed the tree:\n%s", testtree.Diff(before, after))
	}
	cmd := exec.Command(binary, "--root", root.Dir(), "export", store+"localhost/built:1", "locked:1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	want := fmt.Sprintf("waiting for the container store's lock held by pid %d (a running build?)", pid)
	for lines.Scan() && !strings.Contains(lines.Text(), want) {
	}
	if lines.Err() != nil || !strings.Contains(lines.Text(), want) {
		t.Fatalf("export while a build holds the lock: no %q on stderr (%v)", want, lines.Err())
	}
	release()
	rest, _ := io.ReadAll(stderr)
	if err := cmd.Wait(); err != nil || strings.Contains(string(rest), "waiting for") {
		t.Errorf("export after the lock was released: %v\n%s", err, rest)
	}
	mustRun(t, "--root", root.Dir(), "verify")
}

// dockerEngine is a Docker Engine of the test's own: vfs storage, no
// networking set up, its state and socket in a temporary directory.
type dockerEngine struct {
	sock   string
	client *http.Client
}

// startDockerEngine starts dockerd, or skips the test saying why it
// cannot run here: the one skip issue 24 allows.
func startDockerEngine(t *testing.T) *dockerEngine {
	t.Helper()
	path, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skip("docker-daemon: not tested: no dockerd here (make test-deps installs Debian's docker.io)")
	}
	if os.Geteuid() != 0 {
		t.Skip("docker-daemon: not tested: dockerd needs root")
	}
	dir, err := os.MkdirTemp("", "dockerd-") // short: a socket path has 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	e := &dockerEngine{sock: filepath.Join(dir, "docker.sock")}
	var log bytes.Buffer
	cmd := exec.Command(path, "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
		"--data-root", data, "--exec-root", filepath.Join(dir, "exec"), "--pidfile", filepath.Join(dir, "dockerd.pid"),
		"-H", "unix://"+e.sock)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Skipf("docker-daemon: not tested: dockerd does not start here: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
		// dockerd bind-mounts its data root on itself and may leave it.
		syscall.Unmount(data, syscall.MNT_DETACH)
		os.RemoveAll(dir)
	})
	e.client = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.sock)
	}}}
	eventually(t, "dockerd answering on "+e.sock, func() (bool, string) {
		select {
		case err := <-exited:
			t.Skipf("docker-daemon: not tested: dockerd exits here (%v):\n%s", err, tail(log.String(), 2000))
		default:
		}
		resp, err := e.client.Get("http://docker/_ping")
		if err != nil {
			return false, fmt.Sprintf("%v; its log: %s", err, tail(log.String(), 2000))
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("_ping: %s; its log: %s", resp.Status, tail(log.String(), 2000))
	})
	return e
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// load loads a docker save archive into the engine, as docker load does.
func (e *dockerEngine) load(t *testing.T, archive string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	resp, err := e.client.Post("http://docker/images/load?quiet=1", "application/x-tar", f)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		t.Fatalf("loading %s into dockerd: %s %s", archive, resp.Status, body)
	}
}

// TestDockerDaemonExport exports from a real Docker Engine (Debian's
// docker.io) through docker-daemon:, when this machine can start one:
// twice the same digest, verify clean, pulled by skopeo and
// go-containerregistry; an unknown image and a socket nobody answers on
// fail in one line, changing nothing.
func TestDockerDaemonExport(t *testing.T) {
	e := startDockerEngine(t)
	e.load(t, "../../testdata/hello.docker.tar")
	root := testserver.TempRoot(t)
	env := append(os.Environ(), "DOCKER_HOST=unix://"+e.sock)
	export := func(args ...string) result {
		cmd := exec.Command(binary, append([]string{"--root", root.Dir()}, args...)...)
		cmd.Env = env
		return runCmd(t, cmd)
	}
	var digests []string
	for _, dest := range []string{"", "again/hello:latest"} {
		args := []string{"export", "--json", "docker-daemon:hello:latest"}
		if dest != "" {
			args = append(args, dest)
		}
		r := export(args...)
		var sum struct{ Digest string }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil {
			t.Fatalf("export %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
		digests = append(digests, sum.Digest)
	}
	if digests[0] != digests[1] {
		t.Errorf("exported twice: %v", digests)
	}
	mustRun(t, "--root", root.Dir(), "verify")
	im := fromArchive(t, root, "hello", "latest")
	host := strings.TrimPrefix(testserver.Embedded(t, root), "http://")
	checkSkopeo(t, host, im)
	checkGGCR(t, host, im)

	before := snapshot(t, root.Dir())
	if r := export("export", "docker-daemon:nosuch:1", "bad:1"); r.code != 1 || !strings.Contains(r.stderr, "404") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("an unknown image: exit %d, %q", r.code, r.stderr)
	}
	cmd := exec.Command(binary, "--root", root.Dir(), "export", "docker-daemon:hello:latest", "bad:1")
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(t.TempDir(), "none.sock"))
	if r := runCmd(t, cmd); r.code != 1 || !strings.Contains(r.stderr, "no Docker Engine socket at") {
		t.Errorf("no socket: exit %d, %q", r.code, r.stderr)
	}
	if after := snapshot(t, root.Dir()); after != before {
		t.Errorf("failed exports changed the tree:\n%s", testtree.Diff(before, after))
	}
}
