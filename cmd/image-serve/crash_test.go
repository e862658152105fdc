package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// hammer is a client that GETs and HEADs a repository's tags, their
// manifests by digest and their blobs in a loop, checking every body
// against its Docker-Content-Digest.
type hammer struct {
	base, repo string
	tags       []string

	requests, mismatches, serverErrors atomic.Int64
	rounds                             atomic.Int64
	mu                                 sync.Mutex
	failures                           []string
}

func (h *hammer) fail(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failures) < 10 {
		h.failures = append(h.failures, fmt.Sprintf(format, args...))
	}
}

const allManifests = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json"

// get fetches path and checks it; it returns the body of a 200.
func (h *hammer) get(method, path string) []byte {
	req, _ := http.NewRequest(method, h.base+path, nil)
	req.Header.Set("Accept", allManifests)
	resp, err := http.DefaultClient.Do(req)
	h.requests.Add(1)
	if err != nil {
		h.serverErrors.Add(1)
		h.fail("%s %s: %v", method, path, err)
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	switch {
	case err != nil:
		h.serverErrors.Add(1)
		h.fail("%s %s: reading body: %v", method, path, err)
		return nil
	case resp.StatusCode >= 500:
		h.serverErrors.Add(1)
		h.fail("%s %s: %s", method, path, resp.Status)
		return nil
	case resp.StatusCode != http.StatusOK:
		return nil // a tag not there yet
	}
	want := resp.Header.Get("Docker-Content-Digest")
	if method == http.MethodHead {
		if want == "" || resp.ContentLength <= 0 {
			h.mismatches.Add(1)
			h.fail("HEAD %s: digest %q length %d", path, want, resp.ContentLength)
		}
		return nil
	}
	sum := sha256.Sum256(body)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != want {
		h.mismatches.Add(1)
		h.fail("GET %s: body %s, header says %q", path, got, want)
		return nil
	}
	return body
}

// round pulls every tag once, all the way down to the blobs.
func (h *hammer) round() {
	for _, tag := range h.tags {
		h.get(http.MethodHead, "/v2/"+h.repo+"/manifests/"+tag)
		body := h.get(http.MethodGet, "/v2/"+h.repo+"/manifests/"+tag)
		h.walk(body, 0)
	}
	h.rounds.Add(1)
}

func (h *hammer) walk(manifest []byte, depth int) {
	if manifest == nil || depth > 2 {
		return
	}
	var m struct {
		Config    *v1.Descriptor
		Layers    []v1.Descriptor
		Manifests []v1.Descriptor
	}
	if json.Unmarshal(manifest, &m) != nil {
		h.mismatches.Add(1)
		h.fail("unparseable manifest")
		return
	}
	for _, c := range m.Manifests {
		h.walk(h.get(http.MethodGet, "/v2/"+h.repo+"/manifests/"+c.Digest.String()), depth+1)
	}
	if m.Config != nil {
		m.Layers = append(m.Layers, *m.Config)
	}
	for _, l := range m.Layers {
		h.get(http.MethodHead, "/v2/"+h.repo+"/blobs/"+l.Digest.String())
		h.get(http.MethodGet, "/v2/"+h.repo+"/blobs/"+l.Digest.String())
	}
}

// TestKilledExport SIGKILLs exports at random instants while clients pull
// through Apache, nginx and the embedded server: no client may ever see a
// body that does not match its digest or a 5xx, and every tag served
// afterwards must pull completely. It is the one random-signal smoke test:
// nothing it asserts depends on where a kill lands, and TestCrashPoints
// stops writers at every step deterministically.
func TestKilledExport(t *testing.T) {
	reg := testregistry.Start(t)
	var versions []string
	for i := range 4 {
		var layers []v1.Layer
		for range 6 {
			layers = append(layers, testregistry.Layer(t, 96<<10, types.OCILayer))
		}
		amd := testregistry.OCIImage(t, "amd64", layers[:3]...)
		arm := testregistry.OCIImage(t, "arm64", layers[3:]...)
		tag := fmt.Sprintf("v%d", i)
		reg.PushIndex(t, "app/web:"+tag, types.OCIImageIndex, map[string]v1.Image{"amd64": amd, "arm64": arm})
		versions = append(versions, tag)
	}
	root := testserver.TempRoot(t)
	// The tag under test starts out served; the kills try to move it.
	mustRun(t, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref("app/web:v0"), "app/web:live")
	reg.Intercept = slowBlobs(40 * time.Millisecond)

	bases := []string{testserver.Apache(t, root), testserver.Embedded(t, root), testserver.Nginx(t, root)}
	ctx, stop := context.WithCancel(context.Background())
	var hammers []*hammer
	var wg sync.WaitGroup
	for _, base := range bases {
		h := &hammer{base: base, repo: "app/web", tags: []string{"live", "v1", "v2", "v3"}}
		hammers = append(hammers, h)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000 && ctx.Err() == nil; i++ {
				h.round()
			}
		}()
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 4 {
		src := versions[1+i%3]
		dest := "app/web:live"
		if i%2 == 1 {
			dest = "app/web:" + src
		}
		cmd := exec.Command(binary, "--root", root.Dir(), "-q", "export", "--jobs", "2", "--src-tls-verify=false", "docker://"+reg.Ref("app/web:"+src), dest)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(50+rng.IntN(500)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	// However slow the machine, every client pulls a few rounds before the
	// check: the test never passes without reading.
	deadline := time.Now().Add(2 * time.Minute)
	for _, h := range hammers {
		for h.rounds.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop()
	wg.Wait()

	for _, h := range hammers {
		t.Logf("%s: %d rounds, %d requests, %d mismatches, %d server errors", h.base, h.rounds.Load(), h.requests.Load(), h.mismatches.Load(), h.serverErrors.Load())
		if h.mismatches.Load() != 0 || h.serverErrors.Load() != 0 {
			t.Errorf("%s: %d mismatches, %d server errors:\n%s", h.base, h.mismatches.Load(), h.serverErrors.Load(), strings.Join(h.failures, "\n"))
		}
		if h.rounds.Load() < 3 {
			t.Errorf("%s: only %d rounds of pulls in 2 minutes: the test proved little", h.base, h.rounds.Load())
		}
	}
	for _, base := range bases {
		pullEveryTag(t, strings.TrimPrefix(base, "http://"), "app/web")
	}

	// The next export finishes the job and sweeps what the killed ones
	// left half-written.
	reg.Intercept = nil
	mustRun(t, "--root", root.Dir(), "-q", "export", "--src-tls-verify=false", "docker://"+reg.Ref("app/web:v3"), "app/web:live")
	if temps := tempFiles(t, tree.Fixture(root).V2Dir()); len(temps) > 0 {
		t.Errorf("temporary files survived the next export: %v", temps)
	}
	for _, base := range bases {
		pullEveryTag(t, strings.TrimPrefix(base, "http://"), "app/web")
	}
}

// tempFiles lists dot files other than .htaccess: what renameio leaves
// behind when a writer dies before its rename.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name := e.Name(); !e.IsDir() && strings.HasPrefix(name, ".") && name != ".htaccess" && e.Type().IsRegular() {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// pullEveryTag pulls each tag the server lists, every platform, verifying
// every blob.
func pullEveryTag(t *testing.T, host, repo string) {
	t.Helper()
	r, err := name.NewRepository(host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	tags, err := remote.List(r)
	if err != nil {
		t.Fatalf("list %s: %v", r, err)
	}
	if len(tags) == 0 {
		t.Fatalf("%s serves no tag", r)
	}
	for _, tag := range tags {
		idx, err := remote.Index(r.Tag(tag))
		if err == nil {
			err = validate.Index(idx)
		}
		if err != nil {
			t.Errorf("pull %s:%s: %v", r, tag, err)
		}
	}
}
