package tree

import (
	"fmt"
	"html"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// pageRow is one tag row of the catalog page, as text.
type pageRow struct{ ref, digest, platforms, size, created string }

var pageRowRE = regexp.MustCompile(`(?m)^<tr><td>([^<]*)<td>([^<]*)<td>([^<]*)<td>([^<]*)<td>([^<]*)$`)

// readPage reads the tree's catalog page and its rows, unescaped.
func readPage(t *testing.T, r *Root) (string, []pageRow) {
	t.Helper()
	b, err := os.ReadFile(r.pagePath())
	if err != nil {
		t.Fatal(err)
	}
	var rows []pageRow
	for _, m := range pageRowRE.FindAllStringSubmatch(string(b), -1) {
		u := func(s string) string { return html.UnescapeString(s) }
		rows = append(rows, pageRow{u(m[1]), u(m[2]), u(m[3]), u(m[4]), u(m[5])})
	}
	return string(b), rows
}

// pageRefs are the REPO:TAG of the page's rows.
func pageRefs(t *testing.T, r *Root) []string {
	t.Helper()
	_, rows := readPage(t, r)
	refs := []string{}
	for _, row := range rows {
		refs = append(refs, row.ref)
	}
	return refs
}

// putPageImage writes an image of config (JSON) and one layer into repo
// and returns its manifest's digest; untagged.
func putPageImage(t *testing.T, r *Root, repo, config, layer string) digest.Digest {
	t.Helper()
	c := gcPutBlob(t, r, repo, []byte(config))
	l := gcPutBlob(t, r, repo, []byte(layer))
	return gcPutManifest(t, r, repo, fmt.Sprintf(
		`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":%q,"size":%d}]}`,
		gcOCIManifest, c, len(config), l, len(layer)))
}

func imageConfig(os, arch, created string) string {
	return fmt.Sprintf(`{"os":%q,"architecture":%q,"created":%q,"config":{}}`, os, arch, created)
}

func tagImage(t *testing.T, r *Root, repo, tag string, d digest.Digest, mt string) {
	t.Helper()
	if err := r.putTag(repo, tag, []TagVariant{{Digest: d, MediaType: mt, QS: 1}}); err != nil {
		t.Fatal(err)
	}
}

// TestPageShowsTags: the page lists every tag of tags/list, sorted by
// repository and tag, with its manifest's short digest, its platforms,
// the bytes a pull fetches and when the image was built; an index shows
// its children's platforms and its newest child's time.
func TestPageShowsTags(t *testing.T) {
	r := newTree(t)
	cfg := imageConfig("linux", "amd64", "2026-01-02T03:04:05Z")
	img := putPageImage(t, r, "ns/app", cfg, "layer one")
	tagImage(t, r, "ns/app", "v1", img, gcOCIManifest)

	arm := putPageImage(t, r, "ns/multi", imageConfig("linux", "arm64", "2026-03-04T05:06:07Z"), "arm layer")
	amd := putPageImage(t, r, "ns/multi", imageConfig("linux", "amd64", "2026-02-01T00:00:00Z"), "amd layer")
	armRaw, _ := r.readManifest("ns/multi", arm)
	amdRaw, _ := r.readManifest("ns/multi", amd)
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`+
		`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"amd64"}},`+
		`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}`,
		gcOCIManifest, amd, len(amdRaw), gcOCIManifest, arm, len(armRaw))
	idx := digest.FromString(index)
	if err := r.putManifest("ns/multi", idx, distribution.MediaTypeOCIIndex, []byte(index)); err != nil {
		t.Fatal(err)
	}
	if err := r.putTag("ns/multi", "latest", []TagVariant{
		{Digest: idx, MediaType: distribution.MediaTypeOCIIndex, QS: 1},
		{Digest: amd, MediaType: gcOCIManifest, QS: 0.001},
	}); err != nil {
		t.Fatal(err)
	}

	page, rows := readPage(t, r)
	imgRaw, _ := r.readManifest("ns/app", img)
	want := []pageRow{
		{"ns/app:v1", img.Encoded()[:12], "linux/amd64", fmt.Sprintf("%d B", len(imgRaw)+len(cfg)+len("layer one")), "2026-01-02 03:04"},
		{"ns/multi:latest", idx.Encoded()[:12], "linux/amd64, linux/arm64/v8", "", "2026-03-04 05:06"},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %+v\n%s", rows, want, page)
	}
	// the index, both images and their configs and layers
	var indexSize int
	for _, d := range []digest.Digest{idx, arm, amd} {
		raw, _ := r.readManifest("ns/multi", d)
		indexSize += len(raw)
	}
	indexSize += len(imageConfig("linux", "arm64", "2026-03-04T05:06:07Z")) + len("arm layer") +
		len(imageConfig("linux", "amd64", "2026-02-01T00:00:00Z")) + len("amd layer")
	want[1].size = humanSize(int64(indexSize))
	if !slices.Equal(rows, want) {
		t.Errorf("rows %+v, want %+v", rows, want)
	}
	if !strings.Contains(page, "2 repositories, 2 tags; newest image built 2026-03-04 05:06 UTC.") {
		t.Errorf("no summary of 2 repositories, 2 tags and the newest build in\n%s", page)
	}
}

// TestPageEscapes: what configs and indexes say (platforms) is not
// trusted: a hostile value is shown as text, never as markup or script.
// Repository names and tags are validated before any write, digests too;
// the renderer escapes them anyway.
func TestPageEscapes(t *testing.T) {
	const evil = `<script>alert(1)</script>"><img src=x onerror=alert(2)>&amp;`
	r := newTree(t)
	img := putPageImage(t, r, "ns/app", imageConfig(evil, `"'<b>`, "2026-01-02T03:04:05Z"), "layer")
	tagImage(t, r, "ns/app", "v1", img, gcOCIManifest)
	page, rows := readPage(t, r)
	for _, bad := range []string{"<script>alert", "<img", "<b>", `"><`} {
		if strings.Contains(page, bad) {
			t.Errorf("the page carries %q raw:\n%s", bad, page)
		}
	}
	if len(rows) != 1 || rows[0].platforms != evil+`/"'<b>` {
		t.Errorf("rows %+v, want the hostile platform shown as text", rows)
	}

	// Every field, as the template sees it.
	b, err := renderPageData(pageData{Repos: 1, Newest: evil, Tags: []pageTag{{Ref: evil, Digest: evil, Platforms: evil, Size: evil, Created: evil}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "<script>"); n != 1 {
		t.Errorf("%d <script> elements, want the page's own only:\n%s", n, b)
	}
	if strings.Contains(string(b), "<img") {
		t.Errorf("an <img> got through:\n%s", b)
	}
}

// TestPageSize: a few KiB per hundred tags. The empty page is under
// 2 KiB, and each tag costs at most 90 bytes beyond its REPO:TAG — its
// digest, two platforms, size and time included: a hundred tags of
// 30-character names are 12 KiB.
func TestPageSize(t *testing.T) {
	empty, err := renderPageData(pageData{Tags: []pageTag{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(empty) > 2<<10 {
		t.Errorf("the empty page is %d bytes, want at most 2 KiB", len(empty))
	}
	d := pageData{Repos: 50, Newest: "2026-12-07 20:00"}
	for i := range 100 {
		dg := digest.FromString(fmt.Sprint(i))
		d.Tags = append(d.Tags, pageTag{
			Ref:       fmt.Sprintf("tripleomaster/openstack-nova-compute-%02d:17.1.%d-20261207.1", i/2, i%2),
			Digest:    shortDigest(dg),
			Platforms: "linux/amd64, linux/arm64",
			Size:      humanSize(int64(400<<20 + i)),
			Created:   "2026-12-07 20:00",
		})
	}
	full, err := renderPageData(d)
	if err != nil {
		t.Fatal(err)
	}
	names := 0
	for _, tag := range d.Tags {
		names += len(tag.Ref)
	}
	if per := (len(full) - len(empty) - names) / len(d.Tags); per > 90 {
		t.Errorf("a tag costs %d bytes beyond its name, want at most 90", per)
	}
	t.Logf("empty page %d bytes; a hundred tags %d bytes more, %d of them their names", len(empty), len(full)-len(empty), names)
}

// TestPageFollowsWriters: every writer of _catalog rewrites the page in
// the same step: a tag put appears, a tag deleted (delete's Untag) goes,
// a collection's removal and catalog refresh, watch's re-derivation of a
// repository whose type map someone removed, and Init on a tree without
// a page.
func TestPageFollowsWriters(t *testing.T) {
	r := newTree(t)
	if refs := pageRefs(t, r); len(refs) != 0 {
		t.Fatalf("a fresh tree's page lists %q", refs)
	}
	a := putPageImage(t, r, "ns/app", imageConfig("linux", "amd64", "2026-01-01T00:00:00Z"), "a")
	tagImage(t, r, "ns/app", "v1", a, gcOCIManifest)
	tagImage(t, r, "ns/app", "v2", a, gcOCIManifest)
	o := putPageImage(t, r, "other", imageConfig("linux", "amd64", "2026-01-01T00:00:00Z"), "o")
	tagImage(t, r, "other", "latest", o, gcOCIManifest)
	if refs := pageRefs(t, r); !slices.Equal(refs, []string{"ns/app:v1", "ns/app:v2", "other:latest"}) {
		t.Fatalf("after tagging: %q", refs)
	}

	// delete's tag phase
	if err := r.Untag(func(u *Untagger) error { return u.DeleteTag("ns/app", "v1") }); err != nil {
		t.Fatal(err)
	}
	if refs := pageRefs(t, r); !slices.Equal(refs, []string{"ns/app:v2", "other:latest"}) {
		t.Fatalf("after delete: %q", refs)
	}

	// a repository removed by hand, then a collection's refresh
	if err := os.RemoveAll(r.repoDir("other")); err != nil {
		t.Fatal(err)
	}
	if err := r.Maintain(MaintainOptions{}, func(m *Maint) error { return m.RefreshCatalog() }); err != nil {
		t.Fatal(err)
	}
	if refs := pageRefs(t, r); !slices.Equal(refs, []string{"ns/app:v2"}) {
		t.Fatalf("after gc's refresh: %q", refs)
	}

	// a type map removed by hand (an rsync --delete), then watch
	if err := os.Remove(r.typeMapPath("ns/app", "v2")); err != nil {
		t.Fatal(err)
	}
	if err := r.Maintain(MaintainOptions{}, func(m *Maint) error {
		_, err := m.DeriveRepo("ns/app")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if refs := pageRefs(t, r); len(refs) != 0 {
		t.Fatalf("after watch's DeriveRepo: %q", refs)
	}

	// a tree written before the page: Init writes it, _catalog untouched
	tagImage(t, r, "ns/app", "v3", a, gcOCIManifest)
	catalog, _ := os.ReadFile(r.catalogPath())
	if err := os.Remove(r.pagePath()); err != nil {
		t.Fatal(err)
	}
	if err := r.Init(); err != nil {
		t.Fatal(err)
	}
	if refs := pageRefs(t, r); !slices.Equal(refs, []string{"ns/app:v3"}) {
		t.Fatalf("after Init: %q", refs)
	}
	if now, _ := os.ReadFile(r.catalogPath()); string(now) != string(catalog) {
		t.Errorf("Init rewrote _catalog: %s, was %s", now, catalog)
	}

	// the page removed by hand: watch hears of it and re-derives it
	if c := r.Classify(r.pagePath()); c != (Change{Catalog: true}) {
		t.Errorf("Classify(index.html) = %+v, want the catalog's", c)
	}
	if err := os.Remove(r.pagePath()); err != nil {
		t.Fatal(err)
	}
	var c CatalogChange
	if err := r.Maintain(MaintainOptions{}, func(m *Maint) (err error) {
		c, err = m.DeriveCatalog()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if refs := pageRefs(t, r); !c.Page || c.Rewritten || !slices.Equal(refs, []string{"ns/app:v3"}) {
		t.Fatalf("after watch's DeriveCatalog: %+v, %q", c, refs)
	}
}

// TestPageIsTheTreeContent: the page depends on what the tree serves and
// on nothing else (no clock, no file time): the same tags written at
// different times give the same bytes, so a crashed writer run again
// leaves the page an uninterrupted run does.
func TestPageIsTheTreeContent(t *testing.T) {
	var pages []string
	for i := range 2 {
		r := newTree(t)
		d := putPageImage(t, r, "ns/app", imageConfig("linux", "amd64", "2026-01-01T00:00:00Z"), "a")
		tagImage(t, r, "ns/app", "v1", d, gcOCIManifest)
		// the type map's time moves (another in each tree), nothing served does
		old := time.Now().Add(-time.Duration(i+1) * time.Hour)
		if err := os.Chtimes(r.typeMapPath("ns/app", "v1"), old, old); err != nil {
			t.Fatal(err)
		}
		if err := r.refreshCatalog(); err != nil {
			t.Fatal(err)
		}
		page, _ := readPage(t, r)
		pages = append(pages, page)
	}
	if pages[0] != pages[1] {
		t.Errorf("two trees of the same tags have different pages:\n%s\n---\n%s", pages[0], pages[1])
	}
}

// TestSweepPageTemps: a crashed page write leaves a temporary file in the
// root directory, which the catalog sweep removes; nothing else of the
// root directory is touched.
func TestSweepPageTemps(t *testing.T) {
	r := newTree(t)
	stale := filepath.Join(r.Dir(), "."+pageFile+"12345")
	sections := filepath.Join(r.Dir(), stateDir, "."+pageSectionsFile+"67890")
	admin := filepath.Join(r.Dir(), ".notes12345")
	for _, p := range []string{stale, sections, admin} {
		writeFile(t, p, []byte("x"))
	}
	n, err := r.sweepCatalogTemps()
	if err != nil || n != 2 {
		t.Errorf("sweepCatalogTemps = %d, %v; want 2", n, err)
	}
	for _, p := range []string{stale, sections} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it gone", p, err)
		}
	}
	if _, err := os.Stat(admin); err != nil {
		t.Errorf("the administrator's file: %v, want it kept", err)
	}
}

// TestPageSelfContained: no framework and no external resource: the page
// names no other file (no src, href, url() or @import) and its style and
// script are inline, one element each.
func TestPageSelfContained(t *testing.T) {
	r := newTree(t)
	d := putPageImage(t, r, "ns/app", imageConfig("linux", "amd64", "2026-01-01T00:00:00Z"), "a")
	tagImage(t, r, "ns/app", "v1", d, gcOCIManifest)
	page, _ := readPage(t, r)
	for _, ref := range []string{"src=", "href=", "url(", "@import", "http:", "https:", "//cdn"} {
		if strings.Contains(page, ref) {
			t.Errorf("the page names another resource (%q):\n%s", ref, page)
		}
	}
	for _, el := range []string{"<style>", "<script>"} {
		if n := strings.Count(page, el); n != 1 {
			t.Errorf("%d %s elements, want one, inline", n, el)
		}
	}
}
