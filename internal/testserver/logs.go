package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"testing"
)

// tailLines is how much of each log a failing test shows; the rest is in
// the file, whose path it prints.
const tailLines = 20

// keptDir is a directory for a server's configuration and logs that, unlike
// t.TempDir, outlives a failing test, so that its logs can be read whole
// afterwards. A passing test removes it.
func keptDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "image-serve-"+safeName.ReplaceAllString(t.Name(), "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

var safeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// tail is the last tailLines lines of the file at path, headed by its path:
// what a failing test prints of a log. A missing file gives "".
func tail(path string) string {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return fmt.Sprintf("--- %s: %v\n", path, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	head := fmt.Sprintf("--- %s", path)
	if len(lines) > tailLines {
		head += fmt.Sprintf(" (last %d of %d lines)", tailLines, len(lines))
		lines = lines[len(lines)-tailLines:]
	}
	var b strings.Builder
	b.WriteString(head + ":\n")
	for _, l := range lines {
		b.WriteString("    ")
		b.Write(l)
		b.WriteByte('\n')
	}
	return b.String()
}
