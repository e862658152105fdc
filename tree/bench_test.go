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

// BenchmarkRenderPage times what every tag update adds to render the
// catalog page: reading the repositories and every type map of the tree
// (manifests and configs come from pageFacts after the first render),
// for a tree of TripleO's size (200 repositories of 3 tags) and five
// times that.
func BenchmarkRenderPage(b *testing.B) {
	for _, repos := range []int{200, 1000} {
		b.Run(fmt.Sprintf("repos=%d", repos), func(b *testing.B) {
			r, err := Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			if err := r.Init(); err != nil {
				b.Fatal(err)
			}
			const mt = "application/vnd.oci.image.manifest.v1+json"
			cfg := []byte(`{"os":"linux","architecture":"amd64","created":"2026-01-01T00:00:00Z"}`)
			cd := digest.FromBytes(cfg)
			for i := range repos {
				repo := fmt.Sprintf("tripleomaster/openstack-service-%04d", i)
				if _, _, err := Fixture(r).PutBlob(repo, cd, int64(len(cfg)), false, func() (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(cfg)), nil
				}); err != nil {
					b.Fatal(err)
				}
				raw := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"digest":%q,"size":%d}}`, mt, cd, len(cfg))
				d := digest.FromBytes(raw)
				if err := r.putManifest(repo, d, mt, raw); err != nil {
					b.Fatal(err)
				}
				for _, tag := range []string{"17.1", "17.1.1", "17.1.2"} {
					vs := []TagVariant{{Digest: d, MediaType: mt}}
					m, err := r.tagTypeMap(repo, tag, vs)
					if err != nil {
						b.Fatal(err)
					}
					// the tag alone, not the page: setting up is not what is timed
					if err := r.updateRepo(repo, func() error { return r.writeTag(repo, tag, vs, m) }); err != nil {
						b.Fatal(err)
					}
				}
			}
			if _, err := r.renderPage(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := r.renderPage(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
