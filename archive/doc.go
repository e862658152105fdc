// Package archive writes images of the tree to archives other tools load:
// `docker load`'s tarball (docker-archive), an OCI image layout as a
// directory (oci) or a tar (oci-archive), and the per-image directory form
// build tools consume (dir). docs/save.md describes each layout.
//
// It reads the tree only through a tree.View (tree.Root.Inspect: the tree
// lock held shared, so a collection cannot remove a blob being read) and
// names no path of the tree: blobs are opened with View.OpenBlobFile,
// manifests read with View.ReadManifest (bounded), configs with
// View.ReadBlob (bounded). Every blob copied is checked against its
// descriptor's size and digest while it streams.
//
// Everything a save needs is resolved before the first byte is written:
// a REF the tree does not hold, or an image a format cannot hold, fails
// with nothing written at the output. A file or directory written at the
// output is built under a temporary name in the same directory and
// renamed into place once whole, so it appears whole or not at all.
//
// It imports only tree and distribution of ours (internal/archtest).
package archive
