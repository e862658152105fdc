// Package tree owns the on-disk layout of a static registry: the files
// Apache httpd, nginx and the embedded server serve as a read-only OCI /
// Docker Registry v2 API, and the bookkeeping beside them. No other
// package spells a path of the tree; they hold a role of it instead — a
// Reader to serve, a Publisher to export into — or call its protocols:
// Publish (blobs, then manifests and their headers, then tags, in that
// order), Maintain (everything that removes or rewrites under the tree
// lock held exclusively; its Maint removes what a caller marked, in the
// one removal order), Untag (delete's tag phase, beside exports), and
// Inspect (the View verify and the catalog views read through, under the
// lock held shared). *Root exports those handles and nothing else that
// names a file; tests reach further through Fixture.
//
// The layout, rooted at the administrator's --root:
//
//	index.html                                    the catalog page, GET /: written with _catalog
//	v2/index.json                                 {}: the answer to GET /v2/
//	v2/_catalog                                   {"repositories":[…]}: repositories with tags
//	v2/<repo>/blobs/<digest>                      blob bytes (TripleO's <digest>.gz read too)
//	v2/<repo>/manifests/<digest>/index.json       manifest bytes, exactly as the source sent them
//	v2/<repo>/manifests/<digest>/.htaccess        Content-Type and Docker-Content-Digest for Apache
//	v2/<repo>/manifests/<digest>/manifest.<ext>   for nginx: a hard link of index.json, typed by <ext>
//	v2/<repo>/manifests/<tag>.type-map            the tag: an Apache type map of its variants
//	v2/<repo>/manifests/.tags/<tag>               for nginx: symlink to ../<digest>
//	v2/<repo>/manifests/.tags-fallback/<tag>      for nginx: the linux/amd64 child of a multi-arch tag
//	v2/<repo>/tags/list                           {"name":…,"tags":[…]}: the tags that pull
//	v2/<repo>/referrers/<subject digest>          OCI index of the manifests naming that subject
//	.image-serve/errors/<name>.json               the JSON error bodies the static servers send
//	.image-serve/empty-index.json                 the referrers index of a digest nothing names
//	.image-serve/incoming/                        blobs being downloaded, never served
//	.image-serve/journal/<id>.json                tag moves of an all-or-nothing batch in flight
//	.image-serve/pins/<repo, / as +>/<digest>     a digest pin: that manifest kept without a tag
//	.image-serve/layers/<digest>                  a layer's entry list, for files and diff
//	.image-serve/page-sections                    the catalog page's rows per repository (a cache)
//	.image-serve/locks/                           flock files: the tree, gc, _catalog, repos, blobs
//
// layout.go names each of these once; routes.go derives from them what
// every server matches and serves. Every file a server may read is
// written to a dot-named temporary file in its directory and renamed into
// place, in dependency order, so a crash at any instant leaves every
// served tag resolvable (docs/crash-safety.md); every path below the root
// is resolved inside it (docs/confinement.md).
package tree
