package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testtree"
	"github.com/image-serve/image-serve/tree"
)

// importImage makes a one-layer image in p's store from a root file
// system holding one file of the content given: a distinct image (and
// image ID) per content. It returns the image's ID, 64 hex digits.
func (p *podmanStore) importImage(ref, content string) string {
	p.t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "content", Mode: 0o644, Size: int64(len(content))}); err != nil {
		p.t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	rootfs := filepath.Join(p.t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(rootfs, b.Bytes(), 0o644); err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimSpace(p.podman("import", "--quiet", rootfs, ref)), "sha256:")
}

// countingPodman puts a podman first in PATH that logs each command
// line it is given to the returned file, then runs the real one: what
// a sync asked of the store, with the store doing the work.
func countingPodman(t *testing.T, real string) (path, log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$*\" >> '" + log + "'\nexec '" + real + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "podman"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + string(os.PathListSeparator) + os.Getenv("PATH"), log
}

// podmanCalls returns the subcommands (images, save…) logged since the
// log was last read, and empties it.
func podmanCalls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	os.Remove(log)
	var calls []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		for _, word := range []string{" images ", " save "} {
			if strings.Contains(" "+line+" ", word) {
				calls = append(calls, strings.TrimSpace(word))
			}
		}
	}
	return calls
}

type syncRecordJSON struct {
	Source, Dest, Status, Digest, Error string
}

// syncJSON runs sync --json with env and returns its records by
// destination, and the run's exit code and stderr.
func syncJSON(t *testing.T, env []string, args ...string) (map[string]syncRecordJSON, result) {
	t.Helper()
	cmd := exec.Command(binary, append(args, "--json")...)
	cmd.Env = env
	r := runCmd(t, cmd)
	var recs []syncRecordJSON
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil {
		t.Fatalf("sync %v --json: %v\n%s%s", args, err, r.stdout, r.stderr)
	}
	out := map[string]syncRecordJSON{}
	for _, rec := range recs {
		out[rec.Dest] = rec
	}
	return out, r
}

// treeConfig is the config digest the tree's repo:tag manifest names.
func treeConfig(t *testing.T, root *tree.Root, repo, tag string) string {
	t.Helper()
	vs, err := tree.Fixture(root).TagVariants(repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Config struct{ Digest string }
	}
	readJSON(t, tree.Fixture(root).ManifestPath(repo, vs[0].Digest), &m)
	return m.Config.Digest
}

