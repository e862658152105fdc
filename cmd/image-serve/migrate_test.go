package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/image-serve/image-serve/gc"
	"github.com/image-serve/image-serve/internal/legacytree"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// tripleOTree is an undercloud's tree as TripleO's exporter left it.
type tripleOTree struct {
	root *tree.Root
	// refs are the tags that every server served before migration, with
	// the digests they may serve them as: a multi-arch tag is served by
	// size before (the list or its default child) and as its list after.
	refs map[string][]digest.Digest
	// symlinks are the TripleO symlink tags, served by no one before.
	symlinks map[string]digest.Digest
	// deep are tags of names deeper than two levels.
	deep  map[string]digest.Digest
	multi legacytree.Image
}

// buildTripleOTree writes two-level, one-level and deeper names, a
// multi-arch tag whose type map offers its list and amd64 child without
// qs, symlink tags (absolute and relative), layers hard-linked as .gz
// across repositories, a per-repository .htaccess, unsorted listings and
// a _catalog of two-level names. Its modes are umask 002's, which Apache
// and nginx, running as another user, can read (TestMigrate in tree/ and
// gc/'s verify tests cover 0700).
func buildTripleOTree(t *testing.T, extra int) *tripleOTree {
	root := testserver.TempRoot(t)
	b := legacytree.New(t, root.Dir())
	shared := legacytree.Layer(t, 8<<10)
	tt := &tripleOTree{root: root, refs: map[string][]digest.Digest{}, symlinks: map[string]digest.Digest{}}
	add := func(ref string, ds ...digest.Digest) { tt.refs[ref] = ds }
	api := b.Single("tripleomaster/openstack-nova-api", "current-tripleo", "amd64", shared, legacytree.Layer(t, 4<<10))
	add("tripleomaster/openstack-nova-api:current-tripleo", api.Digest)
	old := b.Untagged("tripleomaster/openstack-nova-api", "amd64", shared, legacytree.Layer(t, 2<<10))
	b.Symlink("tripleomaster/openstack-nova-api", "2019-03", old.Digest, true)
	b.Symlink("tripleomaster/openstack-nova-api", "stable", api.Digest, false)
	tt.symlinks["tripleomaster/openstack-nova-api:2019-03"] = old.Digest
	tt.symlinks["tripleomaster/openstack-nova-api:stable"] = api.Digest
	tt.multi = b.MultiArch("tripleomaster/openstack-nova-compute", "current-tripleo", []string{"amd64", "arm64"}, shared)
	add("tripleomaster/openstack-nova-compute:current-tripleo", tt.multi.Digest, tt.multi.Default)
	add("keystone:latest", b.Single("keystone", "latest", "amd64", shared).Digest)
	// Deeper names: TripleO never wrote them, and its vhost routes one-
	// and two-level names only; our servers serve them before and after.
	tt.deep = map[string]digest.Digest{"ceph/daemon/el8:v6": b.Single("ceph/daemon/el8", "v6", "amd64", legacytree.Layer(t, 2<<10)).Digest}
	for i := range extra {
		repo := fmt.Sprintf("tripleomaster/openstack-service-%02d", i)
		add(repo+":current-tripleo", b.Single(repo, "current-tripleo", "amd64", shared, legacytree.Layer(t, 1<<10)).Digest)
	}
	b.RepoHtaccess("tripleomaster/openstack-nova-api")
	b.Finish()
	b.Umask(0o002)
	return tt
}

// migrateServers serves root with TripleO's vhost, ours, nginx (given
// its links first, as "config nginx" does) and the embedded server.
func migrateServers(t *testing.T, root *tree.Root) map[string]string {
	if _, err := tree.Fixture(root).LinkForNginx(); err != nil {
		t.Fatal(err)
	}
	hosts := map[string]string{}
	for name, base := range map[string]string{
		"tripleo-vhost": testserver.Apache(t, nil, testserver.WithConfig(legacytree.TripleOVhost(root.Dir()))),
		"apache":        testserver.Apache(t, root),
		"apache-addenc": testserver.Apache(t, root, testserver.WithHostileEncoding()),
		"nginx":         testserver.Nginx(t, root),
		"embedded":      testserver.Embedded(t, root),
	} {
		hosts[name] = strings.TrimPrefix(base, "http://")
	}
	return hosts
}

