package gc

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// TestRepairInterruptedKeepsBlobs: a signal (the root's context) stops
// verify --repair's hashing of a blob between two chunks, and the blob,
// not read to its end, is no corrupt blob: it stays, and nothing is
// reported removed.
func TestRepairInterruptedKeepsBlobs(t *testing.T) {
	tr := newTree(t)
	big := tr.blob("app", bytes.Repeat([]byte("layer "), 4<<20)) // 24 MiB
	stop := errors.New("interrupted by SIGTERM")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(stop)
	root := tr.root.WithWaits(tree.Waits{Context: ctx})
	rep := &RepairReport{}
	var err error
	if merr := root.Maintain(tree.MaintainOptions{}, func(m *tree.Maint) error {
		v := &verifier{view: m.View(), hashed: map[[2]uint64]digest.Digest{}, report: &VerifyReport{}}
		err = repairRepo(root, m, v, "app", rep)
		return nil
	}); merr != nil {
		t.Fatal(merr)
	}
	if !errors.Is(err, stop) {
		t.Fatalf("repair of a repository after the signal: %v, want its cause", err)
	}
	if len(rep.RemovedBlobs) > 0 {
		t.Errorf("removed as corrupt: %v", rep.RemovedBlobs)
	}
	if fi, err := os.Stat(tree.Fixture(root).BlobPath("app", big.Digest)); err != nil || fi.Size() != 24<<20 {
		t.Errorf("the blob is not there any more: %v", err)
	}
}

// TestSettleInterrupted: verify's wait for a writer between its two
// renames ends with a signal (the root's context), with its cause, not
// after its last look.
func TestSettleInterrupted(t *testing.T) {
	tr := newTree(t)
	stop := errors.New("interrupted by SIGINT")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(stop)
	var v *verifier
	looks := 0
	var err error
	if ierr := tr.root.WithWaits(tree.Waits{Context: ctx}).Inspect(func(view *tree.View) error {
		v = &verifier{view: view, once: map[string]bool{}}
		err = v.settle(func() ([]Problem, error) {
			looks++
			return []Problem{{Path: "p", Message: "out of step"}}, nil
		})
		return nil
	}); ierr != nil {
		t.Fatal(ierr)
	}
	if !errors.Is(err, stop) || looks != 1 {
		t.Errorf("settle after the signal: %v after %d looks, want its cause after one", err, looks)
	}
	if len(v.problems) > 0 {
		t.Errorf("recorded %v: an interrupted look is no problem", v.problems)
	}
}
