// Package testlock gives tests a second process holding an fcntl write
// lock — the kind containers/storage takes on its store's lock files.
// F_GETLK does not report the caller's own locks, so the holder must be
// another process: the test binary itself, started again, which this
// package's init turns into the holder before any test runs.
package testlock

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// holderEnv names the file the re-started test binary is to lock.
const holderEnv = "IMAGE_SERVE_TEST_HOLD_FCNTL_LOCK"

func init() {
	if path := os.Getenv(holderEnv); path != "" {
		hold(path)
	}
}

// hold locks path, says "locked", and exits when stdin closes.
func hold(path string) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// Hold starts a process holding a whole-file fcntl write lock on path
// (created if missing) and returns once it holds it. release ends the
// process and waits for it; the test's cleanup releases it too.
func Hold(t *testing.T, path string) (pid int, release func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "locked\n" {
		stdin.Close()
		_ = cmd.Wait()
		t.Fatalf("lock holder: %q", line)
	}
	released := false
	release = func() {
		if !released {
			released = true
			stdin.Close()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(release)
	return cmd.Process.Pid, release
}