// TestMigrateWhileServed takes over a TripleO tree as README says: every
// client of the suite pulls every tag from every server before, clients
// pull in a loop while migrate runs with no failed request, and after it
// symlink tags pull, --override-arch arm64 gets arm64 (TripleO's vhost
// too, and under AddEncoding), gc --dry-run frees nothing, verify is
// clean, no blob changed inode, and a second run changes nothing.
func TestMigrateWhileServed(t *testing.T) {
	tt := buildTripleOTree(t, 12)
	root := tt.root
	hosts := migrateServers(t, root)
	hostileTripleO := strings.TrimPrefix(testserver.Apache(t, nil, testserver.WithConfig(legacytree.TripleOVhost(root.Dir())), testserver.WithHostileEncoding()), "http://")
	inodes := legacyInodes(t, root)
	pm := newPodmanStore(t)

	// Before: every tag pulls from every server (go-containerregistry,
	// skopeo, podman), as the tree is.
	for name, host := range hosts {
		if !strings.HasPrefix(name, "tripleo") {
			for ref, d := range tt.deep {
				checkPull(t, name, host, ref, []digest.Digest{d})
			}
		}
		for ref, want := range tt.refs {
			checkPull(t, name+" before migrate", host, ref, want)
		}
		skopeo(t, "copy", "--all", "--insecure-policy", "--src-tls-verify=false",
			"docker://"+host+"/tripleomaster/openstack-nova-compute:current-tripleo", "dir:"+t.TempDir())
		if got := pm.pull(host+"/tripleomaster/openstack-nova-compute:current-tripleo", "amd64"); got != "amd64" {
			t.Errorf("%s before migrate: podman pull stored a %s image, want amd64", name, got)
		}
	}

	// During: a loop of pulls per server, each round every tag, while
	// migrate runs; every server did a round before it started.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		rounds   = map[string]int{}
	)
	stop, started := make(chan struct{}), make(chan struct{}, len(hosts))
	for name, host := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				for ref, want := range tt.refs {
					if err := pullOneOf(host, ref, want); err != nil {
						mu.Lock()
						failures = append(failures, fmt.Sprintf("%s: %s: %v", name, ref, err))
						mu.Unlock()
					}
				}
				mu.Lock()
				rounds[name]++
				mu.Unlock()
				if i == 0 {
					started <- struct{}{}
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	for range hosts {
		<-started
	}
	out := mustRun(t, "--root", root.Dir(), "migrate").stdout
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed while migrate ran (rounds %v):\n%s", len(failures), rounds, strings.Join(failures, "\n"))
	}
	t.Logf("pull rounds while migrate ran: %v\n%s", rounds, out)
	for _, kind := range []string{"blobs renamed", "headers rewritten", "type maps rewritten", "legacy symlink tags converted", "listings sorted", "per-repository"} {
		if !strings.Contains(out, kind) {
			t.Errorf("migrate's report lacks %q:\n%s", kind, out)
		}
	}

	// After: every tag as its list, symlink tags too, on every server,
	// TripleO's vhost under AddEncoding included.
	hosts["tripleo-vhost-addenc"] = hostileTripleO
	tt.refs["tripleomaster/openstack-nova-compute:current-tripleo"] = []digest.Digest{tt.multi.Digest}
	for ref, d := range tt.symlinks {
		tt.refs[ref] = []digest.Digest{d}
	}
	for name, host := range hosts {
		for ref, want := range tt.refs {
			checkPull(t, name+" after migrate", host, ref, want)
		}
		dir := t.TempDir()
		skopeo(t, "--override-arch", "arm64", "copy", "--insecure-policy", "--src-tls-verify=false",
			"docker://"+host+"/tripleomaster/openstack-nova-compute:current-tripleo", "dir:"+dir)
		if got := sha256Digest(readFile(t, filepath.Join(dir, "manifest.json"))); got != tt.multi.Children["arm64"].String() {
			t.Errorf("%s: skopeo --override-arch arm64 got %s, want the arm64 image %s", name, got, tt.multi.Children["arm64"])
		}
		if got := pm.pull(host+"/tripleomaster/openstack-nova-compute:current-tripleo", "arm64"); got != "arm64" {
			t.Errorf("%s after migrate: podman pull --arch arm64 stored a %s image", name, got)
		}
	}

	var dry gc.Report
	if err := json.Unmarshal([]byte(mustRun(t, "--root", root.Dir(), "gc", "--dry-run", "--json").stdout), &dry); err != nil {
		t.Fatal(err)
	}
	if dry.ManifestsDeleted+dry.BlobsDeleted > 0 || dry.BytesFreed > 0 {
		t.Errorf("gc --dry-run after migrate would delete: %+v", dry)
	}
	if out := mustRun(t, "--root", root.Dir(), "verify").stdout; strings.Contains(out, "legacy") {
		t.Errorf("verify after migrate:\n%s", out)
	}
	for path, in := range inodes {
		for _, p := range []string{path, strings.TrimSuffix(path, ".gz")} {
			if got := inodeNumber(t, p); got != in {
				t.Errorf("%s: inode %d, was %d: a blob was copied", p, got, in)
			}
		}
	}
	if out := mustRun(t, "--root", root.Dir(), "migrate").stdout; !strings.Contains(out, "nothing to migrate") {
		t.Errorf("second migrate:\n%s", out)
	}
}

