package tree

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The catalog page's sections: each published repository's rows, kept in
// .image-serve/page-sections with what they were rendered from, so that a
// tag update renders the rows of its own repository and not those of a
// thousand others (each row reads a manifest and a config). The page is
// the head, every section's rows in _catalog's order, and the foot; a
// section is reused only while its repository's listable tags offer what
// they offered (tagsFingerprint), so a kept section is a cache, never a
// source of truth: a missing, damaged or foreign file is rendered again
// from the disk, and a section a crash left behind is set right by the
// next writer of its repository or the next collection, which checks
// every one.

// maxPageSections bounds the read of the sections file: at about 100
// bytes a tag, a million tags.
const maxPageSections = 128 << 20

// pageSectionsVersion heads the file; another version is rendered again.
const pageSectionsVersion = "image-serve page sections 1"

type pageSection struct {
	repo        string
	fingerprint string // tagsFingerprint of what rows were rendered from
	tags        int
	newest      string // pageTimeFormat, "" when no config says
	rows        []byte
}

type pageSections []pageSection

func (s pageSections) find(repo string) (pageSection, bool) {
	for _, sec := range s {
		if sec.repo == repo {
			return sec, true
		}
	}
	return pageSection{}, false
}

// page assembles the page of the sections, in their order.
func (s pageSections) page() ([]byte, error) {
	h := pageHead{Repos: len(s)}
	rows := make([][]byte, 0, len(s))
	for _, sec := range s {
		h.TagCount += sec.tags
		if sec.newest > h.Newest { // the format sorts as time does
			h.Newest = sec.newest
		}
		rows = append(rows, sec.rows)
	}
	return assemblePage(h, rows...)
}

// marshal writes the sections: the version line, then per section a line
// "REPO FINGERPRINT TAGS NEWEST|- LEN" and LEN bytes of rows.
func (s pageSections) marshal() []byte {
	var b bytes.Buffer
	b.WriteString(pageSectionsVersion + "\n")
	for _, sec := range s {
		newest := strings.ReplaceAll(sec.newest, " ", "T")
		if newest == "" {
			newest = "-"
		}
		fmt.Fprintf(&b, "%s %s %d %s %d\n", sec.repo, sec.fingerprint, sec.tags, newest, len(sec.rows))
		b.Write(sec.rows)
	}
	return b.Bytes()
}

// readPageSections reads the kept sections and the file they were read
// from; nil and nil when there are none or the file cannot be trusted
// whole.
func (r *Root) readPageSections() (pageSections, []byte) {
	b, err := r.readSmall(r.pageSectionsPath(), maxPageSections)
	if err != nil {
		return nil, nil
	}
	s, err := parsePageSections(b)
	if err != nil {
		return nil, nil
	}
	return s, b
}

func parsePageSections(b []byte) (pageSections, error) {
	rd := bufio.NewReader(bytes.NewReader(b))
	if line, err := rd.ReadString('\n'); err != nil || line != pageSectionsVersion+"\n" {
		return nil, fmt.Errorf("not a sections file of this version")
	}
	var out pageSections
	for {
		line, err := rd.ReadString('\n')
		if err == io.EOF && line == "" {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		f := strings.Fields(line)
		if len(f) != 5 || ValidateRepo(f[0]) != nil || len(f[1]) != sha256.Size*2 {
			return nil, fmt.Errorf("bad section line %q", line)
		}
		tags, err1 := strconv.Atoi(f[2])
		n, err2 := strconv.Atoi(f[4])
		if err1 != nil || err2 != nil || tags < 0 || n < 0 || n > len(b) {
			return nil, fmt.Errorf("bad section line %q", line)
		}
		sec := pageSection{repo: f[0], fingerprint: f[1], tags: tags, rows: make([]byte, n)}
		if f[3] != "-" {
			sec.newest = strings.ReplaceAll(f[3], "T", " ")
		}
		if _, err := io.ReadFull(rd, sec.rows); err != nil {
			return nil, err
		}
		out = append(out, sec)
	}
}

// tagsFingerprint names what a repository's rows are rendered from: its
// name, and each listable tag with the manifests its type map offers.
func tagsFingerprint(repo string, tm typeMaps) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", repo)
	for _, tag := range tm.listable() {
		fmt.Fprintf(h, "%s", tag)
		for _, v := range tm.variants[tag] {
			fmt.Fprintf(h, " %s %s %g", v.Digest, v.MediaType, v.QS)
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
