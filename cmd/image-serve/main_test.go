package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testtree"
)

// binary is the image-serve command built once for every test: the
// end-to-end tests run it as users and cron do.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "image-serve-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "image-serve")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building image-serve: %v\n%s", err, out)
		os.Exit(1)
	}
	// Apache runs as www-data and must traverse the directories above
	// the trees the tests make.
	os.Chmod(dir, 0o755)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the command did.
type result struct {
	stdout, stderr string
	code           int
}

// run runs image-serve with args and returns its output and exit code.
func run(t testing.TB, args ...string) result {
	t.Helper()
	return runCmd(t, exec.Command(binary, args...))
}

func runCmd(t testing.TB, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running %v: %v", cmd.Args, err)
	}
	return r
}

// mustRun runs image-serve and fails the test unless it succeeds.
func mustRun(t testing.TB, args ...string) result {
	t.Helper()
	r := run(t, args...)
	if r.code != 0 {
		t.Fatalf("image-serve %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// snapshot describes every entry of a tree — path, type, mode, content
// hash — so a test can assert that a failed command changed nothing.
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	return testtree.Snapshot(t, dir, ".image-serve/locks")
}
