// Package imagefs is the file-system semantics of container image layers:
// a layer's tar stream read entry by entry (gzip, zstd, xz or plain,
// decompressed as a stream in bounded memory, a decompression bomb
// refused), the entries of a stack of layers applied in order into the
// image's final file system — whiteouts and opaque directories applied by real path, hard links
// resolved within the image, nothing ever followed out of it — and the
// difference between two file systems.
//
// It reads no file by name and knows nothing of the tree: callers hand it
// streams and entry lists. It imports nothing of image-serve's but
// distribution.
package imagefs
