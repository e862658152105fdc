package gc

import "testing"

// BeforeDeleteTag runs fn each time Delete has read what a tag names,
// before it deletes the tag, until the test ends: the instant another
// writer may move the tag. Tests using it must not run in parallel: the
// hook is the package's.
func BeforeDeleteTag(t testing.TB, fn func(Ref)) {
	beforeDeleteTag = fn
	t.Cleanup(func() { beforeDeleteTag = nil })
}
