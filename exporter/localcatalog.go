package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
)

// LocalStore is a store on this machine a sync entry reads instead of a
// registry.
type LocalStore struct {
	// Transport is "containers-storage" or "docker-daemon".
	Transport string
	// Store is containers-storage's STORE-SPEC; nil: podman's configured
	// store.
	Store *StoreSpec
}

// ParseLocalStore reads the store a sync file's top-level key names:
// transport "containers-storage" with spec its STORE-SPEC ("" for
// podman's configured store), or "docker-daemon".
func ParseLocalStore(transport, spec string) (LocalStore, error) {
	switch transport {
	case transportDockerDaemon:
		if spec != "" {
			return LocalStore{}, errors.New("docker-daemon takes no store specifier")
		}
		return LocalStore{Transport: transport}, nil
	case transportContainersStorage:
		if spec == "" {
			return LocalStore{Transport: transport}, nil
		}
		s, err := parseStoreSpec(spec)
		if err != nil {
			return LocalStore{}, err
		}
		return LocalStore{Transport: transport, Store: &s}, nil
	}
	return LocalStore{}, fmt.Errorf("%q is no store on this machine (want containers-storage or docker-daemon)", transport)
}

// String is the store as a source reference begins: "containers-storage:",
// "containers-storage:[STORE-SPEC]" or "docker-daemon:".
func (l LocalStore) String() string {
	if l.Store != nil {
		return l.Transport + ":[" + l.Store.String() + "]"
	}
	return l.Transport + ":"
}

// name is the store as its errors name it: "containers-storage",
// "containers-storage:[STORE-SPEC]" or "docker-daemon".
func (l LocalStore) name() string { return strings.TrimSuffix(l.String(), ":") }

// ref is the source reference of image in the store.
func (l LocalStore) ref(image string) string { return l.String() + image }

// idRef is the source reference of the image whose ID is id, as the
// store takes it: the bare ID for containers-storage, sha256:ID for the
// Docker Engine. Every tag naming the image names it alike, so a batch
// reads it once (streamShare).
func (l LocalStore) idRef(id digest.Digest) string {
	if l.Transport == transportDockerDaemon {
		return l.ref(id.String())
	}
	return l.ref(id.Encoded())
}

// maxCatalog bounds what a store's listing may send: a store of
// thousands of images lists in a few MiB.
const maxCatalog = 64 << 20

// localCatalog is what one store holds, read once per run: each NAME:TAG
// it has and the ID of its image, the digest of the image's config —
// which an export keeps as it is, whatever it does to the layers, so the
// tree's manifest of an image exported from the store names it too.
type localCatalog struct {
	store LocalStore
	once  sync.Once
	ids   map[string]digest.Digest // "REPO:TAG" → image ID
	err   error
}

// load lists the store the first time it is called.
func (c *localCatalog) load(ctx context.Context, o Options) error {
	c.once.Do(func() {
		what := c.store.name()
		if c.store.Transport == transportDockerDaemon {
			c.ids, c.err = listEngineImages(ctx, what, o)
		} else {
			c.ids, c.err = listPodmanImages(ctx, what, c.store.Store, o)
		}
	})
	return c.err
}

// tags are the tags repo has in the store, sorted.
func (c *localCatalog) tags(ctx context.Context, repo string, o Options) ([]string, error) {
	if err := c.load(ctx, o); err != nil {
		return nil, err
	}
	var tags []string
	for name := range c.ids {
		if r, tag, ok := distribution.SplitTag(name); ok && r == repo {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	return tags, nil
}

// id is the ID of the image repo:tag names in the store; false when the
// store has no such name.
func (c *localCatalog) id(ctx context.Context, repo, tag string, o Options) (digest.Digest, bool, error) {
	if err := c.load(ctx, o); err != nil {
		return "", false, err
	}
	id, ok := c.ids[repo+":"+tag]
	return id, ok, nil
}

// listPodmanImages lists a containers store through `podman images
// --format json`, podman prepared and run as for an export
// (preparePodman, podmanRunner: as the owner of another user's store).
func listPodmanImages(ctx context.Context, what string, spec *StoreSpec, o Options) (map[string]digest.Digest, error) {
	p, err := preparePodman(ctx, what, spec, o)
	if err != nil {
		return nil, err
	}
	defer p.done()
	out, err := runBounded(ctx, p.path, append(storeFlags(spec), "images", "--format", "json"), o, p.setup)
	if err != nil {
		return nil, fmt.Errorf("%s: podman images: %w", what, err)
	}
	var images []struct {
		ID    string `json:"Id"`
		Names []string
	}
	if err := json.Unmarshal(out, &images); err != nil {
		return nil, fmt.Errorf("%s: podman images: its JSON does not parse: %v", what, err)
	}
	ids := map[string]digest.Digest{}
	for _, im := range images {
		if !imageID.MatchString(im.ID) {
			return nil, fmt.Errorf("%s: podman images: %q is not an image ID", what, im.ID)
		}
		for _, n := range im.Names {
			addLocalName(ids, n, digest.NewDigestFromEncoded(digest.SHA256, im.ID))
		}
	}
	return ids, nil
}

// listEngineImages lists the Docker Engine's images (GET /images/json).
func listEngineImages(ctx context.Context, what string, o Options) (map[string]digest.Digest, error) {
	resp, err := dockerGet(ctx, what, "/images/json", o)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCatalog+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: listing the engine's images: %w", what, err)
	case len(b) > maxCatalog:
		return nil, fmt.Errorf("%s: the engine's image list is over %d MiB", what, maxCatalog>>20)
	}
	var images []struct {
		ID       string `json:"Id"`
		RepoTags []string
	}
	if err := json.Unmarshal(b, &images); err != nil {
		return nil, fmt.Errorf("%s: the engine's image list does not parse: %v", what, err)
	}
	ids := map[string]digest.Digest{}
	for _, im := range images {
		id := digest.Digest(im.ID)
		if id.Validate() != nil || id.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("%s: the engine lists %q, which is not an image ID", what, im.ID)
		}
		for _, n := range im.RepoTags {
			addLocalName(ids, n, id)
		}
	}
	return ids, nil
}

// addLocalName records that the store's name n ("REPO:TAG") is image id;
// names that are no REPO:TAG (the engine's "<none>:<none>", a digest
// reference) name no tag to sync.
func addLocalName(ids map[string]digest.Digest, n string, id digest.Digest) {
	if strings.Contains(n, "@") {
		return
	}
	if _, tag, ok := distribution.SplitTag(n); ok && distribution.ValidateTag(tag) == nil {
		ids[n] = id
	}
}

// runBounded runs prog with args, set up by setup, and returns its
// stdout, at most maxCatalog bytes, within the source timeout; a failure
// is the last error line it wrote on stderr.
func runBounded(parent context.Context, prog string, args []string, o Options, setup func(*exec.Cmd)) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, sourceTimeout(o))
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	setup(cmd)
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out, rerr := io.ReadAll(io.LimitReader(stdout, maxCatalog+1))
	if len(out) > maxCatalog {
		cancel()
	}
	werr := cmd.Wait()
	switch {
	case len(out) > maxCatalog:
		return nil, fmt.Errorf("its output is over %d MiB", maxCatalog>>20)
	case parent.Err() != nil:
		return nil, context.Cause(parent)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("no answer in %v (--src-timeout)", sourceTimeout(o))
	case werr != nil:
		if line := stderr.errorLine(); line != "" {
			return nil, errors.New(line)
		}
		return nil, werr
	case rerr != nil:
		return nil, rerr
	}
	return out, nil
}
