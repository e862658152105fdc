package tree

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
)

// BenchmarkRead times the reads servers and collectors make per request or
// per manifest, one file each, on a warm page cache, without a lock (as a
// server reads) and holding the tree lock (as a writer or a collector
// does): what confining every path to the tree costs shows here first. The repository is nested
// ("ns/app"), as most are, so each path has six components below the root.
func BenchmarkRead(b *testing.B) {
	r, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Init(); err != nil {
		b.Fatal(err)
	}
	const repo = "ns/app"
	raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"%s"}}`, digest.FromString("c"))
	d := digest.FromBytes(raw)
	mt := "application/vnd.oci.image.manifest.v1+json"
	if err := r.putManifest(repo, d, mt, raw); err != nil {
		b.Fatal(err)
	}
	if err := r.putTag(repo, "v1", []TagVariant{{Digest: d, MediaType: mt}}); err != nil {
		b.Fatal(err)
	}
	blob := bytes.Repeat([]byte("x"), 4096)
	bd := digest.FromBytes(blob)
	if _, _, err := Fixture(r).PutBlob(repo, bd, int64(len(blob)), false, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name string
		read func() error
	}{
		{"manifest", func() error { _, err := r.readManifest(repo, d); return err }},
		{"type-map", func() error { _, err := r.TagVariants(repo, "v1"); return err }},
		{"headers", func() error { _, err := r.readHeaders(repo, d); return err }},
		{"tags-list", func() error { _, _, err := r.readTagsList(repo); return err }},
		{"catalog", func() error { _, err := r.readCatalog(); return err }},
		{"blob-open", func() error {
			f, err := r.openBlob(repo, bd)
			if err == nil {
				err = f.Close()
			}
			return err
		}},
		{"manifest-complete", func() error {
			if !r.manifestComplete(repo, d) {
				return fmt.Errorf("manifest %s not complete", d)
			}
			return nil
		}},
		{"manifest-changed", func() error { _, err := r.manifestChanged(repo, d); return err }},
		{"manifest-digests", func() error { _, err := r.manifestDigests(repo); return err }},
		{"blobs", func() error { _, err := r.blobs(repo); return err }},
		{"tags", func() error { _, err := r.tags(repo); return err }},
		{"stored-repositories", func() error { _, err := r.storedRepositories(); return err }},
	} {
		// A server reads holding no lock; a writer or a collector reads
		// holding the tree lock.
		for _, locked := range []bool{false, true} {
			name := bm.name + "/unlocked"
			if locked {
				name = bm.name + "/locked"
			}
			b.Run(name, func(b *testing.B) {
				if locked {
					l, err := r.lockShared()
					if err != nil {
						b.Fatal(err)
					}
					defer l.Unlock()
				}
				for b.Loop() {
					if err := bm.read(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
