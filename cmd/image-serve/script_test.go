package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScript runs testdata/script/*.txtar: the command line as people type
// it — help, usage errors, log formats — against the binary TestMain built.
// Every script gets its own tree, $IMAGE_SERVE_ROOT in its work directory,
// and $TESTDATA, the module's fixtures.
func TestScript(t *testing.T) {
	testdata, err := filepath.Abs(filepath.Join("..", "..", "testdata"))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", filepath.Dir(binary)+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("IMAGE_SERVE_ROOT", filepath.Join(env.WorkDir, "root"))
			env.Setenv("TESTDATA", testdata)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":     cmdExits,
			"jsonerror": cmdJSONError,
			"truncate":  cmdTruncate,
			"flipbyte":  cmdFlipByte,
			"registry":  cmdRegistry,
		},
	})
}

// cmdExits is "exits CODE PROG [ARGS...]": run PROG like exec and assert
// its exit status is CODE (exec only tells zero from non-zero).
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: code %q: %v", args[0], err)
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// cmdTruncate is "truncate FILE SIZE": cut FILE to SIZE bytes in place,
// as a full disk or a crash of another tool would.
func cmdTruncate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: truncate FILE SIZE")
	}
	size, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	ts.Check(os.Truncate(ts.MkAbs(args[0]), size))
}

// cmdFlipByte is "flipbyte FILE": invert the first byte of FILE in place,
// keeping its size: bit rot.
func cmdFlipByte(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: flipbyte FILE")
	}
	f, err := os.OpenFile(ts.MkAbs(args[0]), os.O_RDWR, 0)
	ts.Check(err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 0)
	ts.Check(err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, 0)
	ts.Check(err)
}

// cmdJSONError is "jsonerror SUBSTRING": assert stderr is exactly one JSON
// record at level ERROR whose err field holds SUBSTRING.
func cmdJSONError(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: jsonerror SUBSTRING")
	}
	stderr := ts.ReadFile("stderr")
	if n := strings.Count(stderr, "\n"); n != 1 || !strings.HasSuffix(stderr, "\n") {
		ts.Fatalf("stderr is %d lines, want one JSON record", n)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(stderr), &rec); err != nil {
		ts.Fatalf("stderr is not JSON: %v", err)
	}
	if rec["level"] != "ERROR" {
		ts.Fatalf("level %v, want ERROR", rec["level"])
	}
	if msg := fmt.Sprint(rec["err"]); !strings.Contains(msg, args[0]) {
		ts.Fatalf("err %q does not say %q", msg, args[0])
	}
}
