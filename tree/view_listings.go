package tree

// TagListing is a repository's tags/list beside the tags it should name.
type TagListing struct {
	Listing // tags/list as read; Path is set even when the read fails
	// ReadErr is why tags/list could not be read or parsed: a problem
	// of the tree, not a failure to look at it.
	ReadErr error
	// Listable are the tags whose type maps parse and offer a manifest,
	// sorted (ListableTags): what tags/list should name.
	Listable []string
}

// TagsList reads repo's type maps and its tags/list together, under the
// repository lock every tag writer holds from its type map to its
// tags/list (updateRepo): the two disagree only in a damaged tree, never
// because a writer was between its two steps when they were read. It
// waits for a writer of repo's tags as they wait for each other. Its
// error is a failure to take the lock or to read the type maps.
func (v *View) TagsList(repo string) (TagListing, error) {
	if err := v.r.checkRepoPath(repo); err != nil {
		return TagListing{}, err
	}
	l, err := v.r.lockRepo(repo)
	if err != nil {
		return TagListing{}, err
	}
	defer l.Unlock()
	tl := TagListing{Listing: Listing{Path: v.r.tagsListPath(repo)}}
	if tl.Listable, err = v.r.listableTags(repo); err != nil {
		return TagListing{}, err
	}
	tl.Names, tl.Exists, tl.ReadErr = v.r.readTagsList(repo)
	return tl, nil
}