// TestMigrateContainerd: containerd fetches every platform of the
// multi-arch tag and pulls a single-arch one from the unmigrated tree,
// and again after migrate, from Apache (TripleO's vhost and ours), nginx
// and the embedded server.
func TestMigrateContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("ctr images pull unpacks layers by mounting, which needs root: run the tests as root, as make test does")
	}
	ctrd := testserver.Containerd(t)
	tt := buildTripleOTree(t, 0)
	hosts := migrateServers(t, tt.root)
	ctr := func(stage string) {
		for name, host := range hosts {
			ns := "migrate-" + stage + "-" + name
			for _, args := range [][]string{
				{"content", "fetch", "--plain-http", "--all-platforms", host + "/tripleomaster/openstack-nova-compute:current-tripleo"},
				{"images", "pull", "--plain-http", "--platform", "linux/amd64", host + "/tripleomaster/openstack-nova-api:current-tripleo"},
				{"images", "pull", "--plain-http", "--platform", "linux/amd64", host + "/keystone:latest"},
			} {
				if _, err := ctrd.Ctr(ns, args...); err != nil {
					t.Errorf("%s, %s: %v", stage, name, err)
				}
			}
		}
	}
	ctr("before")
	mustRun(t, "--root", tt.root.Dir(), "-q", "migrate")
	ctr("after")
}

// checkPull pulls ref from host completely and checks it is one of want.
func checkPull(t *testing.T, stage, host, ref string, want []digest.Digest) {
	t.Helper()
	if err := pullOneOf(host, ref, want); err != nil {
		t.Errorf("%s: %s: %v", stage, ref, err)
	}
}

func pullOneOf(host, ref string, want []digest.Digest) error {
	got, err := pullDigest(host + "/" + ref)
	if err != nil {
		return err
	}
	for _, d := range want {
		if got.String() == d.String() {
			return nil
		}
	}
	return fmt.Errorf("served as %s, want one of %v", got, want)
}

// legacyInodes maps every .gz blob of the tree to its inode.
func legacyInodes(t *testing.T, root *tree.Root) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	fx := tree.Fixture(root)
	repos, err := fx.StoredRepositories()
	if err != nil {
		t.Fatal(err)
	}
	for _, repo := range repos {
		bs, err := fx.Blobs(repo)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range bs {
			if b.Legacy {
				p := fx.BlobFilePath(repo, b)
				out[p] = inodeNumber(t, p)
			}
		}
	}
	return out
}

func inodeNumber(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
