// Package bundle is the format of air-gapped transfers: an inventory (what
// a tree holds, to compute a delta against), and a bundle (the images a
// site lacks, as one tar stream or as parts of one), with the reader that
// checks a bundle while it streams. It is a pure format: it imports
// nothing of ours but distribution, and never touches a tree; the
// commands that read a tree (inventory, bundle create) and the exporter
// that loads a bundle into one hand it bytes.
//
// A bundle is a tar, written and read as a stream, its members in a fixed
// order:
//
//	bundle.json                  the descriptor (Descriptor): format version,
//	                             the tags it publishes, its members, the
//	                             blobs the far side must already hold
//	manifests/sha256/<hex>       every manifest and index of the images
//	blobs/sha256/<hex>           configs first, then layers
//
// Every member but the descriptor is named by its sha256, which is its
// checksum: the reader hashes each member while it streams and fails at
// its end when the bytes differ. Split (WriteParts), each part is a tar of
// whole members beginning with part.json (PartHeader): the bundle's id
// (the sha256 of its descriptor), the part's number and count, and the
// name, size and sha256 of each member the part holds, so that parts can
// be loaded in any order and a part of another bundle is told apart.
package bundle
