package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestViewsWithoutWriteAccess: list, inspect and du read the tree inside
// the tree lock, but a user who may not write the tree cannot take it; they
// still answer for that user, reading as they always did, and change
// nothing. Guards: moving the views under the tree lock made every view of
// an operator's unprivileged account fail with "tree.lock: permission
// denied".
func TestViewsWithoutWriteAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the views as nobody")
	}
	root := filepath.Join(badTreeDir(t), "tree")
	mustRun(t, "--root", root, "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:latest")
	mustRun(t, "--root", root, "-q", "export", "oci:../../testdata/hello-oci:latest", "other:v1")
	before := snapshot(t, root)
	for _, args := range [][]string{{"list"}, {"list", "--long"}, {"list", "hello", "other"}, {"du"}, {"inspect", "hello:latest"}} {
		cmd := exec.Command(binary, append([]string{"--root", root}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = append(os.Environ(), "HOME=/nonexistent")
		r := runCmd(t, cmd)
		if r.code != 0 || !strings.Contains(r.stdout, "hello") || r.stderr != "" {
			t.Errorf("image-serve %s as nobody: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	if after := snapshot(t, root); after != before {
		t.Errorf("the views changed the tree:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
