package archive

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
)

// dirPlan is a dir save resolved: one directory per image however many
// REFs name it, numbered in the order of the first REF naming each.
type dirPlan struct {
	images []*image
	refs   []string // "NNN REF" lines of the refs file
}

func planDir(rd reader, refs []Ref, o Options) (*dirPlan, error) {
	p := &dirPlan{}
	at := map[digest.Digest]int{}
	for _, ref := range refs {
		img, err := rd.image(ref, o.Platform, Dir, o.Chose)
		if err != nil {
			return nil, err
		}
		if o.Uncompressed {
			for _, l := range img.m.Layers {
				if compression(l.MediaType) == "zstd" {
					return nil, fmt.Errorf("%s: layer %s is zstd-compressed: --uncompressed decompresses gzip layers only", ref, l.Digest)
				}
			}
		}
		i, ok := at[img.desc.Digest]
		if !ok {
			i = len(p.images)
			at[img.desc.Digest] = i
			p.images = append(p.images, img)
		}
		p.refs = append(p.refs, fmt.Sprintf("%03d %s", i, ref))
	}
	return p, nil
}

// compression names how a layer of mediaType is compressed: "gzip",
// "zstd", or "" for a plain tar.
func compression(mediaType string) string {
	switch {
	case strings.HasSuffix(mediaType, "gzip"):
		return "gzip"
	case strings.HasSuffix(mediaType, "zstd"):
		return "zstd"
	}
	return ""
}

// layerExt is the extension of a layer file: what its bytes are.
var layerExt = map[string]string{"gzip": ".tar.gz", "zstd": ".tar.zst", "": ".tar"}

// write writes, per image, a directory NNN/ holding config.json, digest
// (the manifest's), manifest.json (its bytes as the tree stores them),
// and per layer NNN.tar.gz (or .tar, .tar.zst: as the tree stores it)
// with NNN.sha256, its digest's hex; with uncompressed, NNN.tar, the
// layer decompressed, with its diff id's hex. Then refs: which REF is
// which directory.
func (p *dirPlan) write(s *dirSink, uncompressed bool) error {
	for i, img := range p.images {
		dir := fmt.Sprintf("%03d", i)
		if err := s.dir(dir); err != nil {
			return err
		}
		for _, f := range []struct {
			name string
			data []byte
		}{
			{"config.json", img.configRaw},
			{"digest", []byte(img.desc.Digest.String())},
			{"manifest.json", img.raw},
		} {
			if err := s.file(dir+"/"+f.name, f.data); err != nil {
				return err
			}
		}
		for j, l := range img.m.Layers {
			name := fmt.Sprintf("%s/%03d", dir, j)
			b := blobRef{img.repo, l}
			comp := compression(l.MediaType)
			switch {
			case uncompressed && comp == "gzip":
				if err := s.gunzip(name+".tar", b, img.diffIDs[j]); err != nil {
					return err
				}
				if err := s.file(name+".sha256", []byte(img.diffIDs[j].Encoded())); err != nil {
					return err
				}
				continue
			case uncompressed && l.Digest != img.diffIDs[j]:
				return fmt.Errorf("%s@%s: layer %s is a plain tar but its diff id is %s", img.repo, img.desc.Digest, l.Digest, img.diffIDs[j])
			}
			if err := s.blob(name+layerExt[comp], b); err != nil {
				return err
			}
			if err := s.file(name+".sha256", []byte(l.Digest.Encoded())); err != nil {
				return err
			}
		}
	}
	return s.file("refs", []byte(strings.Join(p.refs, "\n")+"\n"))
}

// gunzip writes blob b decompressed to name, checking the compressed
// bytes against b's digest and the tar against diffID.
func (s *dirSink) gunzip(name string, b blobRef, diffID digest.Digest) error {
	if err := diffID.Validate(); err != nil {
		return fmt.Errorf("layer %s of %s: diff id: %v", b.desc.Digest, b.repo, err)
	}
	f, err := openBlob(s.v, b)
	if err != nil {
		return err
	}
	defer f.Close()
	// The compressed bytes are hashed as gzip reads them; gzip reads
	// through a bufio.Reader of its own only when given none, so it gets
	// this one, and reads no further than the blob's end.
	zh := b.desc.Digest.Algorithm().Hash()
	zr := bufio.NewReaderSize(io.TeeReader(&ctxReader{s.ctx, io.LimitReader(f, b.desc.Size)}, zh), copyBuffer)
	gz, err := gzip.NewReader(zr)
	if err != nil {
		return fmt.Errorf("layer %s of %s: %v", b.desc.Digest, b.repo, err)
	}
	out, err := os.OpenFile(s.path(name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	h := diffID.Algorithm().Hash()
	_, err = io.CopyBuffer(io.MultiWriter(out, h), gz, s.buf)
	if err == nil {
		// What gzip left unread (padding after its last member) is
		// part of the blob's digest all the same.
		_, err = io.Copy(io.Discard, zr)
	}
	if err = syncClose(out, err); err != nil {
		return fmt.Errorf("layer %s of %s: %w", b.desc.Digest, b.repo, err)
	}
	if err := checkDigest(zh, b.desc.Digest, b.repo); err != nil {
		return err
	}
	if got := digest.NewDigest(diffID.Algorithm(), h); got != diffID {
		return fmt.Errorf("layer %s of %s: decompressed, it hashes to %s, not to its diff id %s", b.desc.Digest, b.repo, got, diffID)
	}
	s.stats.Blobs++
	s.stats.Bytes += b.desc.Size
	return nil
}
