// Package testwait is the one way tests wait for something another
// goroutine or process does: poll a condition until it holds, under a
// deadline generous for a busy 2-core machine. The deadline bounds a
// wait; it is never what a test asserts, and no test sleeps instead of
// waiting for its condition.
package testwait

import (
	"testing"
	"time"
)

// Deadline is how long Until waits before it fails the test.
const Deadline = time.Minute

// poll is how often the condition is asked again: an interval, not an
// assumption about how long anything takes.
const poll = 10 * time.Millisecond

// Until calls cond until it holds, and fails the test when it still does
// not after Deadline, with what was waited for and cond's last word on
// why not.
func Until(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; %s", what, Deadline, why)
		}
		time.Sleep(poll)
	}
}
