// Command plainexport is `make bench`'s stand-in for the exporter
// image-serve replaces (TripleO's Python image_export, as its uploader ran
// it): the same I/O pattern with none of the guarantees, to show what a
// minimal streaming writer costs on the same machine. It reads SOURCE
// lines (docker://HOST/REPO:TAG, plain HTTP, no authentication), exports
// two images at a time with four layer streams each, and writes every blob
// and manifest straight to its file under DEST/v2/REPO/ while hashing it
// (the Python exporter checked each layer's sha256 too), with no
// temporary file, no rename and no fsync. A blob already written in this
// run is hard-linked, never fetched twice, as the Python exporter
// cross-linked a layer another repository had.
//
//	plainexport [-images 2] [-layers 4] LIST DEST
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

const acceptManifests = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, " +
	"application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"

// chunk is what one read and one write move, the 1 MiB of the Python
// exporter's iter_content.
const chunk = 1 << 20

type exporter struct {
	dest   string
	layers int
	client *http.Client

	mu    sync.Mutex
	blobs map[string]*blob // by digest: fetched, or being fetched, in this run
}

// blob is one digest's first copy in this run.
type blob struct {
	done chan struct{}
	path string
	err  error
}

func main() {
	images := flag.Int("images", 2, "images exported at a time")
	layers := flag.Int("layers", 4, "blob streams per image")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: plainexport [-images N] [-layers N] LIST DEST")
		os.Exit(2)
	}
	refs, err := readList(flag.Arg(0))
	if err != nil {
		fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = *images * *layers
	e := &exporter{dest: flag.Arg(1), layers: *layers, client: &http.Client{Transport: tr}, blobs: map[string]*blob{}}
	next := make(chan string)
	errs := make(chan error, len(refs))
	var wg sync.WaitGroup
	for range *images {
		wg.Go(func() {
			for ref := range next {
				if err := e.image(ref); err != nil {
					errs <- fmt.Errorf("%s: %w", ref, err)
				}
			}
		})
	}
	for _, r := range refs {
		next <- r
	}
	close(next)
	wg.Wait()
	close(errs)
	failed := false
	for err := range errs {
		fmt.Fprintln(os.Stderr, "plainexport:", err)
		failed = true
	}
	if failed {
		os.Exit(1)
	}
}

func readList(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var refs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			refs = append(refs, strings.Fields(l)[0])
		}
	}
	return refs, sc.Err()
}

// image exports one docker://HOST/REPO:TAG: its manifest (an index's
// children too), then every blob, e.layers at a time.
func (e *exporter) image(ref string) error {
	rest, ok := strings.CutPrefix(ref, "docker://")
	if !ok {
		return errors.New("not a docker:// reference")
	}
	host, repoTag, _ := strings.Cut(rest, "/")
	i := strings.LastIndex(repoTag, ":")
	if i < 0 {
		return errors.New("no tag")
	}
	repo, tag := repoTag[:i], repoTag[i+1:]
	base := "http://" + host + "/v2/" + repo
	dir := filepath.Join(e.dest, "v2", repo)
	var digests []string
	var walk func(reference string, tagged bool) error
	walk = func(reference string, tagged bool) error {
		b, mt, d, err := e.manifest(base + "/manifests/" + reference)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, "manifests", d), b); err != nil {
			return err
		}
		if tagged {
			if err := writeFile(filepath.Join(dir, "manifests", tag), b); err != nil {
				return err
			}
		}
		var m struct {
			Manifests []struct{ Digest string }
			Config    struct{ Digest string }
			Layers    []struct{ Digest string }
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("manifest %s (%s): %w", d, mt, err)
		}
		for _, c := range m.Manifests {
			if err := walk(c.Digest, false); err != nil {
				return err
			}
		}
		if m.Config.Digest != "" {
			digests = append(digests, m.Config.Digest)
		}
		for _, l := range m.Layers {
			digests = append(digests, l.Digest)
		}
		return nil
	}
	if err := walk(tag, true); err != nil {
		return err
	}
	next := make(chan string)
	var (
		wg    sync.WaitGroup
		first error
		once  sync.Once
	)
	for range e.layers {
		wg.Go(func() {
			for d := range next {
				if err := e.blob(base, dir, d); err != nil {
					once.Do(func() { first = fmt.Errorf("blob %s: %w", d, err) })
				}
			}
		})
	}
	for _, d := range digests {
		next <- d
	}
	close(next)
	wg.Wait()
	return first
}

// manifest fetches one manifest and returns its bytes, media type and
// digest.
func (e *exporter) manifest(url string) ([]byte, string, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, "", "", err
	}
	req.Header.Set("Accept", acceptManifests)
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sum := sha256.Sum256(b)
	return b, resp.Header.Get("Content-Type"), "sha256:" + hex.EncodeToString(sum[:]), err
}

// blob puts blob d into dir/blobs: hard-linked from this run's first copy,
// or fetched, hashed on its way to the file and checked.
func (e *exporter) blob(base, dir, d string) error {
	path := filepath.Join(dir, "blobs", d)
	e.mu.Lock()
	b, seen := e.blobs[d]
	if !seen {
		b = &blob{done: make(chan struct{}), path: path}
		e.blobs[d] = b
	}
	e.mu.Unlock()
	if seen {
		<-b.done
		if b.err != nil || b.path == path {
			return b.err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.Link(b.path, path); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		return nil
	}
	b.err = e.fetch(base+"/blobs/"+d, path, d)
	close(b.done)
	return b.err
}

func (e *exporter) fetch(url, path, d string) error {
	resp, err := e.client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.CopyBuffer(io.MultiWriter(f, h), onlyReader{resp.Body}, make([]byte, chunk))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = check(h, d)
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// onlyReader hides everything but Read, so that io.CopyBuffer uses its
// buffer: read a chunk, hash it, write it, as the Python loop did.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func check(h hash.Hash, d string) error {
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
		return fmt.Errorf("content does not match its digest (got %s)", got)
	}
	return nil
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "plainexport:", err)
	os.Exit(1)
}
