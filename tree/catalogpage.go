package tree

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// The catalog page: index.html at the root, answering GET / on every
// server, a page a person opens to see what the registry holds. It is a
// derived file like _catalog and is written in the same step, under the
// catalog lock, by every writer that writes _catalog (rewriteCatalog,
// refreshCatalogFor, initCatalog) and by watch's re-derivation of a
// repository (deriveRepo): no writer can leave the two out of step.
//
// The tree renders it, not a package above: it must be derived where
// _catalog is, and the tree imports no package of ours but typemap and
// distribution. html/template is the standard library's and knows no
// HTTP.
//
// The page is a function of what the tree serves — the tags of tags/list,
// the manifests their type maps prefer, those manifests' configs — and of
// nothing else (no clock, no file time), so that two trees serving the
// same tags have the same page, byte for byte: a crashed writer run again
// leaves the page an uninterrupted one does. So a tag's time is when its
// image was built (its config's "created"), not when the tag was set.

//go:embed catalogpage.html.tmpl
var pageTemplateText string

// pageTemplate renders a pageData. html/template escapes every value by
// its context: platforms come from configs no one checked, and a hostile
// one stays text.
//
// It is parsed the first time a page is rendered, not at start-up: most
// commands (a sync with nothing to move, a view) render none.
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Parse(pageTemplateText))
})

// pageData is what the page shows.
type pageData struct {
	Repos int
	Tags  []pageTag
	// Newest is when the newest image was built, "" when no config says.
	Newest string
}

// pageTag is one row: a tag and what a pull of it fetches.
type pageTag struct {
	Ref       string // REPO:TAG, which the page's script completes to a pull command
	Digest    string // the preferred manifest's first 12 hex digits, as list --long shows it
	Platforms string // os/arch[/variant], comma-separated
	Size      string // manifests, configs and layers, each once, as list --long counts them
	Created   string // when the image was built, UTC; the newest platform's for an index
}

// pageTimeFormat is how the page writes times (UTC).
const pageTimeFormat = "2006-01-02 15:04"

// pagePath is the catalog page.
func (r *Root) pagePath() string { return filepath.Join(r.dir, pageFile) }

// pageSectionsPath keeps each repository's rows of the page, with what
// they were rendered from (pagesections.go).
func (r *Root) pageSectionsPath() string { return filepath.Join(r.dir, stateDir, pageSectionsFile) }

// writePage renders the catalog page from the disk — every repository's
// rows checked against its type maps — and writes it if it changed. Call
// it holding the catalog lock.
func (r *Root) writePage() error { return r.writePageFor(nil, true) }

// writePageFor renders the catalog page and writes it, and its sections,
// if they changed. The repositories are _catalog's when all is false (a
// writer that changed repos alone, _catalog already in step), listed from
// the disk when all is true. The rows of repos, of a repository the kept
// sections lack, and with all of every repository, are checked: rendered
// again unless the repository's tags offer what they were rendered from.
// Any other repository's rows are the kept ones, unread: a tag update in
// a tree of a thousand repositories reads one. Call it holding the
// catalog lock.
//
// The page is written before its sections, so that sections on disk were
// always written after the page that shows them: when what was rendered
// is what they already say and the page is there, a writer that is not a
// collection writes nothing (and reads no page to compare), which keeps
// a tag update in a large tree to a read of the sections and of its own
// repository. A collection compares the page itself.
func (r *Root) writePageFor(repos []string, all bool) error {
	b, out, keptRaw, err := r.renderPageFor(repos, all)
	if err != nil {
		return err
	}
	if len(out) == 0 {
		// No repository: nothing to keep (a fresh tree's skeleton is the
		// page alone), and kept sections of repositories gone are never
		// read again (a repository published anew is rendered anew).
		return r.writeIfChanged(r.pagePath(), b)
	}
	raw := out.marshal()
	same := bytes.Equal(raw, keptRaw)
	if same {
		if !all && r.isFile(r.pagePath()) {
			return nil
		}
		return r.writeIfChanged(r.pagePath(), b)
	}
	if err := r.publish(r.pagePath(), b); err != nil {
		return err
	}
	return r.publish(r.pageSectionsPath(), raw)
}

// renderPage renders the catalog page of the published repositories,
// every repository's rows checked (writePage without the writes).
func (r *Root) renderPage() ([]byte, error) {
	b, _, _, err := r.renderPageFor(nil, true)
	return b, err
}

// renderPageFor renders the page as writePageFor says, and returns it,
// its sections, and the kept sections' file as read (nil when none).
func (r *Root) renderPageFor(repos []string, all bool) ([]byte, pageSections, []byte, error) {
	var published []string
	var err error
	if all {
		published, err = r.repositories()
	} else {
		published, err = r.readCatalog()
	}
	if err != nil {
		return nil, nil, nil, err
	}
	kept, keptRaw := r.readPageSections()
	out := make(pageSections, 0, len(published))
	for _, repo := range published {
		sec, ok := kept.find(repo)
		if all || !ok || slices.Contains(repos, repo) {
			if sec, err = r.pageSection(repo, sec, ok); err != nil {
				return nil, nil, nil, err
			}
		}
		out = append(out, sec)
	}
	b, err := out.page()
	return b, out, keptRaw, err
}

