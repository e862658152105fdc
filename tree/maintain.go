package tree

import "fmt"

// MaintainOptions tune Maintain.
type MaintainOptions struct {
	// ReadOnly is for a caller that only reads (a dry run): tag moves a
	// crash interrupted are left as they are, for the next writer.
	ReadOnly bool
	// Sweep removes, before do runs, what crashed writers left: temporary
	// files, blobs half downloaded, directories emptied. Ignored with
	// ReadOnly.
	Sweep bool
	// Salvage, when set, runs first, before the tag moves a crash
	// interrupted are finished: finishing one rewrites its repository's
	// tags/list and nginx's links from the type maps, which drops a tag
	// whose type map is lost though those still record it. verify
	// --repair writes such a tag's type map again there (SalvageTags).
	// Ignored with ReadOnly.
	Salvage func() error
}

// Maintain runs do with the tree lock held exclusively — it waits for
// exports and tag deletes in flight and holds new ones off until do
// returns — after running o.Salvage and finishing the tag moves a crash
// interrupted, so that do sees every tag where its writer meant it to be.
// It is how gc, delete's prune, verify --repair and migrate change what
// exports rely on.
//
// Maintain does not rewrite _catalog afterwards; callers that removed
// repositories call RefreshCatalog themselves, inside do.
func (r *Root) Maintain(o MaintainOptions, do func() error) error {
	l, err := r.LockExclusive()
	if err != nil {
		return err
	}
	defer l.Unlock()
	if !o.ReadOnly {
		if o.Salvage != nil {
			if err := o.Salvage(); err != nil {
				return err
			}
		}
		if _, err := r.completeJournals(); err != nil {
			return fmt.Errorf("finishing interrupted tag moves: %w", err)
		}
		if o.Sweep {
			if err := r.sweepCrashed(); err != nil {
				return err
			}
		}
	}
	return do()
}

// sweepCrashed removes what crashed writers left outside the
// repositories; temporary files inside them go repository by repository
// as gc sweeps each.
func (r *Root) sweepCrashed() error {
	if _, err := r.sweepCatalogTemps(); err != nil {
		return fmt.Errorf("removing temporary files: %w", err)
	}
	if _, err := r.sweepIncoming(); err != nil {
		return fmt.Errorf("removing temporary files: %w", err)
	}
	if _, err := r.sweepEmptyDirs(); err != nil {
		return fmt.Errorf("removing empty directories: %w", err)
	}
	return nil
}
