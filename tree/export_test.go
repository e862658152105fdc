package tree

import (
	"io/fs"
	"testing"
)

// WithoutOpenat2 makes r resolve every path through os.Root, as on a
// system without openat2, so that tests cover both ways.
func WithoutOpenat2(r *Root) *Root {
	r.state.osRootOnly = true
	return r
}

// ReadDir is readDir, for the tests of package tree_test.
func ReadDir(r *Root, path string) ([]fs.DirEntry, error) { return r.readDir(path) }

// JournalPath is where the journal id of a tag move is written.
func JournalPath(r *Root, id string) string { return r.journalDir() + "/" + id + journalExt }

// ReadJournal reads the journal at path as a writer after a crash does.
func ReadJournal(r *Root, path string) error {
	_, err := r.readJournal(path)
	return err
}

// The sweeps, for the tests of package tree_test: Maintain and Publish
// run them, nothing outside the package does.
func SweepTemps(r *Root) (int, error)        { return r.sweepTemps() }
func SweepEmptyDirs(r *Root) (int, error)    { return r.sweepEmptyDirs() }
func SweepCatalogTemps(r *Root) (int, error) { return r.sweepCatalogTemps() }

// AfterReadDir runs fn each time a walk has read a directory, before it
// visits the entries, until the test ends. Tests using it must not run in
// parallel: the hook is the package's.
func AfterReadDir(t testing.TB, fn func(path string)) {
	afterReadDir = fn
	t.Cleanup(func() { afterReadDir = nil })
}
