// Package catalog owns the on-disk layout of a static registry tree: every
// path, every name rule, every lock and every atomic publish. Exporters,
// collectors and servers go through it so that the layout is written down
// exactly once.
//
// The tree is the one TripleO's undercloud served from Apache, so existing
// vhosts keep working:
//
//	ROOT/v2/index.json                               "{}" (answers /v2/)
//	ROOT/v2/_catalog                                 {"repositories":[…]}
//	ROOT/v2/<repo>/blobs/<digest>                    blob bytes ("<digest>.gz" in legacy trees)
//	ROOT/v2/<repo>/manifests/<digest>/index.json     manifest bytes, exactly as published upstream
//	ROOT/v2/<repo>/manifests/<digest>/.htaccess      Content-Type and Docker-Content-Digest headers
//	ROOT/v2/<repo>/manifests/<tag>.type-map          Apache type map: the tag
//	ROOT/v2/<repo>/manifests/<digest>/manifest.<ext> nginx: hard link of index.json, <ext> = type
//	ROOT/v2/<repo>/manifests/.tags/<tag>             nginx: symlink -> ../<digest> (see nginx.go)
//	ROOT/v2/<repo>/manifests/.tags-fallback/<tag>    nginx: the same, for clients that take no index
//	ROOT/v2/<repo>/tags/list                         {"name":…,"tags":[…]}
//	ROOT/v2/<repo>/referrers/<digest>                OCI index of the manifests whose subject is <digest>
//	ROOT/.image-serve/empty-index.json               the referrers index of every other digest
//	ROOT/.image-serve/                               our own state: locks, error bodies
//	ROOT/.image-serve/incoming/                      blobs being downloaded, until verified
//
// Every file a server may read is written to a dot-named temporary file in
// its final directory, synced, and renamed into place, so a reader sees the
// old file or the new one and never a part. Dot files are never served.
//
// Every path is resolved inside the root, relative to a descriptor of the
// root directory (confine.go): a symlink in the tree that leads outside it
// makes a read, a write or a removal fail with ErrOutsideRoot, and nothing
// outside the root is ever read, followed or removed.
package tree
