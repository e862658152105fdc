package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/internal/testwait"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// watchProc is a running `image-serve watch`, its JSON log records read
// as they come.
type watchProc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	recs []map[string]any
	done chan struct{} // stderr has ended
	code int
}

// Fast debounce for the tests; the assertions never depend on it.
var watchFlags = []string{"--debounce", "50ms", "--max-delay", "500ms"}

// startWatch runs `image-serve watch` on root (through wrap, when set: a
// command line it is appended to) and waits until its first full pass is
// done. The cleanup stops it with SIGTERM, wanting exit 143.
func startWatch(t *testing.T, root *tree.Root, wrap []string, extra ...string) *watchProc {
	t.Helper()
	w := launchWatch(t, root, wrap, extra...)
	w.waitRecord(t, "the first pass", func(r map[string]any) bool { return r["msg"] == "checked" && r["full"] == true })
	return w
}

// launchWatch is startWatch without the wait for the first pass.
func launchWatch(t *testing.T, root *tree.Root, wrap []string, extra ...string) *watchProc {
	t.Helper()
	args := append([]string{binary, "--root", root.Dir(), "--log-format", "json", "-v", "watch"}, watchFlags...)
	args = append(append(wrap, args...), extra...)
	w := &watchProc{cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go w.read(stderr)
	t.Cleanup(func() {
		if w.cmd.ProcessState != nil {
			return // stopped by the test
		}
		if w.stop(syscall.SIGTERM) != 143 {
			t.Errorf("watch: exit %d after SIGTERM, want 143\n%s", w.code, w.log())
		}
	})
	return w
}

func (w *watchProc) read(r io.Reader) {
	defer close(w.done)
	s := bufio.NewScanner(r)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		var rec map[string]any
		if json.Unmarshal(s.Bytes(), &rec) != nil {
			rec = map[string]any{"msg": "not JSON", "line": s.Text()}
		}
		w.mu.Lock()
		w.recs = append(w.recs, rec)
		w.mu.Unlock()
	}
}

// stop signals the watcher and returns its exit status, once stderr is
// read to its end (within a minute).
func (w *watchProc) stop(sig syscall.Signal) int {
	if w.cmd.ProcessState != nil {
		return w.code
	}
	_ = w.cmd.Process.Signal(sig)
	select {
	case <-w.done:
	case <-time.After(time.Minute):
		w.cmd.Process.Kill()
		<-w.done
	}
	_ = w.cmd.Wait()
	w.code = w.cmd.ProcessState.ExitCode()
	return w.code
}

// records returns the records so far that match.
func (w *watchProc) records(match func(map[string]any) bool) []map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []map[string]any
	for _, r := range w.recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

func (w *watchProc) log() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, r := range w.recs {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// waitRecord waits, with a deadline, for a record that matches.
func (w *watchProc) waitRecord(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	var got map[string]any
	eventually(t, what, func() (bool, string) {
		if rs := w.records(match); len(rs) > 0 {
			got = rs[0]
			return true, ""
		}
		return false, "log so far:\n" + w.log()
	})
	return got
}

// rederived matches the records of a rebuild that changed something.
func rederived(r map[string]any) bool {
	return strings.HasPrefix(fmt.Sprint(r["msg"]), "re-derived")
}

// eventually polls cond until it holds (testwait.Until).
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Until(t, what, cond)
}

// copyLikeRsync copies the content of src that is the truth of a tree —
// blobs, manifests, headers, type maps — to dst, as rsync does: every
// file written under a dot-named temporary name in its directory, then
// renamed. The derived files (tags/list, nginx's links, referrers
// indexes) are left behind, for the watcher to make.
func copyLikeRsync(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case e.IsDir() && (e.Name() == ".tags" || e.Name() == ".tags-fallback" || e.Name() == "tags" || e.Name() == "referrers"):
			return filepath.SkipDir
		case e.IsDir():
			return os.MkdirAll(to, 0o755)
		case !e.Type().IsRegular() || strings.HasPrefix(e.Name(), "manifest."):
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(to), "."+e.Name()+".Xa1b2C")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, to)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wantListed waits until tags/list of repo names exactly tags, and
// _catalog exactly repos.
func wantListed(t *testing.T, root *tree.Root, repo string, tags []string, repos []string) {
	t.Helper()
	eventually(t, fmt.Sprintf("tags/list of %s names %v, _catalog %v", repo, tags, repos), func() (bool, string) {
		got, _, err := tree.Fixture(root).ReadTagsList(repo)
		cat, err2 := tree.Fixture(root).ReadCatalog()
		return err == nil && err2 == nil && slices.Equal(got, tags) && slices.Equal(cat, repos),
			fmt.Sprintf("tags/list %v (%v), _catalog %v (%v)", got, err, cat, err2)
	})
}

