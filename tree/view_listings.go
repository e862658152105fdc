package tree

// TagListing is a repository's tags/list beside the tags it should name.
type TagListing struct {
	Listable []string // the tags whose type maps parse and offer a manifest, sorted (ListableTags)
	Listed   []string // what tags/list names, in its order
	Present  bool     // whether tags/list is there
	// ReadErr is why tags/list could not be read or parsed: a problem
	// of the tree, not a failure to look at it.
	ReadErr error
}

// TagListing reads repo's type maps and its tags/list together, under the
// repository lock every tag writer holds from its type map to its
// tags/list (updateRepo): the two disagree only in a damaged tree, never
// because a writer was between its two steps when they were read. It
// waits for a writer of repo's tags as they wait for each other.
func (v *View) TagListing(repo string) (TagListing, error) {
	if err := v.r.checkRepoPath(repo); err != nil {
		return TagListing{}, err
	}
	l, err := v.r.lockRepo(repo)
	if err != nil {
		return TagListing{}, err
	}
	defer l.Unlock()
	var tl TagListing
	if tl.Listable, err = v.r.ListableTags(repo); err != nil {
		return TagListing{}, err
	}
	tl.Listed, tl.Present, tl.ReadErr = v.r.ReadTagsList(repo)
	return tl, nil
}