// pageSection is repo's rows, those of kept when its tags offer what
// they were rendered from (the rows are a function of the repository's
// name, its listable tags and the manifests they offer: content
// addressed, they never change under the same digests).
func (r *Root) pageSection(repo string, kept pageSection, haveKept bool) (pageSection, error) {
	tm, err := r.readTypeMaps(repo)
	if err != nil {
		return pageSection{}, fmt.Errorf("catalog page: repository %s: %w", repo, err)
	}
	fp := tagsFingerprint(repo, tm)
	if haveKept && kept.fingerprint == fp {
		return kept, nil
	}
	sec := pageSection{repo: repo, fingerprint: fp}
	var rows []pageTag
	var newest time.Time
	for _, tag := range tm.listable() {
		t, created := r.describeForPage(repo, tag, tm.variants[tag])
		rows = append(rows, t)
		if created.After(newest) {
			newest = created
		}
	}
	sec.tags = len(rows)
	if !newest.IsZero() {
		sec.newest = newest.UTC().Format(pageTimeFormat)
	}
	var b bytes.Buffer
	if err := pageTemplate().ExecuteTemplate(&b, "rows", rows); err != nil {
		return pageSection{}, fmt.Errorf("catalog page: %w", err)
	}
	sec.rows = b.Bytes()
	return sec, nil
}

// EmptyPage is the catalog page of a tree with no tag: what Init writes
// into a fresh tree, and what the embedded server answers / with on a
// root that awaits its first export, so that it answers as Apache and
// nginx do on the skeleton config writes there.
func EmptyPage() []byte {
	b, err := renderPageData(pageData{Tags: []pageTag{}})
	if err != nil {
		panic(err) // the template and its data are ours: a test fails first
	}
	return b
}

// renderPageData renders a page of d's rows, as one section.
func renderPageData(d pageData) ([]byte, error) {
	var rows bytes.Buffer
	if err := pageTemplate().ExecuteTemplate(&rows, "rows", d.Tags); err != nil {
		return nil, fmt.Errorf("catalog page: %w", err)
	}
	return assemblePage(pageHead{Repos: d.Repos, TagCount: len(d.Tags), Newest: d.Newest}, rows.Bytes())
}

// pageHead is what the page's summary says.
type pageHead struct {
	Repos, TagCount int
	Newest          string
}

// assemblePage is the page: its head, the rows, its foot.
func assemblePage(h pageHead, rows ...[]byte) ([]byte, error) {
	var b bytes.Buffer
	if err := pageTemplate().ExecuteTemplate(&b, "head", h); err != nil {
		return nil, fmt.Errorf("catalog page: %w", err)
	}
	for _, r := range rows {
		b.Write(r)
	}
	if err := pageTemplate().ExecuteTemplate(&b, "foot", nil); err != nil {
		return nil, fmt.Errorf("catalog page: %w", err)
	}
	return b.Bytes(), nil
}

// describeForPage is the row of repo:tag, which offers variants, with
// when its image was built (zero when no config says). What cannot be
// read is left blank: the page shows what a pull would find, and verify
// names what is broken.
func (r *Root) describeForPage(repo, tag string, variants []TagVariant) (pageTag, time.Time) {
	top := Preferred(variants)
	t := pageTag{Ref: repo + ":" + tag, Digest: shortDigest(top.Digest)}
	w := pageWalk{r: r, repo: repo, seen: map[digest.Digest]bool{}}
	w.walk(top.Digest, 0)
	t.Platforms = strings.Join(w.platforms, ", ")
	t.Size = humanSize(w.size)
	if !w.created.IsZero() {
		t.Created = w.created.UTC().Format(pageTimeFormat)
	}
	return t, w.created
}

// shortDigest is a digest's first 12 hex digits, as docker, podman and
// list --long show it.
func shortDigest(d digest.Digest) string {
	if hex := d.Encoded(); len(hex) > 12 {
		return hex[:12]
	}
	return d.Encoded()
}

// humanSize writes n bytes in binary units, as list --long does.
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pageWalk adds up what a pull of one tag fetches, as list --long counts
// it: every manifest's bytes, and every config and layer once at its
// declared size.
type pageWalk struct {
	r         *Root
	repo      string
	seen      map[digest.Digest]bool
	size      int64
	platforms []string
	created   time.Time // the newest config's
}

