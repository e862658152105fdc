package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/distreg"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/image-serve/image-serve/internal/testserver"
)

// clientTimeout bounds one run of cosign or oras: each takes a second or
// so against a registry on 127.0.0.1, and a hung client (a network
// lookup it should not make) fails the test instead of hanging it.
const clientTimeout = 2 * time.Minute

// signedRepo is the repository TestSyncSignedClients pushes: the tag
// signedTag is signed, attested and has an SBOM attached; unsignedTag has
// nothing; indexTag is a multi-arch index signed with each of its
// platform images (cosign sign --recursive).
const (
	signedRepo  = "signed/app"
	signedTag   = "v1"
	unsignedTag = "v2"
	indexTag    = "v3"
	sbomType    = "application/spdx+json"
)

// TestSyncSignedClients signs an image in the pinned distribution
// registry with the real cosign (a key pair of its own, no transparency
// log: nothing leaves 127.0.0.1) — cosign's sha256-<hex>.sig tag —,
// attests it with cosign (.att), attaches an SBOM to it with oras (an
// OCI 1.1 manifest whose subject is the image: the registry has no
// referrers API, so oras files it under the referrers tag schema's
// sha256-<hex> index), syncs the repository with the real binary, and
// checks with the same clients against the embedded server, Apache and
// nginx (the CLI's configs, one of each for every check): cosign verify
// and verify-attestation accept the signed image by tag and by digest
// and cosign verify refuses the unsigned one; oras discover, through the
// mirror's referrers API, lists the SBOM; oras pull gets its bytes; and
// cosign verify accepts a platform image of the index signed with
// --recursive by its own digest (its sha256-<child>.sig tag travelled
// with the index's tag). The same checks run against the source first,
// so that a failure after the sync is the mirror's.
//
// cosign and oras are bin/cosign and bin/oras, pinned in tools/go.mod and
// built by `make test-deps`; the test fails, never skips, without them.
// Each runs as a process with a HOME, DOCKER_CONFIG, XDG directories and
// TUF_ROOT of its own in a temporary directory, so the machine's docker
// credentials and sigstore cache are not read.
func TestSyncSignedClients(t *testing.T) {
	began := time.Now()
	defer func() { t.Logf("wall time: %v", time.Since(began).Round(time.Millisecond)) }()
	c := newClients(t)
	reg := distreg.Start(t)

	signed := pushSigned(t, reg, signedRepo+":"+signedTag)
	unsigned := pushSigned(t, reg, signedRepo+":"+unsignedTag)
	index, child := pushSignedIndex(t, reg, signedRepo+":"+indexTag)
	src := reg.Host + "/" + signedRepo

	c.cosign("generate-key-pair")
	c.cosign("sign", "--key", c.key, "--tlog-upload=false", "--yes", "--allow-http-registry", src+"@"+signed)
	predicate := filepath.Join(c.dir, "predicate.json")
	if err := os.WriteFile(predicate, []byte(`{"spdxVersion":"SPDX-2.3","name":"app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cosign("attest", "--key", c.key, "--tlog-upload=false", "--yes", "--allow-http-registry", "--type", "spdxjson", "--predicate", predicate, src+"@"+signed)
	// The index and each platform image: every child gets its own
	// sha256-<child>.sig tag, which a client verifying that platform
	// looks up.
	c.cosign("sign", "--key", c.key, "--tlog-upload=false", "--yes", "--allow-http-registry", "--recursive", src+"@"+index)

	// The SBOM: a file of its own, attached by oras as a referrer of the
	// signed image (an OCI 1.1 manifest whose subject is it).
	sbom := []byte(`{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"app-sbom"}` + "\n")
	sbomDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(sbomDir, "sbom.spdx.json"), sbom, 0o644); err != nil {
		t.Fatal(err)
	}
	m := reg.Mark(t)
	out := c.orasIn(sbomDir, "attach", "--plain-http", "--artifact-type", sbomType, "--format", "json",
		src+"@"+signed, "sbom.spdx.json:"+sbomType)
	var attached struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal([]byte(out), &attached); err != nil || !strings.HasPrefix(attached.Digest, "sha256:") {
		t.Fatalf("oras attach --format json: %v:\n%s", err, out)
	}
	// Which of the two ways the source holds the SBOM, for the log: the
	// pinned registry (distribution v3.1) answers 404 to the referrers
	// API, so oras falls back to the referrers tag schema (a
	// sha256-<hex> tag naming an index) and sync takes that fallback;
	// the mirror serves the referrers API.
	for _, q := range reg.Since(t, m) {
		if q.Method == "PUT" && q.Kind() == "manifests" && strings.HasPrefix(q.Ref(), "sha256-") {
			t.Logf("oras attach: the source has no referrers API; the SBOM is in its referrers tag %s", q.Ref())
		}
	}
	// What the clients did upstream holds there, before any sync.
	c.verify(t, "source", reg.Host, signed, unsigned, attached.Digest, sbom)
	c.verifyChild(t, "source", reg.Host, child)
	if t.Failed() {
		t.FailNow()
	}

	file := writeFile(t, "signed.yaml", fmt.Sprintf("%s:\n  tls-verify: false\n  images:\n    %s: [%s, %s, %s]\n", reg.Host, signedRepo, signedTag, unsignedTag, indexTag))
	root := testserver.TempRoot(t)
	r := mustRun(t, "--root", root.Dir(), "sync", "-f", file)
	t.Logf("sync: %s%s", r.stdout, r.stderr)

	servers := []struct{ name, base string }{
		{"embedded", testserver.Embedded(t, root)},
		{"apache", testserver.Apache(t, root, testserver.WithConfig(apacheConfigFromCLI(root)))},
		{"nginx", testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root)))},
	}
	for _, srv := range servers {
		c.verify(t, srv.name, strings.TrimPrefix(srv.base, "http://"), signed, unsigned, attached.Digest, sbom)
		c.verifyChild(t, srv.name, strings.TrimPrefix(srv.base, "http://"), child)
	}
}

// pushSignedIndex pushes to ref a fresh index of two platform images,
// amd64 and arm64, and returns its digest and its arm64 child's.
func pushSignedIndex(t *testing.T, reg *distreg.Registry, ref string) (index, arm64 string) {
	t.Helper()
	r, err := name.ParseReference(reg.Host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx := v1.ImageIndex(empty.Index)
	for _, arch := range []string{"amd64", "arm64"} {
		img := testregistry.OCIImage(t, arch, testregistry.Layer(t, 512, types.OCILayer))
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
		if arch == "arm64" {
			d, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			arm64 = d.String()
		}
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String(), arm64
}

// verifyChild checks with cosign verify --key that the platform image
// child of the index signed with --recursive verifies at host by its own
// digest, as a client resolving that platform asks.
func (c *clients) verifyChild(t *testing.T, what, host, child string) {
	t.Helper()
	ref := host + "/" + signedRepo + "@" + child
	if out, errOut, err := c.runIn(c.dir, c.cosignBin, "verify", "--key", c.pub, "--insecure-ignore-tlog", "--allow-http-registry", ref); err != nil {
		t.Errorf("%s: cosign verify %s (a child of the index signed --recursive): %v\n%s%s", what, ref, err, out, errOut)
	} else if !strings.Contains(out, child) {
		t.Errorf("%s: cosign verify %s: the signature does not name %s:\n%s", what, ref, child, out)
	}
}

// pushSigned pushes a fresh one-layer image to ref and returns its digest.
func pushSigned(t *testing.T, reg *distreg.Registry, ref string) string {
	t.Helper()
	img := testregistry.DockerImage(t, testregistry.Layer(t, 512, "application/vnd.docker.image.rootfs.diff.tar.gzip"))
	r, err := name.ParseReference(reg.Host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// clients runs bin/cosign and bin/oras in a home of their own.
type clients struct {
	t                  *testing.T
	cosignBin, orasBin string
	dir                string // HOME, DOCKER_CONFIG's parent, the key pair
	key, pub           string
	env                []string
}

func newClients(t *testing.T) *clients {
	t.Helper()
	c := &clients{t: t, dir: t.TempDir()}
	for _, b := range []struct {
		path *string
		name string
	}{{&c.cosignBin, "cosign"}, {&c.orasBin, "oras"}} {
		p, err := filepath.Abs(filepath.Join("..", "..", "bin", b.name))
		if err == nil {
			_, err = os.Stat(p)
		}
		if err != nil {
			t.Fatalf("%s: %v: run `make test-deps` (it builds the pinned cosign and oras into bin/)", b.name, err)
		}
		*b.path = p
	}
	c.key, c.pub = filepath.Join(c.dir, "cosign.key"), filepath.Join(c.dir, "cosign.pub")
	docker := filepath.Join(c.dir, "docker")
	if err := os.MkdirAll(docker, 0o700); err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(),
		"HOME="+c.dir,
		"DOCKER_CONFIG="+docker,
		"XDG_CONFIG_HOME="+filepath.Join(c.dir, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(c.dir, ".cache"),
		"TUF_ROOT="+filepath.Join(c.dir, ".sigstore"),
		// The key pair's password: generate-key-pair, sign and attest
		// read it from here rather than from a terminal.
		"COSIGN_PASSWORD=image-serve-test",
	)
	return c
}

// runIn runs bin with args in dir, with the clients' environment, and
// returns its stdout, its stderr and its error (nil when it exited 0).
func (c *clients) runIn(dir, bin string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = dir, c.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s: no answer in %v", filepath.Base(bin), strings.Join(args, " "), clientTimeout)
	}
	return stdout.String(), stderr.String(), err
}

// cosign runs cosign in the clients' directory and fails the test unless
// it succeeds.
func (c *clients) cosign(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.runIn(c.dir, c.cosignBin, args...)
	if err != nil {
		c.t.Fatalf("cosign %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// orasIn runs oras in dir and fails the test unless it succeeds.
func (c *clients) orasIn(dir string, args ...string) string {
	c.t.Helper()
	out, errOut, err := c.runIn(dir, c.orasBin, args...)
	if err != nil {
		c.t.Fatalf("oras %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// verify checks one registry at host with the real clients: the signed
// image's signature and attestation verify by tag and by digest with the
// public key, the unsigned image's do not; oras discover lists the SBOM
// among the signed image's referrers with its artifact type; oras pull of
// the SBOM writes the bytes attached. Failures are errors, so that every
// server is reported.
func (c *clients) verify(t *testing.T, what, host, signed, unsigned, sbomDigest string, sbom []byte) {
	t.Helper()
	repo := host + "/" + signedRepo
	for _, ref := range []string{repo + ":" + signedTag, repo + "@" + signed} {
		if out, errOut, err := c.runIn(c.dir, c.cosignBin, "verify", "--key", c.pub, "--insecure-ignore-tlog", "--allow-http-registry", ref); err != nil {
			t.Errorf("%s: cosign verify %s: %v\n%s%s", what, ref, err, out, errOut)
		} else if !strings.Contains(out, signed) {
			t.Errorf("%s: cosign verify %s: the signature does not name %s:\n%s", what, ref, signed, out)
		}
		if out, errOut, err := c.runIn(c.dir, c.cosignBin, "verify-attestation", "--key", c.pub, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "spdxjson", ref); err != nil {
			t.Errorf("%s: cosign verify-attestation %s: %v\n%s%s", what, ref, err, out, errOut)
		}
	}
	for _, ref := range []string{repo + ":" + unsignedTag, repo + "@" + unsigned} {
		out, errOut, err := c.runIn(c.dir, c.cosignBin, "verify", "--key", c.pub, "--insecure-ignore-tlog", "--allow-http-registry", ref)
		if err == nil {
			t.Errorf("%s: cosign verify %s: accepted an image nobody signed:\n%s", what, ref, out)
		} else if !strings.Contains(errOut, "no signatures found") {
			t.Errorf("%s: cosign verify %s: %v, want no signatures found:\n%s", what, ref, err, errOut)
		}
	}

	out, errOut, err := c.runIn(c.dir, c.orasBin, "discover", "--plain-http", "--format", "json", "--artifact-type", sbomType, repo+":"+signedTag)
	if err != nil {
		t.Errorf("%s: oras discover: %v\n%s%s", what, err, out, errOut)
	} else if !strings.Contains(out, sbomDigest) {
		t.Errorf("%s: oras discover %s:%s does not list the SBOM %s:\n%s", what, signedRepo, signedTag, sbomDigest, out)
	}
	dir := t.TempDir()
	if out, errOut, err := c.runIn(dir, c.orasBin, "pull", "--plain-http", "-o", dir, repo+"@"+sbomDigest); err != nil {
		t.Errorf("%s: oras pull %s: %v\n%s%s", what, sbomDigest, err, out, errOut)
	} else if got, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json")); err != nil || !bytes.Equal(got, sbom) {
		t.Errorf("%s: oras pull %s: sbom.spdx.json %q (%v), want %q", what, sbomDigest, got, err, sbom)
	}
}
