package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
)

// TestSignalDuringLockWait interrupts commands at a deterministic point:
// while they wait for the tree lock, which the test holds. Each must say
// what it waits for, then end promptly on the signal with 128+N and one
// line, leaving the served tree as it was and nothing in $TMPDIR — the
// archive sources have unpacked or compressed into it by then.
func TestSignalDuringLockWait(t *testing.T) {
	dockerArchive := filepath.Join("..", "..", "testdata", "hello.docker.tar") // plain tar layers: compressed into $TMPDIR
	ociArchive := filepath.Join(t.TempDir(), "hello-oci.tar")                  // unpacked into $TMPDIR
	testtree.Tar(t, filepath.Join("..", "..", "testdata", "hello-oci"), ociArchive)
	for _, tc := range []struct {
		name string
		args []string
		sig  syscall.Signal
		code int
	}{
		{"export oci: on SIGTERM", []string{"export", "oci:../../testdata/hello-oci:latest", "new:v1"}, syscall.SIGTERM, 143},
		{"export oci: on SIGINT", []string{"export", "oci:../../testdata/hello-oci:latest", "new:v1"}, syscall.SIGINT, 130},
		{"export docker-archive:", []string{"export", "docker-archive:" + dockerArchive, "new:v1"}, syscall.SIGTERM, 143},
		{"export oci-archive:", []string{"export", "oci-archive:" + ociArchive + ":latest", "new:v1"}, syscall.SIGTERM, 143},
		{"gc", []string{"gc"}, syscall.SIGTERM, 143},
		{"delete", []string{"delete", "hello:latest"}, syscall.SIGTERM, 143},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := testserver.TempRoot(t)
			mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
			fx := tree.Fixture(root)
			before := snapshot(t, fx.V2Dir())
			// Exclusive for exports and gc, shared for delete (which
			// removes tags under the shared lock and prunes under the
			// exclusive one): either way the command must wait.
			hold := fx.LockExclusive
			if tc.args[0] == "delete" {
				hold = fx.LockShared
			}
			l, err := hold()
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock()

			tmp := t.TempDir()
			cmd := exec.Command(binary, append([]string{"--root", root.Dir()}, tc.args...)...)
			cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			stderr := waitForLine(t, cmd, "waiting for the tree")
			if err := cmd.Process.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			code, rest := waitExit(t, cmd, stderr)
			if code != tc.code {
				t.Errorf("exit %d after %v, want %d\n%s", code, tc.sig, tc.code, rest)
			}
			if lines := strings.Split(strings.TrimSpace(rest), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "interrupted by SIG") {
				t.Errorf("after the signal, want one line saying it was interrupted:\n%s", rest)
			}
			if tc.args[0] == "delete" {
				// Interrupted waiting to prune: the tag is gone, the rest
				// is left as a crash would leave it, for gc.
				l.Unlock()
				mustRun(t, "--root", root.Dir(), "verify")
			} else if after := snapshot(t, fx.V2Dir()); after != before {
				t.Errorf("the tree changed:\n%s", testtree.Diff(before, after))
			}
			if left, _ := os.ReadDir(tmp); len(left) > 0 {
				t.Errorf("left in $TMPDIR: %v", left)
			}
		})
	}
}

// TestLockTimeout: --lock-timeout gives up on a lock held throughout, with
// one line naming the lock, who holds it (this test's process) and the
// flag, and exit 1.
func TestLockTimeout(t *testing.T) {
	root := testserver.TempRoot(t)
	l, err := tree.Fixture(root).LockExclusive()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	r := run(t, "--root", root.Dir(), "-q", "--lock-timeout", "200ms", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	holder := fmt.Sprintf("(held by pid %d: ", os.Getpid())
	if r.code != 1 || !strings.Contains(r.stderr, "waiting for the tree") || !strings.Contains(r.stderr, holder) ||
		!strings.Contains(r.stderr, "gave up after 200ms (--lock-timeout)") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("exit %d, want 1 and one line naming the lock and --lock-timeout:\n%s", r.code, r.stderr)
	}
	if tags, _ := tree.Fixture(root).Tags("hello"); len(tags) != 0 {
		t.Errorf("tagged %v after giving up", tags)
	}
}

// waitForLine starts cmd and reads its stderr until a line containing
// want, with a deadline. It returns the rest of stderr as a reader.
func waitForLine(t *testing.T, cmd *exec.Cmd, want string) *bufio.Reader {
	t.Helper()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	r := bufio.NewReader(pipe)
	found := make(chan error, 1)
	var seen bytes.Buffer
	go func() {
		for {
			line, err := r.ReadString('\n')
			seen.WriteString(line)
			if strings.Contains(line, want) {
				found <- nil
				return
			}
			if err != nil {
				found <- err
				return
			}
		}
	}()
	select {
	case err := <-found:
		if err != nil {
			t.Fatalf("%v: stderr ended (%v) before a line saying %q:\n%s", cmd.Args, err, want, seen.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("%v: no line saying %q within a minute", cmd.Args, want)
	}
	return r
}

// waitExit waits, with a deadline, for cmd to end, and returns its exit
// code and the rest of its stderr.
func waitExit(t *testing.T, cmd *exec.Cmd, stderr io.Reader) (int, string) {
	t.Helper()
	rest := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(stderr) // EOF once the process has exited
		rest <- string(b)
	}()
	var out string
	select {
	case out = <-rest:
	case <-time.After(time.Minute):
		t.Fatalf("%v: still running a minute after the signal", cmd.Args)
	}
	_ = cmd.Wait() // only after the pipe is drained: Wait closes it
	return cmd.ProcessState.ExitCode(), out
}
