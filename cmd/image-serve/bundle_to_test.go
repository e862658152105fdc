package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/internal/distreg"
	"github.com/image-serve/image-serve/internal/testserver"
)

// uploadRequests sorts what a load asked of the registry by its access
// log: a POST to blobs/uploads/ answered 201 is a mount (the query, which
// the log's path leaves out, held mount= and from=), one answered 202
// starts an upload; a PUT to blobs/uploads/ID commits an upload; PATCH
// sends a chunk. Only requests for repositories under prefix count.
func uploadRequests(log distreg.Log, prefix string) (mounts, starts, commits, patches, manifestPuts, other int) {
	for _, r := range log {
		if !strings.HasPrefix(r.Path, "/v2/"+prefix+"/") {
			continue
		}
		uploads := strings.Contains(r.Path, "/blobs/uploads/")
		switch {
		case r.Method == "POST" && uploads && r.Status == 201:
			mounts++
		case r.Method == "POST" && uploads && r.Status == 202:
			starts++
		case r.Method == "PUT" && uploads:
			commits++
		case r.Method == "PATCH":
			patches++
		case r.Method == "PUT" && r.Kind() == "manifests":
			manifestPuts++
		case r.Method == "HEAD" || r.Method == "GET":
		default:
			other++
		}
	}
	return
}

