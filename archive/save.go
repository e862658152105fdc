package archive

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Format is a kind of archive.
type Format string

// The formats Save writes (docs/save.md).
const (
	DockerArchive Format = "docker-archive"
	OCIArchive    Format = "oci-archive"
	OCI           Format = "oci"
	Dir           Format = "dir"
)

// Formats lists the formats, for a usage message.
var Formats = []Format{DockerArchive, OCIArchive, OCI, Dir}

// ParseFormat reads a --format value.
func ParseFormat(s string) (Format, error) {
	if f := Format(s); slices.Contains(Formats, f) {
		return f, nil
	}
	return "", fmt.Errorf("--format %q: want docker-archive, oci-archive, oci or dir", s)
}

// IsDir reports a format written as a directory rather than a file.
func (f Format) IsDir() bool { return f == OCI || f == Dir }

// DefaultPlatform is the child of an index docker-archive and dir save
// when none is asked for.
var DefaultPlatform = distribution.Platform{OS: "linux", Architecture: "amd64"}

// Options say what Save writes, and where.
type Options struct {
	Format Format
	// Platform is the child of an index REF that docker-archive and dir
	// save (each holds one image per REF); oci and oci-archive keep an
	// index whole.
	Platform distribution.Platform
	// Uncompressed: dir writes each layer as an uncompressed tar named by
	// its diff id (gzip layers only).
	Uncompressed bool
	// Output is the file (docker-archive, oci-archive) or directory (oci,
	// dir) to write; "-" writes an archive to Stdout.
	Output string
	Stdout io.Writer
	// Chose, if set, is told which child of an index a REF is saved as,
	// once every REF is resolved and before anything is written.
	Chose func(ref Ref, child distribution.Descriptor)
}

// Report is what Save wrote.
type Report struct {
	// Images: the distinct images written (docker-archive, dir), or the
	// entries of index.json (oci, oci-archive).
	Images int
	// Blobs: the blobs streamed from the tree — configs and layers; in
	// dir layers only (a config is written from the bytes read to check
	// it), once per image holding them.
	Blobs  int
	Bytes  int64 // their bytes, as the tree stores them
	Linked int   // of the blobs, those hard-linked from the tree (dir, oci) rather than copied
}

// CheckOutput refuses an output o cannot be written to whole (see Save),
// so a command can refuse it before it locks the tree.
func CheckOutput(o Options) error { return checkOutput(o.Output, o.Format.IsDir()) }

// Save writes the images refs name to o.Output in o.Format. It reads
// everything it needs but the blobs' bytes first, so a REF the tree does
// not hold (an error wrapping ErrNotInTree) or an image the format cannot
// hold fails with nothing written; then it streams the blobs from the
// tree, each once however many images share it, each it copies checked
// against its digest (a hard link is the tree's own file). A file or directory is written under a temporary name next to
// o.Output and renamed into place whole; on failure it is removed.
func Save(v *tree.View, refs []Ref, o Options) (*Report, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("no REF to save")
	}
	// A REF given twice is saved once: it names the same image, under
	// the same name.
	refs = slices.Clone(refs)
	seen := map[Ref]bool{}
	refs = slices.DeleteFunc(refs, func(r Ref) bool {
		dup := seen[r]
		seen[r] = true
		return dup
	})
	if err := checkOutput(o.Output, o.Format.IsDir()); err != nil {
		return nil, err
	}
	if o.Uncompressed && o.Format != Dir {
		return nil, fmt.Errorf("--uncompressed is for --format dir")
	}
	if o.Platform == (distribution.Platform{}) {
		o.Platform = DefaultPlatform
	}
	// The children chosen are told once every REF is resolved: a save
	// that fails to resolve one says only why.
	type choice struct {
		ref   Ref
		child distribution.Descriptor
	}
	var chosen []choice
	tell := o.Chose
	o.Chose = func(r Ref, c distribution.Descriptor) { chosen = append(chosen, choice{r, c}) }
	announce := func() {
		for _, c := range chosen {
			if tell != nil {
				tell(c.ref, c.child)
			}
		}
	}
	rd := reader{v}
	st := &stats{}
	var err error
	rep := &Report{}
	switch o.Format {
	case DockerArchive:
		var p *dockerPlan
		if p, err = planDocker(rd, refs, o); err == nil {
			announce()
			rep.Images = len(p.images)
			err = writeFile(o.Output, o.Stdout, func(w io.Writer) error {
				s := newTarSink(v.Context(), v, w, st)
				if err := p.write(s); err != nil {
					return err
				}
				return s.close()
			})
		}
	case OCIArchive, OCI:
		var p *ociPlan
		if p, err = planOCI(rd, refs); err == nil {
			rep.Images = len(p.index.Manifests)
			if o.Format == OCI {
				err = writeDir(o.Output, func(dir string) error { return p.write(newDirSink(v.Context(), v, dir, st)) })
			} else {
				err = writeFile(o.Output, o.Stdout, func(w io.Writer) error {
					s := newTarSink(v.Context(), v, w, st)
					if err := p.write(s); err != nil {
						return err
					}
					return s.close()
				})
			}
		}
	case Dir:
		var p *dirPlan
		if p, err = planDir(rd, refs, o); err == nil {
			announce()
			rep.Images = len(p.images)
			err = writeDir(o.Output, func(dir string) error {
				return p.write(newDirSink(v.Context(), v, dir, st), o.Uncompressed)
			})
		}
	default:
		err = fmt.Errorf("unknown format %q", o.Format)
	}
	if err != nil {
		return nil, err
	}
	rep.Blobs, rep.Bytes, rep.Linked = st.Blobs, st.Bytes, st.Linked
	return rep, nil
}

// blobName is where a layout stores blob d: blobs/<algorithm>/<hex>.
func blobName(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

// marshal is json.Marshal for the files a save makes up, which hold
// nothing that fails to marshal.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
