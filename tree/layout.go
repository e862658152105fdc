package tree

// The names of the layout, one constant each: doc.go draws where they sit.
// Every path of the tree is built from these (and from repository names,
// tags and digests); the route table builds the servers' paths from them
// too, so a name changes here or nowhere.
const (
	v2Dir            = "v2"               // <root>/v2: what the servers serve
	stateDir         = ".image-serve"     // <root>/.image-serve: never served
	blobsDir         = "blobs"            // v2/<repo>/blobs/<digest>
	legacyBlobExt    = ".gz"              // v2/<repo>/blobs/<digest>.gz, TripleO's layer names
	manifestsDir     = "manifests"        // v2/<repo>/manifests/<digest>/
	manifestFile     = "index.json"       // …/manifests/<digest>/index.json; also v2/index.json
	headersFile      = ".htaccess"        // …/manifests/<digest>/.htaccess: Apache's headers
	typeMapExt       = ".type-map"        // …/manifests/<tag>.type-map
	tagsDir          = "tags"             // v2/<repo>/tags/list
	tagsListFile     = "list"             //
	referrersDir     = "referrers"        // v2/<repo>/referrers/<subject digest>
	catalogFile      = "_catalog"         // v2/_catalog
	pageFile         = "index.html"       // <root>/index.html: the catalog page, answering /
	pageSectionsFile = "page-sections"    // .image-serve/page-sections: the page's rows per repository (pagesections.go)
	errorsDir        = "errors"           // .image-serve/errors/<name>.json
	errorExt         = ".json"            //
	emptyIndexFile   = "empty-index.json" // .image-serve/empty-index.json: the empty referrers index
	incomingDir      = "incoming"         // .image-serve/incoming: blobs being downloaded
	journalDir       = "journal"          // .image-serve/journal/<id>.json: tag moves in flight
	journalExt       = ".json"            //
	pinsDir          = "pins"             // .image-serve/pins/<repo, / as +>/<digest>: digest pins
	layerIndexDir    = "layers"           // .image-serve/layers/<digest>: layers' entry lists (layerindex.go)
	locksDir         = "locks"            // .image-serve/locks/…
	treeLockFile     = "tree.lock"        // .image-serve/tree.lock
	gcLockFile       = "gc.lock"          // .image-serve/locks/gc.lock
	catalogLock      = "catalog"          // .image-serve/locks/catalog
	blobLockPrefix   = "blob-"            // .image-serve/locks/blob-<algorithm>-<hex>
	repoLockPrefix   = "repo-"            // .image-serve/locks/repo-<name, / as +>

	// <root>/lost+found: fsck's, when the root is a file system of its
	// own. No part of the tree: a root holding only it is empty.
	lostFoundDir = "lost+found"

	tagLinksDir      = ".tags"          // nginx: manifests/.tags/<tag> → ../<digest>
	fallbackLinksDir = ".tags-fallback" // nginx: manifests/.tags-fallback/<tag>
	typedLinkPrefix  = "manifest."      // nginx: manifests/<digest>/manifest.<ext>
)