// TestSyncContainersStorage: a sync file names a throwaway podman store
// (issue 24): every tag of one repository and a regex of another are
// exported under the file's prefix and pull with go-containerregistry; a
// rerun asks the store for its list once and saves no image; an image
// re-tagged in the store is synced again, and only it; a tag the store
// dropped is pruned; a tag the store does not have fails in one line,
// changing nothing.
func TestSyncContainersStorage(t *testing.T) {
	p := newPodmanStore(t)
	p.podman("load", "--quiet", "-i", "../../testdata/hello.docker.tar")
	p.podman("tag", "localhost/hello:latest", "localhost/app:v1")
	idV2 := p.importImage("localhost/app:v2", "two")
	p.podman("tag", "localhost/app:v2", "localhost/app:latest")
	p.importImage("localhost/tools:1.0", "tools one")
	p.importImage("localhost/tools:2.0", "tools two")

	root := testserver.TempRoot(t)
	spec := "containers-storage:[vfs@" + p.root + "+" + p.run + "]"
	file := filepath.Join(t.TempDir(), "sync.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(spec + ":\n  prefix: hotfix\n  images:\n    localhost/app: []\n  images-by-tag-regex:\n    localhost/tools: '^1\\.'\n")
	path, log := countingPodman(t, p.binaryPath)
	env := append(os.Environ(), "PATH="+path)
	sync := func(extra ...string) (map[string]syncRecordJSON, result) {
		return syncJSON(t, env, append([]string{"--root", root.Dir(), "sync", "-f", file}, extra...)...)
	}

	recs, r := sync()
	if r.code != 0 {
		t.Fatalf("first sync: exit %d\n%s", r.code, r.stderr)
	}
	for _, dest := range []string{"hotfix/app:v1", "hotfix/app:v2", "hotfix/app:latest", "hotfix/tools:1.0"} {
		if recs[dest].Status != "synced" || !strings.HasPrefix(recs[dest].Source, spec+"localhost/") {
			t.Errorf("first sync: %s: %+v", dest, recs[dest])
		}
	}
	if len(recs) != 4 {
		t.Errorf("first sync: %d records, want 4 (tools:2.0 is not selected): %+v", len(recs), recs)
	}
	// One listing, one save per image: v2 and latest are one image.
	if calls := podmanCalls(t, log); strings.Join(calls, " ") != "images save save save" {
		t.Errorf("first sync asked podman: %v, want one images listing and three saves", calls)
	}
	if got := treeConfig(t, root, "hotfix/app", "v2"); got != "sha256:"+idV2 {
		t.Errorf("hotfix/app:v2 names config %s, want the store's image ID %s", got, idV2)
	}
	mustRun(t, "--root", root.Dir(), "verify")
	host := strings.TrimPrefix(testserver.Embedded(t, root), "http://")
	for _, ref := range []string{"hotfix/app:v1", "hotfix/app:v2", "hotfix/tools:1.0"} {
		tag, err := name.ParseReference(host+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		im, err := remote.Image(tag)
		if err == nil {
			err = validate.Image(im)
		}
		if err != nil {
			t.Errorf("ggcr pull %s: %v", ref, err)
		}
	}

	// A rerun: nothing moved, the store listed once, no image saved.
	before := snapshot(t, root.Dir())
	recs, r = sync()
	if r.code != 0 {
		t.Fatalf("rerun: exit %d\n%s", r.code, r.stderr)
	}
	for dest, rec := range recs {
		if rec.Status != "unchanged" {
			t.Errorf("rerun: %s: %+v", dest, rec)
		}
	}
	if calls := podmanCalls(t, log); strings.Join(calls, " ") != "images" {
		t.Errorf("rerun asked podman: %v, want one images listing and no save", calls)
	}
	if after := snapshot(t, root.Dir()); after != before {
		t.Errorf("a rerun changed the tree:\n%s", testtree.Diff(before, after))
	}

	// v1 rebuilt (here: re-tagged to another image): synced again, alone.
	p.podman("tag", "localhost/app:v2", "localhost/app:v1")
	recs, r = sync()
	if r.code != 0 || recs["hotfix/app:v1"].Status != "synced" || recs["hotfix/app:v2"].Status != "unchanged" || recs["hotfix/app:latest"].Status != "unchanged" || recs["hotfix/tools:1.0"].Status != "unchanged" {
		t.Errorf("after a rebuild: exit %d %+v\n%s", r.code, recs, r.stderr)
	}
	if calls := podmanCalls(t, log); strings.Join(calls, " ") != "images save" {
		t.Errorf("after a rebuild podman was asked: %v, want images, then one save", calls)
	}
	if got := treeConfig(t, root, "hotfix/app", "v1"); got != "sha256:"+idV2 {
		t.Errorf("hotfix/app:v1 names config %s after the rebuild, want %s", got, idV2)
	}

	// A tag the store no longer has goes with --prune.
	p.podman("untag", "localhost/app:v2", "localhost/app:v2")
	_, r = sync("--prune")
	if r.code != 0 || !strings.Contains(r.stderr, "pruned") {
		t.Errorf("--prune: exit %d\n%s", r.code, r.stderr)
	}
	if out := mustRun(t, "--root", root.Dir(), "list", "hotfix/app").stdout; strings.Fields(out)[0] != "latest" || len(strings.Fields(out)) != 2 || strings.Fields(out)[1] != "v1" {
		t.Errorf("hotfix/app after the prune: %q, want latest and v1", out)
	}

	// With --scoped the store's registry host is kept: localhost/app.
	recs, r = syncJSON(t, env, "--root", t.TempDir(), "sync", "--scoped", "--dry-run", "-f", file)
	if r.code != 0 || recs["hotfix/localhost/app:v1"].Status != "would-sync" || len(recs) != 3 {
		t.Errorf("--scoped --dry-run: exit %d %+v\n%s", r.code, recs, r.stderr)
	}

	// On the command line: a name with a tag syncs that tag, a name alone
	// every tag the store has of it.
	argRoot := t.TempDir()
	recs, r = syncJSON(t, env, "--root", argRoot, "sync", spec+"localhost/app:v1", spec+"localhost/tools")
	if r.code != 0 || len(recs) != 3 || recs["app:v1"].Status != "synced" || recs["tools:1.0"].Status != "synced" || recs["tools:2.0"].Status != "synced" {
		t.Errorf("sync of arguments: exit %d %+v\n%s", r.code, recs, r.stderr)
	}
	recs, r = syncJSON(t, env, "--root", argRoot, "sync", spec+"localhost/app:v1", spec+"localhost/tools")
	if r.code != 0 || recs["app:v1"].Status != "unchanged" || recs["tools:2.0"].Status != "unchanged" {
		t.Errorf("sync of arguments, again: exit %d %+v\n%s", r.code, recs, r.stderr)
	}
	podmanCalls(t, log)

	// A tag the store does not have: one line, exit 1, the tree as it was.
	write(spec + ":\n  images:\n    localhost/app: [v1, nosuch]\n")
	before = snapshot(t, root.Dir())
	recs, r = sync()
	if r.code != 1 || recs["app:nosuch"].Status != "failed" || !strings.Contains(r.stderr, "sync.yaml line 3: localhost/app: "+strings.TrimSuffix(spec, ":")+" has no image localhost/app:nosuch") {
		t.Errorf("a tag the store does not have: exit %d %+v\n%s", r.code, recs, r.stderr)
	}
	if after := snapshot(t, root.Dir()); after != before {
		t.Errorf("a failed sync changed the tree:\n%s", testtree.Diff(before, after))
	}
}

// TestSyncDockerDaemon: a sync file names the Docker Engine's images; a
// rerun finds the tag unchanged by the engine's image ID.
func TestSyncDockerDaemon(t *testing.T) {
	e := startDockerEngine(t)
	e.load(t, "../../testdata/hello.docker.tar")
	root := testserver.TempRoot(t)
	file := filepath.Join(t.TempDir(), "sync.yaml")
	if err := os.WriteFile(file, []byte("docker-daemon:\n  images:\n    hello: [latest]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "DOCKER_HOST=unix://"+e.sock)
	for i, want := range []string{"synced", "unchanged"} {
		recs, r := syncJSON(t, env, "--root", root.Dir(), "sync", "-f", file)
		if r.code != 0 || recs["hello:latest"].Status != want || recs["hello:latest"].Source != "docker-daemon:hello:latest" {
			t.Errorf("sync %d: exit %d %+v, want %s\n%s", i+1, r.code, recs, want, r.stderr)
		}
	}
	mustRun(t, "--root", root.Dir(), "verify")
}