func (w *pageWalk) walk(d digest.Digest, depth int) {
	if w.seen[d] || depth > 4 {
		return
	}
	w.seen[d] = true
	n, ok := w.r.facts.manifest(w.r, w.repo, d)
	if !ok {
		return
	}
	w.size += n.size
	for _, c := range n.children {
		if c.Platform != nil && depth == 0 && c.Platform.OS != "unknown" {
			w.platforms = append(w.platforms, c.Platform.String())
		}
		w.walk(c.Digest, depth+1)
	}
	if n.config != nil {
		w.blob(*n.config)
		c, ok := w.r.facts.config(w.r, w.repo, n.config.Digest)
		if ok && c.created.After(w.created) {
			w.created = c.created
		}
		if ok && depth == 0 && len(n.children) == 0 && c.platform != "" {
			w.platforms = append(w.platforms, c.platform)
		}
	}
	for _, b := range n.blobs {
		w.blob(b)
	}
	if depth == 0 && n.schema1Arch != "" {
		w.platforms = append(w.platforms, "linux/"+n.schema1Arch)
	}
}

// blob adds a blob once, at its declared size or, without one (schema1),
// the size of its file.
func (w *pageWalk) blob(d distribution.Descriptor) {
	if w.seen[d.Digest] || d.Digest == "" {
		return
	}
	w.seen[d.Digest] = true
	if d.Size >= 0 {
		w.size += d.Size
		return
	}
	if distribution.ValidateDigest(d.Digest) != nil {
		return
	}
	for _, p := range []string{w.r.blobPath(w.repo, d.Digest), w.r.legacyBlobPath(w.repo, d.Digest)} {
		if fi, err := w.r.stat(p); err == nil {
			w.size += fi.Size()
			return
		}
	}
}

// pageFacts keeps what the page read of manifests and configs, by
// digest: their bytes never change, so every rewrite of the page reads
// only the type maps of the tree again, not every manifest and config.
// Only what matches its digest is kept, so an entry holds for the
// manifest or config of that digest in any repository.
type pageFacts struct {
	mu        sync.Mutex
	manifests map[digest.Digest]pageManifest
	configs   map[digest.Digest]pageConfig
}

// pageManifest is what the page reads of a manifest.
type pageManifest struct {
	size        int64
	children    []distribution.Descriptor
	config      *distribution.Descriptor
	blobs       []distribution.Descriptor // layers, blobs, schema1's fsLayers (size -1)
	schema1Arch string
}

// pageConfig is what the page reads of an image config.
type pageConfig struct {
	platform string
	created  time.Time
}

// maxPageFacts bounds what pageFacts keeps: past it, it starts again
// empty (a tree that large costs its reads again, not memory).
const maxPageFacts = 1 << 16

func newPageFacts() *pageFacts {
	return &pageFacts{manifests: map[digest.Digest]pageManifest{}, configs: map[digest.Digest]pageConfig{}}
}

// manifest reads what the page needs of manifest d of repo, and false
// when it cannot be read or parsed.
func (f *pageFacts) manifest(r *Root, repo string, d digest.Digest) (pageManifest, bool) {
	f.mu.Lock()
	n, ok := f.manifests[d]
	f.mu.Unlock()
	if ok {
		return n, true
	}
	if distribution.ValidateDigest(d) != nil {
		return n, false
	}
	raw, err := r.readManifest(repo, d)
	if err != nil {
		return n, false
	}
	m, err := distribution.ParseManifest(raw)
	if err != nil {
		return n, false
	}
	n = pageManifest{size: int64(len(raw)), children: m.Manifests, config: m.Config,
		blobs: slices.Concat(m.Layers, m.Blobs)}
	for _, l := range m.FSLayers {
		n.blobs = append(n.blobs, distribution.Descriptor{Digest: l.BlobSum, Size: -1})
	}
	if m.SchemaVersion == 1 {
		n.schema1Arch = m.Architecture
	}
	if d.Validate() == nil && d.Algorithm().Available() && d.Algorithm().FromBytes(raw) == d {
		f.mu.Lock()
		if len(f.manifests) >= maxPageFacts {
			clear(f.manifests)
		}
		f.manifests[d] = n
		f.mu.Unlock()
	}
	return n, true
}

// config reads what the page needs of config d of repo, and false when
// it cannot be read or is no JSON.
func (f *pageFacts) config(r *Root, repo string, d digest.Digest) (pageConfig, bool) {
	f.mu.Lock()
	c, ok := f.configs[d]
	f.mu.Unlock()
	if ok {
		return c, true
	}
	raw, err := r.readBlob(repo, d, MaxManifestSize)
	if err != nil {
		return c, false
	}
	ic, err := distribution.ParseImageConfig(raw)
	if err != nil {
		return c, false
	}
	if ic.OS != "" && ic.Architecture != "" {
		c.platform = distribution.Platform{OS: ic.OS, Architecture: ic.Architecture, Variant: ic.Variant}.String()
	}
	if ic.Created != nil {
		c.created = *ic.Created
	}
	if d.Algorithm().Available() && d.Algorithm().FromBytes(raw) == d {
		f.mu.Lock()
		if len(f.configs) >= maxPageFacts {
			clear(f.configs)
		}
		f.configs[d] = c
		f.mu.Unlock()
	}
	return c, true
}