// wantServed waits until url answers with manifest digest.
func wantServed(t *testing.T, url, digest string) {
	t.Helper()
	eventually(t, "GET "+url+" serves "+digest, func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header["Accept"] = strings.Split(allManifests, ", ")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := resp.Header.Get("Docker-Content-Digest")
		return resp.StatusCode == http.StatusOK && got == digest && sha256Digest(body) == digest,
			fmt.Sprintf("%s, digest %q", resp.Status, got)
	})
}

// wantPull pulls repo:tag from the server at base with go-containerregistry.
func wantPull(t *testing.T, base, repo, tag string) {
	t.Helper()
	ref, err := name.ParseReference(strings.TrimPrefix(base, "http://")+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := pullRef(ref); err != nil {
		t.Errorf("pull %s: %v", ref, err)
	}
}

// topDigest is the digest tag of repo names first in its type map.
func topDigest(t *testing.T, root *tree.Root, repo, tag string) string {
	t.Helper()
	vs, err := tree.Fixture(root).TagVariants(repo, tag)
	if err != nil {
		t.Fatal(err)
	}
	return vs[0].Digest.String()
}

// TestWatchFollowsOthers: with watch running, what others do to the tree
// reaches tags/list, _catalog and nginx's links, and so the embedded
// server and nginx serve it: an rsync-like burst that adds a tag, a type
// map replaced, a repository removed with rm -r, a new repository copied
// in. The tree verifies clean at the end.
func TestWatchFollowsOthers(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/app:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/gone:v1")
	// Another host's tree: what the rsyncs bring.
	src := testserver.TempRoot(t)
	mustRun(t, "--root", src.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/app:v2")
	mustRun(t, "--root", src.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/new:v1")
	v2 := topDigest(t, src, "demo/app", "v2")

	servers := map[string]string{
		"embedded": testserver.Embedded(t, root),
		"nginx":    testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root))),
	}
	w := startWatch(t, root, nil)
	if rs := w.records(rederived); len(rs) > 0 {
		t.Errorf("the first pass over an exported tree rewrote something: %v", rs)
	}

	// A burst: the blobs, manifests and type map of tag v2.
	fx := tree.Fixture(root)
	copyLikeRsync(t, tree.Fixture(src).RepoDir("demo/app"), fx.RepoDir("demo/app"))
	wantListed(t, root, "demo/app", []string{"v1", "v2"}, []string{"demo/app", "demo/gone"})
	for _, base := range servers {
		wantServed(t, base+"/v2/demo/app/manifests/v2", v2)
		wantPull(t, base, "demo/app", "v2")
	}

	// v1's type map replaced by v2's: nginx's links follow.
	b, err := os.ReadFile(fx.TypeMapPath("demo/app", "v2"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(fx.TypeMapPath("demo/app", "v1")), ".v1.type-map.tmp")
	if err := os.WriteFile(tmp, []byte(strings.Replace(string(b), "URI: v2", "URI: v1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, fx.TypeMapPath("demo/app", "v1")); err != nil {
		t.Fatal(err)
	}
	wantServed(t, servers["nginx"]+"/v2/demo/app/manifests/v1", v2)
	wantServed(t, servers["embedded"]+"/v2/demo/app/manifests/v1", v2)

	// A repository removed by hand, a new one copied in.
	if err := os.RemoveAll(fx.RepoDir("demo/gone")); err != nil {
		t.Fatal(err)
	}
	copyLikeRsync(t, tree.Fixture(src).RepoDir("demo/new"), fx.RepoDir("demo/new"))
	wantListed(t, root, "demo/new", []string{"v1"}, []string{"demo/app", "demo/new"})
	for _, base := range servers {
		wantPull(t, base, "demo/new", "v1")
		eventually(t, "GET _catalog from "+base, func() (bool, string) {
			resp, body := httpGet(t, base+"/v2/_catalog")
			return resp.StatusCode == http.StatusOK && string(body) == `{"repositories":["demo/app","demo/new"]}`, string(body)
		})
	}

	w.waitRecord(t, "the catalog record", func(r map[string]any) bool {
		return r["msg"] == "re-derived _catalog" && fmt.Sprint(r["removed"]) == "[demo/gone]"
	})
	// Every rebuild logged what it did, machine-readably.
	for _, r := range w.records(func(r map[string]any) bool { return r["msg"] == "re-derived repository" }) {
		if _, ok := r["tags_list"].(bool); !ok || r["repo"] == nil {
			t.Errorf("rebuild record without repo or tags_list: %v", r)
		}
	}
	mustRun(t, "--root", root.Dir(), "verify")
}

// TestWatchTypeMapRemovedIsDeletion: watch's rule for a tag whose type
// map goes. To watch the type maps are the truth, so a type map removed
// is a tag deleted — it cannot tell an operator's rm from an rsync
// --delete halfway through, and bringing the tag back would fight the
// rsync — and its tags/list entry and nginx links follow; but the tag is
// never dropped silently: a WARN record names it with the digest nginx
// served, the last record of it. What follows from the bytes alone is
// derived, as verify --repair derives it: a manifest's .htaccess
// removed is written again, byte for byte as exported.
func TestWatchTypeMapRemovedIsDeletion(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/app:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/app:v2")
	v1 := topDigest(t, root, "demo/app", "v1")
	d, err := digest.Parse(topDigest(t, root, "demo/app", "v2"))
	if err != nil {
		t.Fatal(err)
	}
	fx := tree.Fixture(root)
	exported, err := os.ReadFile(fx.HeadersPath("demo/app", d))
	if err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, root, nil)

	if err := os.Remove(fx.HeadersPath("demo/app", d)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the .htaccess written again", func() (bool, string) {
		b, err := os.ReadFile(tree.Fixture(root).HeadersPath("demo/app", d))
		return err == nil && string(b) == string(exported), fmt.Sprintf("%q, %v", b, err)
	})
	w.waitRecord(t, "the rebuild record with the headers", func(r map[string]any) bool {
		return r["msg"] == "re-derived repository" && r["headers"] == 1.0
	})

	if err := os.Remove(fx.TypeMapPath("demo/app", "v1")); err != nil {
		t.Fatal(err)
	}
	wantListed(t, root, "demo/app", []string{"v2"}, []string{"demo/app"})
	rec := w.waitRecord(t, "the removed tag's record", func(r map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(r["msg"]), "removed tag")
	})
	if rec["level"] != "WARN" || rec["repo"] != "demo/app" || rec["tag"] != "v1" || rec["digest"] != v1 {
		t.Errorf("removed tag record %v, want WARN naming demo/app, v1 and %s", rec, v1)
	}
	for _, p := range []string{fx.TagLinkPath("demo/app", "v1"), fx.FallbackLinkPath("demo/app", "v1")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	// Nothing records the tag now: a repair has nothing to restore.
	r := mustRun(t, "--root", root.Dir(), "--log-format", "json", "verify", "--repair")
	if !strings.Contains(r.stdout, `"restored": []`) || !strings.Contains(r.stdout, `"lost": []`) {
		t.Errorf("verify --repair after watch followed a deletion:\n%s", r.stdout)
	}
	if _, err := os.Stat(fx.TypeMapPath("demo/app", "v1")); err == nil {
		t.Error("the deleted tag came back")
	}
}

// TestWatchLeavesOwnWritesAlone: what image-serve itself writes while
// watch runs — exports, a delete that prunes a repository, gc — is never
// re-derived: watch sees the events, finds everything in step, and logs
// no rebuild. A change by hand made last is re-derived, which shows that
// watch had handled every event before it. SIGINT stops it with 130.
func TestWatchLeavesOwnWritesAlone(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "sentinel/app:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/doomed:v1")
	w := startWatch(t, root, nil)

	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/new:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/new:v1")
	mustRun(t, "--root", root.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "demo/new:v2")
	mustRun(t, "--root", root.Dir(), "-q", "delete", "demo/doomed:v1")
	mustRun(t, "--root", root.Dir(), "-q", "gc", "--grace", "0")
	mustRun(t, "--root", root.Dir(), "-q", "config", "nginx")

	if err := os.Remove(tree.Fixture(root).TagsListPath("sentinel/app")); err != nil {
		t.Fatal(err)
	}
	w.waitRecord(t, "the sentinel's rebuild", func(r map[string]any) bool {
		return r["msg"] == "re-derived repository" && r["repo"] == "sentinel/app"
	})
	for _, r := range w.records(rederived) {
		if r["repo"] != "sentinel/app" && !onlySentinel(r) {
			t.Errorf("re-derived what image-serve wrote itself: %v", r)
		}
	}
	if rs := w.records(func(r map[string]any) bool { return r["msg"] == "checked" && r["full"] == false }); len(rs) == 0 {
		t.Error("no rebuild after the exports: were their events seen at all?")
	}
	if code := w.stop(syscall.SIGINT); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130\n%s", code, w.log())
	}
	last := w.records(func(map[string]any) bool { return true })
	if rec := last[len(last)-1]; rec["level"] != "ERROR" || !strings.Contains(fmt.Sprint(rec["err"]), "interrupted by SIGINT") {
		t.Errorf("last record %v, want the interruption", rec)
	}
	mustRun(t, "--root", root.Dir(), "verify")
}

