package tree

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// Crash points. Every durable step a writer of the tree takes — each
// directory made, rename into place, hard link, symlink, unlink,
// directory removal, directory sync, lock taken and mode changed — first calls
// crashPoint (the functions in durable.go do, and nothing else in this
// package touches the disk for writing). Two environment variables, read
// once when the process starts, turn the points on:
//
//	IMAGE_SERVE_CRASH_TRACE=FILE  append one line per step to FILE:
//	                              "<n> <kind> <path>", n counting from 1
//	IMAGE_SERVE_CRASH_AT=N        SIGKILL the process just before step N
//	                              is taken: steps 1..N-1 are done, step N
//	                              is not, and no deferred cleanup runs
//
// A test runs a command once with the trace to learn its N steps, then
// once per step with IMAGE_SERVE_CRASH_AT, and checks the tree each crash
// leaves (cmd/image-serve/crashpoint_test.go). Steps are numbered in the
// order they are taken, so the numbering is reproducible only when the
// command does one thing at a time (export --jobs 1, gc --jobs 1). With
// neither variable set, a crash point costs one comparison.
const (
	CrashAtEnv    = "IMAGE_SERVE_CRASH_AT"
	CrashTraceEnv = "IMAGE_SERVE_CRASH_TRACE"
)

// The kinds of durable step, as the trace names them.
const (
	stepMkdir   = "mkdir"
	stepRename  = "rename"
	stepLink    = "link"
	stepSymlink = "symlink"
	stepUnlink  = "unlink"
	stepRmdir   = "rmdir"
	stepSyncDir = "syncdir"
	stepLock    = "lock"
	stepChmod   = "chmod"
)

// crashArmed is set when either variable is: the only thing a crash
// point looks at otherwise.
var crashArmed bool

var crash struct {
	mu    sync.Mutex
	n     int64    // steps taken so far
	at    int64    // the step to die at; 0: none
	trace *os.File // nil: no trace
}

func init() {
	at, trace := os.Getenv(CrashAtEnv), os.Getenv(CrashTraceEnv)
	if at == "" && trace == "" {
		return
	}
	if err := armCrashPoints(at, trace); err != nil {
		// A test harness set these; a wrong value must not run the
		// command as if they were unset.
		fmt.Fprintln(os.Stderr, "image-serve:", err)
		os.Exit(2)
	}
}

func armCrashPoints(at, trace string) error {
	if at != "" {
		n, err := strconv.ParseInt(at, 10, 64)
		if err != nil || n < 1 {
			return fmt.Errorf("%s=%q: want a step number from 1", CrashAtEnv, at)
		}
		crash.at = n
	}
	if trace != "" {
		f, err := os.OpenFile(trace, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return fmt.Errorf("%s: %w", CrashTraceEnv, err)
		}
		crash.trace = f
	}
	crashArmed = true
	return nil
}

// crashPoint announces durable step kind on path, and dies there if it is
// the step IMAGE_SERVE_CRASH_AT names.
func crashPoint(kind, path string) {
	if !crashArmed {
		return
	}
	crashStep(kind, path)
}

func crashStep(kind, path string) {
	crash.mu.Lock()
	defer crash.mu.Unlock() // never reached when we die: nobody else steps on
	crash.n++
	line := fmt.Sprintf("%d %s %s\n", crash.n, kind, path)
	if crash.n == crash.at {
		line = "crash " + line
	}
	if crash.trace != nil {
		// Unbuffered: the line is in the file before the kill.
		_, _ = crash.trace.WriteString(line)
	}
	if crash.n != crash.at {
		return
	}
	fmt.Fprintf(os.Stderr, "image-serve: %s", line)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; take no further step
}
