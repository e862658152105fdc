package distribution

import "encoding/json"

// TagsList is the body of GET /v2/<name>/tags/list.
type TagsList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// Catalog is the body of GET /v2/_catalog.
type Catalog struct {
	Repositories []string `json:"repositories"`
}

// Marshal is the list as compact JSON; a nil Tags is written as null,
// which clients read as no tags.
func (l TagsList) Marshal() []byte {
	b, _ := json.Marshal(l) // strings only
	return b
}

// Marshal is the catalog as compact JSON.
func (c Catalog) Marshal() []byte {
	b, _ := json.Marshal(c) // strings only
	return b
}

// ParseTagsList reads a tags/list body. It checks only that it is one.
func ParseTagsList(b []byte) (TagsList, error) {
	var l TagsList
	err := json.Unmarshal(b, &l)
	return l, err
}

// ParseCatalog reads a _catalog body. It checks only that it is one.
func ParseCatalog(b []byte) (Catalog, error) {
	var c Catalog
	err := json.Unmarshal(b, &c)
	return c, err
}