// TestWatchWaitsForGC: while the tree lock is held exclusively (as gc
// holds it), watch waits — saying so at debug level — and re-derives once
// it is released.
func TestWatchWaitsForGC(t *testing.T) {
	root := testserver.TempRoot(t)
	mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/app:v1")
	w := startWatch(t, root, nil)
	fx := tree.Fixture(root)
	l, err := fx.LockExclusive()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(fx.TagsListPath("demo/app")); err != nil {
		t.Fatal(err)
	}
	w.waitRecord(t, "the wait", func(r map[string]any) bool {
		return strings.HasPrefix(fmt.Sprint(r["msg"]), "waiting for the tree")
	})
	if _, err := os.Stat(fx.TagsListPath("demo/app")); err == nil {
		t.Error("tags/list rewritten while the tree lock was held exclusively")
	}
	l.Unlock()
	wantListed(t, root, "demo/app", []string{"v1"}, []string{"demo/app"})
}

// TestWatchSurvivesReplacedRoot: the root, or its v2 directory, replaced
// under a running watch (moved away and another copy moved in) is
// watched afresh: the copy's derived files are set right, and a later
// change in it is followed.
func TestWatchSurvivesReplacedRoot(t *testing.T) {
	for _, which := range []string{"root", "v2"} {
		t.Run(which, func(t *testing.T) {
			root := testserver.TempRoot(t)
			mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/app:v1")
			mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "demo/other:v1")
			startWatch(t, root, nil)

			dir := root.Dir()
			fx := tree.Fixture(root)
			if which == "v2" {
				dir = fx.V2Dir()
			}
			if out, err := exec.Command("cp", "-a", dir, dir+".new").CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			// The copy lacks demo/app's tags/list: the watcher must make it.
			rel, _ := filepath.Rel(dir, fx.TagsListPath("demo/app"))
			if err := os.Remove(filepath.Join(dir+".new", rel)); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dir, dir+".old"); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dir+".new", dir); err != nil {
				t.Fatal(err)
			}
			wantListed(t, root, "demo/app", []string{"v1"}, []string{"demo/app", "demo/other"})

			// Watched afresh: a repository copied into the new tree is
			// followed, and the old tree is left alone.
			copyLikeRsync(t, fx.RepoDir("demo/app"), fx.RepoDir("demo/third"))
			wantListed(t, root, "demo/third", []string{"v1"}, []string{"demo/app", "demo/other", "demo/third"})
			old, err := os.ReadFile(filepath.Join(dir+".old", map[string]string{"root": "v2", "v2": ""}[which], "_catalog"))
			if err != nil || string(old) != `{"repositories":["demo/app","demo/other"]}` {
				t.Errorf("the old tree's _catalog: %q, %v", old, err)
			}
		})
	}
}

