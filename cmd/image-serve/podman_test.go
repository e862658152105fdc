package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
)

// podmanTimeout bounds one podman command: a pull of a test image takes a
// second or two, even on a busy machine.
const podmanTimeout = 2 * time.Minute

// podmanStore is a podman image store of the test's own: vfs storage in a
// temporary root, so that nothing touches the machine's containers and no
// kernel overlay support is needed. Pulls need no daemon and no cgroups.
type podmanStore struct {
	t          *testing.T
	root, run  string
	binaryPath string
}

func newPodmanStore(t *testing.T) *podmanStore {
	t.Helper()
	path, err := exec.LookPath("podman")
	if err != nil {
		t.Fatalf("podman is not installed: %s", testserver.Setup)
	}
	dir := t.TempDir()
	return &podmanStore{t: t, root: filepath.Join(dir, "root"), run: filepath.Join(dir, "run"), binaryPath: path}
}

// podman runs podman against the store and returns its stdout.
func (p *podmanStore) podman(args ...string) string {
	p.t.Helper()
	all := append([]string{"--root", p.root, "--runroot", p.run, "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"}, args...)
	cmd := exec.Command(p.binaryPath, all...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
	case <-time.After(podmanTimeout):
		_ = cmd.Process.Kill()
		<-done
		p.t.Fatalf("podman %s: no answer in %v\n%s", strings.Join(args, " "), podmanTimeout, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// pull pulls ref (HOST/REPO:TAG) over plain HTTP for arch ("" for the
// machine's) and returns the architecture of the image podman stored,
// after removing it so that the next pull fetches again.
func (p *podmanStore) pull(ref, arch string) string {
	p.t.Helper()
	args := []string{"pull", "--tls-verify=false", "--quiet"}
	if arch != "" {
		args = append(args, "--arch", arch)
	}
	id := p.podman(append(args, ref)...)
	got := p.podman("image", "inspect", "--format", "{{.Architecture}}", id)
	p.podman("rmi", "--force", id)
	return got
}

// TestPodmanPull pulls the bundled multi-arch image and a docker-archive
// image with podman through Apache, nginx and the embedded server: the
// machine's platform by default, arm64 when asked. Guards: a client that
// takes the index must get each platform's own image from every server.
func TestPodmanPull(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/hello:latest")
	mustRun(t, "--root", root.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/archive:v1")
	servers := threeServers(t, root)
	p := newPodmanStore(t)
	for name, base := range servers {
		host := strings.TrimPrefix(base, "http://")
		for _, tc := range []struct{ ref, arch, want string }{
			{host + "/demo/hello:latest", "amd64", "amd64"},
			{host + "/demo/hello:latest", "arm64", "arm64"},
			{host + "/demo/archive:v1", "", "amd64"},
		} {
			if got := p.pull(tc.ref, tc.arch); got != tc.want {
				t.Errorf("%s: podman pull --arch %q %s stored a %s image, want %s", name, tc.arch, tc.ref, got, tc.want)
			}
		}
	}
}
