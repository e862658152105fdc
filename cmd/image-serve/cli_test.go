package main

import (
	"flag"
	"io"
	"testing"
	"time"
)

// TestFlagMessagesParsed pins onUsageError's reading of the flag
// package's complaints (urfave/cli parses with it): if a Go release words
// them differently, the regexps stop matching and users would get the
// flag package's text instead of our one line with a suggestion — this
// test fails first.
func TestFlagMessagesParsed(t *testing.T) {
	fs := flag.NewFlagSet("image-serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("jobs", 1, "")
	fs.Duration("grace", time.Hour, "")
	fs.Bool("dry-run", false, "")
	for _, tc := range []struct {
		args      []string
		undefined string
		badValue  [2]string // value, flag
	}{
		{args: []string{"--nope"}, undefined: "nope"},
		{args: []string{"-x-y"}, undefined: "x-y"},
		{args: []string{"--jobs=many"}, badValue: [2]string{"many", "jobs"}},
		{args: []string{"--grace", "soon"}, badValue: [2]string{"soon", "grace"}},
		{args: []string{"--dry-run=maybe"}, badValue: [2]string{"maybe", "dry-run"}},
	} {
		err := fs.Parse(tc.args)
		if err == nil {
			t.Fatalf("%v: parsed", tc.args)
		}
		msg := err.Error()
		if tc.undefined != "" {
			m := undefinedFlag.FindStringSubmatch(msg)
			if m == nil || m[1] != tc.undefined {
				t.Errorf("%v: %q not read as an unknown flag %q (got %q)", tc.args, msg, tc.undefined, m)
			}
			continue
		}
		m := badFlagValue.FindStringSubmatch(msg)
		if m == nil || m[1] != tc.badValue[0] || m[2] != tc.badValue[1] {
			t.Errorf("%v: %q not read as value %q of flag %q (got %q)", tc.args, msg, tc.badValue[0], tc.badValue[1], m)
		}
	}
}
