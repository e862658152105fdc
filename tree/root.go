package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
)

// DefaultRoot is where TripleO's undercloud kept its tree.
const DefaultRoot = "/var/lib/image-serve"

// Modes of everything we create, whatever the umask: the web server reads
// the tree as its own user (TripleO's 0600 files under umask 077 gave
// Apache 403s).
const (
	fileMode = 0o644
	dirMode  = 0o755
)

// stateDir holds our own files inside ROOT. It is a dot directory, so no
// server template ever serves it.
const stateDir = ".image-serve"

// Root is a static registry tree. It is safe for concurrent use.
type Root struct {
	dir   string
	state *rootState // the root directory, opened on first use (confine.go)
	waits Waits      // how lock waits end (lock.go)
}

// Open returns the tree rooted at dir. It does not touch the disk: the
// directory is opened on first use, and need not exist before Init.
func Open(dir string) (*Root, error) {
	if dir == "" {
		return nil, errors.New("empty --root")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("root %s: %w", dir, err)
	}
	return &Root{dir: abs, state: &rootState{}}, nil
}

// Dir is the absolute path of the tree: the web server's document root.
func (r *Root) Dir() string { return r.dir }

// V2Dir is the directory that answers /v2/.
func (r *Root) V2Dir() string { return filepath.Join(r.dir, "v2") }

// incomingDir holds blobs being downloaded, as temporary files, until
// they are verified and renamed into their repository.
func (r *Root) incomingDir() string { return filepath.Join(r.dir, stateDir, "incoming") }

// ErrorsDir holds the JSON error bodies a web server sends.
func (r *Root) ErrorsDir() string { return filepath.Join(r.dir, stateDir, "errors") }

// PingPath answers GET /v2/.
func (r *Root) PingPath() string { return filepath.Join(r.V2Dir(), "index.json") }

// CatalogPath answers GET /v2/_catalog.
func (r *Root) CatalogPath() string { return filepath.Join(r.V2Dir(), "_catalog") }

// RepoDir is the directory of repository repo.
func (r *Root) RepoDir(repo string) string {
	return filepath.Join(r.V2Dir(), filepath.FromSlash(repo))
}

// BlobPath is where blob d of repo lives.
func (r *Root) BlobPath(repo string, d digest.Digest) string {
	return filepath.Join(r.RepoDir(repo), "blobs", d.String())
}

// LegacyBlobPath is where TripleO stored layers: "<digest>.gz", whatever
// their compression. Readers accept it as the blob d.
func (r *Root) LegacyBlobPath(repo string, d digest.Digest) string {
	return r.BlobPath(repo, d) + ".gz"
}

// ManifestDir is the directory of manifest d in repo.
func (r *Root) ManifestDir(repo string, d digest.Digest) string {
	return filepath.Join(r.manifestsDir(repo), d.String())
}

// ManifestPath holds the exact bytes of manifest d.
func (r *Root) ManifestPath(repo string, d digest.Digest) string {
	return filepath.Join(r.ManifestDir(repo, d), "index.json")
}

// HeadersPath holds the Apache headers of manifest d.
func (r *Root) HeadersPath(repo string, d digest.Digest) string {
	return filepath.Join(r.ManifestDir(repo, d), ".htaccess")
}

func (r *Root) manifestsDir(repo string) string {
	return filepath.Join(r.RepoDir(repo), "manifests")
}

// TypeMapPath is the tag: an Apache type map naming the manifests it offers.
func (r *Root) TypeMapPath(repo, tag string) string {
	return filepath.Join(r.manifestsDir(repo), tag+typeMapExt)
}

// ReferrersPath is the referrers index of subject in repo: it answers
// GET /v2/<repo>/referrers/<subject> while manifests of repo refer to
// subject (see referrers.go).
func (r *Root) ReferrersPath(repo string, subject digest.Digest) string {
	return filepath.Join(r.referrersDir(repo), subject.String())
}

func (r *Root) referrersDir(repo string) string { return filepath.Join(r.RepoDir(repo), referrersDir) }

// EmptyReferrersPath is the one empty referrers index of the tree: the
// static servers answer it for every digest of an existing repository that
// has no index of its own. It lives in our dot directory, so nothing
// serves it under its own name.
func (r *Root) EmptyReferrersPath() string {
	return filepath.Join(r.dir, stateDir, "empty-index.json")
}

// TagsListPath answers GET /v2/<repo>/tags/list.
func (r *Root) TagsListPath(repo string) string {
	return filepath.Join(r.RepoDir(repo), "tags", "list")
}

const typeMapExt = ".type-map"

// typeMapURI is a type map's reference to manifest d, relative to the
// manifests directory as Apache resolves it.
func typeMapURI(d digest.Digest) string { return d.String() + "/index.json" }

// digestFromTypeMapURI inverts typeMapURI.
func digestFromTypeMapURI(uri string) (digest.Digest, error) {
	d := digest.Digest(strings.TrimSuffix(uri, "/index.json"))
	if err := ValidateDigest(d); err != nil || !strings.HasSuffix(uri, "/index.json") {
		return "", fmt.Errorf("type map URI %q does not name a manifest", uri)
	}
	return d, nil
}

// Init creates the skeleton every server needs: v2/index.json, the error
// bodies and the empty referrers index. It is idempotent and rewrites
// nothing that is already right.
func (r *Root) Init() error {
	if err := r.mkdirAll(r.V2Dir()); err != nil {
		return err
	}
	if err := r.writeIfChanged(r.PingPath(), []byte("{}")); err != nil {
		return err
	}
	if err := r.mkdirAll(r.ErrorsDir()); err != nil {
		return err
	}
	for _, e := range errorBodies {
		if err := r.writeIfChanged(filepath.Join(r.ErrorsDir(), e.file), e.body()); err != nil {
			return err
		}
	}
	if err := r.writeIfChanged(r.EmptyReferrersPath(), EmptyReferrers()); err != nil {
		return err
	}
	return r.mkdirAll(r.locksDir())
}

// writeIfChanged publishes data at path unless the file already holds it.
// An old file that cannot be read as one of the tree (a symlink leading
// outside it) is replaced: the rename replaces the link, not what it
// names.
func (r *Root) writeIfChanged(path string, data []byte) error {
	old, err := r.readSmall(path, len(data))
	switch {
	case err == nil && string(old) == string(data):
		return nil
	case err == nil, errors.Is(err, fs.ErrNotExist), errors.Is(err, errOverLimit):
		return r.publish(path, data)
	default:
		return err
	}
}