// TestWatchLimit: with the inotify watch limit far below what the tree
// needs, watch says so once — naming the sysctl and how to raise it —
// and still converges, by full rescans. The limit is set in a user
// namespace of the watcher's own (the kernel counts inotify watches per
// user namespace, and lets its owner lower the limit there), so nothing
// else on the machine is touched.
func TestWatchLimit(t *testing.T) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare is not installed")
	}
	const limit = 6 // the root's parent, the root, v2, demo, demo/app, demo/app/manifests
	set := fmt.Sprintf("echo %d > /proc/sys/user/max_inotify_watches && exec \"$@\"", limit)
	wrap := []string{unshare, "--user", "--map-root-user", "sh", "-c", set, "sh"}
	if out, err := exec.Command(wrap[0], append(wrap[1:], "true")...).CombinedOutput(); err != nil {
		t.Skipf("cannot lower the inotify watch limit in a user namespace here: %v\n%s", err, out)
	}
	root := testserver.TempRoot(t)
	for _, ref := range []string{"demo/app:v1", "zz/gone:v1", "zz/keep:v1"} {
		mustRun(t, "--root", root.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", ref)
	}
	src := testserver.TempRoot(t)
	mustRun(t, "--root", src.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "zz/keep:v2")
	mustRun(t, "--root", src.Dir(), "-q", "export", "docker-archive:../../testdata/hello.docker.tar", "zz/new:v1")
	w := startWatch(t, root, wrap, "--rescan-interval", "200ms")
	isLimit := func(r map[string]any) bool { return r["reason"] == "max_user_watches" }
	rec := w.waitRecord(t, "the fallback message", isLimit)
	msg := fmt.Sprint(rec["msg"])
	for _, want := range []string{"fs.inotify.max_user_watches", fmt.Sprintf("= %d", limit), fmt.Sprintf("sysctl -w fs.inotify.max_user_watches=%d", 2*limit), "every 200ms"} {
		if !strings.Contains(msg, want) {
			t.Errorf("fallback message %q does not say %q", msg, want)
		}
	}
	if rec["level"] != "WARN" {
		t.Errorf("fallback record at level %v, want WARN", rec["level"])
	}

	// Changes below the directories watched: only rescans find them.
	fx := tree.Fixture(root)
	copyLikeRsync(t, tree.Fixture(src).RepoDir("zz/keep"), fx.RepoDir("zz/keep"))
	if err := os.RemoveAll(fx.RepoDir("zz/gone")); err != nil {
		t.Fatal(err)
	}
	copyLikeRsync(t, tree.Fixture(src).RepoDir("zz/new"), fx.RepoDir("zz/new"))
	wantListed(t, root, "zz/keep", []string{"v1", "v2"}, []string{"demo/app", "zz/keep", "zz/new"})
	wantListed(t, root, "zz/new", []string{"v1"}, []string{"demo/app", "zz/keep", "zz/new"})
	base := testserver.Nginx(t, root, testserver.WithNginxConfig(nginxConfigFromCLI(root)))
	wantPull(t, base, "zz/keep", "v2")
	wantPull(t, base, "zz/new", "v1")
	// Said once, whatever the rescans met since.
	if n := len(w.records(isLimit)); n != 1 {
		t.Errorf("the fallback was said %d times, want once:\n%s", n, w.log())
	}
}

// onlySentinel reports a re-derivation of _catalog that only dropped or
// added sentinel/app: the hand change's doing, not image-serve's. An event
// of an earlier write (the catalog page, rewritten at every tag update)
// handled after the hand change reads the disk as it now is, and finds
// the sentinel unpublished until its repository is re-derived.
func onlySentinel(r map[string]any) bool {
	if r["msg"] != "re-derived _catalog" {
		return false
	}
	for _, k := range []string{"added", "removed"} {
		if l, ok := r[k].([]any); ok && (len(l) != 1 || l[0] != "sentinel/app") {
			return false
		}
	}
	return true
}
