package tree

// InspectUnlocked runs do with a View of the tree without taking the tree
// lock: for a reader that cannot take it, a user who may not write the
// tree (the tree opens its lock file for writing, creating it when
// missing). Nothing then holds collections and prunes off: what do reads
// may be part way through one, so a tag may name a manifest just removed.
// The catalog views fall back to it, reading as they always did; verify
// and every writer take the lock. It fails with ErrNoTree where there is
// no tree.
func (r *Root) InspectUnlocked(do func(*View) error) error {
	if err := r.RequireTree(); err != nil {
		return err
	}
	return do(&View{r})
}