// TestBundleLoadTo loads a delta bundle into a CNCF distribution registry
// that holds the base (pushed there by go-containerregistry): the base's
// blobs are mounted from its repository, the bundle's uploaded, and
// podman and go-containerregistry pull the targets from the registry. A
// registry without the base refuses the bundle before any write.
func TestBundleLoadTo(t *testing.T) {
	s := newAirgapSites(t)
	reg := distreg.Start(t)
	// The far site's registry holds the base under the prefix the loads
	// use, put there by another tool.
	embedded := strings.TrimPrefix(testserver.Embedded(t, s.a), "http://")
	baseRef, err := name.ParseReference(embedded+"/base/os:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	base, err := remote.Image(baseRef)
	if err != nil {
		t.Fatal(err)
	}
	// far for the load, damaged for that of a damaged bundle.
	for _, prefix := range []string{"far", "damaged"} {
		farBase, err := name.ParseReference(reg.Host+"/"+prefix+"/base/os:v1", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(farBase, base); err != nil {
			t.Fatal(err)
		}
	}

	file := filepath.Join(t.TempDir(), "update.bundle")
	mustRun(t, append([]string{"--root", s.a.Dir(), "bundle", "create", "-o", file, "--base", "base/os:v1"}, s.targetRefs()...)...)
	var info struct {
		Desc bundle.Descriptor `json:"descriptor"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "bundle", "inspect", "--json", file).stdout), &info); err != nil {
		t.Fatal(err)
	}
	var carriedBlobs int
	for _, m := range info.Desc.Members {
		if m.Kind != bundle.KindManifest {
			carriedBlobs++
		}
	}
	if len(info.Desc.Needed) != 2 {
		t.Fatalf("the bundle needs %d blobs, want the base's 2", len(info.Desc.Needed))
	}

	// Without the base where the load looks (a prefix holding nothing,
	// no --mount-from), the registry is only asked (HEAD), never written.
	mark := reg.Mark(t)
	r := run(t, "bundle", "load", "--to", "docker://"+reg.Host+"/empty", "--dest-tls-verify=false", file)
	if r.code == 0 {
		t.Fatalf("bundle load --to a registry without the base succeeded:\n%s", r.stderr)
	}
	for _, n := range info.Desc.Needed {
		if !strings.Contains(r.stderr, string(n.Digest)) {
			t.Errorf("the refusal does not list needed blob %s:\n%s", n.Digest, r.stderr)
		}
	}
	if strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("the refusal is not one line:\n%s", r.stderr)
	}
	// Only the load's repositories count: a line of the base's push
	// written late (distreg's Mark) is not the load's.
	for _, req := range reg.Since(t, mark) {
		if strings.HasPrefix(req.Path, "/v2/empty/") && req.Method != "HEAD" && req.Method != "GET" {
			t.Errorf("a refused load sent %s %s (%d)", req.Method, req.Path, req.Status)
		}
	}

	// A bundle on stdin (not checked whole first) with a layer's byte
	// flipped: the upload fails on its digest, and no manifest nor tag
	// is put.
	cmd := exec.Command(binary, "bundle", "load", "--to", "docker://"+reg.Host+"/damaged", "--dest-tls-verify=false", "--mount-from", "base/os", "-")
	cmd.Stdin = bytes.NewReader(flipLayerByte(t, readFile(t, file)))
	mark = reg.Mark(t)
	r = runCmd(t, cmd)
	if r.code != 1 || !strings.Contains(r.stderr, "does not match its digest") {
		t.Errorf("load --to of a damaged bundle on stdin: exit %d, want 1 and the damaged member named:\n%s", r.code, r.stderr)
	}
	for _, req := range reg.Since(t, mark) {
		if req.Method == "PUT" && req.Kind() == "manifests" {
			t.Errorf("a damaged bundle's load put manifest %s (%d)", req.Path, req.Status)
		}
	}
	for ref := range s.targets {
		if _, err := pullDigest(reg.Host + "/damaged/" + ref); err == nil {
			t.Errorf("%s/damaged/%s pulls after a damaged bundle's load", reg.Host, ref)
		}
	}

	// With the base's repository to mount from.
	load := []string{"bundle", "load", "--to", "docker://" + reg.Host + "/far", "--dest-tls-verify=false", "--mount-from", "base/os", file}
	mark = reg.Mark(t)
	r = mustRun(t, load...)
	t.Logf("load --to:\n%s", r.stderr)
	mounts, starts, commits, patches, manifests, other := uploadRequests(reg.Since(t, mark), "far")
	// Each target repository mounts the base's two blobs it names (app
	// both, the index's two images one each); every blob the bundle
	// carries is uploaded once, monolithically, and none is shared
	// between the two repositories; 2 tags, and app's manifest and the
	// index with its 2 children by digest.
	if mounts != 4 || starts != carriedBlobs || commits != carriedBlobs || patches != 0 || other != 0 {
		t.Errorf("load --to: %d mounts (want 4), %d uploads started and %d committed (want the %d blobs carried), %d PATCH (want 0), %d other writes",
			mounts, starts, commits, carriedBlobs, patches, other)
	}
	if manifests != 4+2 {
		t.Errorf("load --to put %d manifests, want 4 by digest and 2 tags", manifests)
	}
	for ref, want := range s.targets {
		if got, err := pullDigest(reg.Host + "/far/" + ref); err != nil || got.String() != want {
			t.Errorf("ggcr pull %s/far/%s: %v %v, want %s", reg.Host, ref, got, err, want)
		}
	}
	p := newPodmanStore(t)
	for _, tc := range []struct{ ref, arch string }{{"far/site/app:v2", "amd64"}, {"far/site/multi:v2", "amd64"}, {"far/site/multi:v2", "arm64"}} {
		if got := p.pull(reg.Host+"/"+tc.ref, tc.arch); got != tc.arch {
			t.Errorf("podman pull --arch %s %s/%s stored a %s image", tc.arch, reg.Host, tc.ref, got)
		}
	}

	// Again: every blob is there, nothing is uploaded or mounted.
	mark = reg.Mark(t)
	mustRun(t, load...)
	if mounts, starts, commits, patches, _, other := uploadRequests(reg.Since(t, mark), "far"); mounts+starts+commits+patches+other != 0 {
		t.Errorf("a second load --to wrote blobs: %d mounts, %d uploads started, %d committed, %d PATCH, %d other", mounts, starts, commits, patches, other)
	}
}

// TestBundleLoadToFlags: the destination flags go with --to, and --to
// takes docker://HOST[/PREFIX].
func TestBundleLoadToFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "none.bundle")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dest-creds", "u:p"}, "--dest-creds goes with --to"},
		{[]string{"--mount-from", "base"}, "--mount-from goes with --to"},
		{[]string{"--to", "oci:/tmp/x"}, "want docker://HOST[/PREFIX]"},
		{[]string{"--to", "docker://127.0.0.1:1/Bad"}, "prefix"},
		{[]string{"--to", "docker://127.0.0.1:1", "--on-existing-tag", "skip"}, "--to overwrites tags"},
	} {
		r := run(t, append(append([]string{"bundle", "load"}, tc.args...), file)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bundle load %s: exit %d, want 2 and %q:\n%s", strings.Join(tc.args, " "), r.code, tc.want, r.stderr)
		}
	}
}

// TestBundleLoadToSecure loads a whole bundle (it needs nothing) into a
// distribution registry behind TLS and basic auth, reached with
// --dest-cert-dir and --dest-creds as export's source flags reach one;
// a wrong password and a missing CA are refused before any write.
func TestBundleLoadToSecure(t *testing.T) {
	s := newAirgapSites(t)
	const user, password = "far", "site secret"
	reg := distreg.StartWith(t, distreg.Options{TLS: true, Users: map[string]string{user: password}})
	certs := t.TempDir()
	if err := os.WriteFile(filepath.Join(certs, "ca.crt"), reg.CACertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "full.bundle")
	mustRun(t, "--root", s.a.Dir(), "bundle", "create", "-o", file, "site/app:v2")
	to := "docker://" + reg.Host + "/far"
	mark := reg.Mark(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dest-cert-dir", certs, "--dest-creds", user + ":wrong"}, "401"},
		{[]string{"--dest-creds", user + ":" + password}, "certificate is not trusted: x509: certificate signed by unknown authority (--dest-tls-verify=false skips the check)"},
	} {
		r := run(t, append(append([]string{"bundle", "load", "--to", to}, tc.args...), file)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("bundle load --to %s: exit %d, want 1 and one line with %q:\n%s", strings.Join(tc.args, " "), r.code, tc.want, r.stderr)
		}
	}
	for _, req := range reg.Since(t, mark) {
		if req.Method != "HEAD" && req.Method != "GET" {
			t.Errorf("a refused load sent %s %s (%d)", req.Method, req.Path, req.Status)
		}
	}
	mustRun(t, "bundle", "load", "--to", to, "--dest-cert-dir", certs, "--dest-creds", user+":"+password, file)
	ref, err := name.ParseReference(reg.Host + "/far/site/app:v2")
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref, remote.WithTransport(reg.Client().Transport), remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	if err != nil || desc.Digest.String() != s.targets["site/app:v2"] {
		t.Errorf("ggcr get %s: %v %v, want %s", ref, desc, err, s.targets["site/app:v2"])
	}
}

// flipLayerByte returns the bundle b with one byte of its last member
// (a layer: layers come last) flipped.
func flipLayerByte(t *testing.T, b []byte) []byte {
	t.Helper()
	out := bytes.Clone(b)
	br := bytes.NewReader(b)
	tr := tar.NewReader(br)
	at := -1
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "blobs/") && h.Size > 0 {
			// The reader has read the header's blocks and no more: the
			// member's bytes start here.
			at = len(b) - br.Len() + int(h.Size)/2
		}
	}
	if at < 0 {
		t.Fatal("no blob member to damage")
	}
	out[at] ^= 0xff
	return out
}
