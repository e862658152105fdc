package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/image-serve/image-serve/bundle"
	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/tree"
)

// farWrapper writes a far-side command for --remote-command: it logs each
// command line it runs into log, keeps a copy of every bundle it loads
// (bundle.N, in order), and runs the test binary. When the file at exists
// and holds N, the far side's bundle load runs with IMAGE_SERVE_CRASH_AT=N
// (tracing into trace): only the load, not the inventory or list before it.
type farWrapper struct {
	path, log, dir, at, trace string
}

func newFarWrapper(t *testing.T) *farWrapper {
	t.Helper()
	dir := t.TempDir()
	w := &farWrapper{path: filepath.Join(dir, "far-image-serve"), log: filepath.Join(dir, "log"), dir: dir,
		at: filepath.Join(dir, "at"), trace: filepath.Join(dir, "trace")}
	script := fmt.Sprintf(`#!/bin/sh
echo "$*" >> %[1]s
case " $* " in
*" bundle load "*)
	n=$(ls %[2]s | grep -c '^bundle\.')
	export %[3]s=%[4]s
	if [ -s %[5]s ]; then export %[6]s=$(cat %[5]s); fi
	tee %[2]s/bundle.$n | %[7]s "$@"
	;;
*) exec %[7]s "$@" ;;
esac
`, w.log, dir, tree.CrashTraceEnv, w.trace, w.at, tree.CrashAtEnv, binary)
	if err := os.WriteFile(w.path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// loads is how many bundle loads the far side ran.
func (w *farWrapper) loads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(w.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), " bundle load ")
}

// bundle is the descriptor of the n-th bundle the far side loaded.
func (w *farWrapper) bundle(t *testing.T, n int) *bundle.Descriptor {
	t.Helper()
	f, err := os.Open(filepath.Join(w.dir, "bundle."+strconv.Itoa(n)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := bundle.Open([]bundle.Source{{Name: f.Name(), R: f}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Descriptor()
}

// replicaTags are the tags root holds, each with its digest.
func replicaTags(t *testing.T, root *tree.Root) map[string]string {
	t.Helper()
	var ts []replicaTag
	if err := json.Unmarshal([]byte(mustRun(t, "--root", root.Dir(), "list", "--json").stdout), &ts); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, tg := range ts {
		if !tg.Pinned {
			m[tg.Repository+":"+tg.Tag] = tg.Digest.String()
		}
	}
	return m
}

// checkReplica checks that replica holds the tags src holds, to the same
// digests, and that each pulls whole from the embedded server at host.
func checkReplica(t *testing.T, src, replica *tree.Root, host string) {
	t.Helper()
	want, got := replicaTags(t, src), replicaTags(t, replica)
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("the replica holds %v, the source %v", got, want)
	}
	for ref, d := range got {
		if h, err := pullDigest(host + "/" + ref); err != nil || h.String() != d {
			t.Errorf("pull %s from the replica: %v %v, want %s", ref, h, err, d)
		}
	}
}

// TestReplicateLocal replicates tree A into tree B on this machine: the
// bundle carries only what B lacks, a second run sends nothing, and
// --delete removes there a tag deleted in A, listed first by --dry-run.
func TestReplicateLocal(t *testing.T) {
	s := newAirgapSites(t)
	far := newFarWrapper(t)
	host := strings.TrimPrefix(testserver.Embedded(t, s.b), "http://")
	replicate := func(args ...string) result {
		return mustRun(t, append([]string{"--root", s.a.Dir(), "replicate", "--remote-command", far.path}, args...)...)
	}
	r := replicate(s.b.Dir())
	checkReplica(t, s.a, s.b, host)
	s.pullTargets(t, s.b)
	if far.loads(t) != 1 {
		t.Fatalf("%d loads, want 1", far.loads(t))
	}
	// Only what B lacks travelled: the targets' manifests, configs and
	// new layers, not the base's layers.
	// The tag B had already, base/os:v1, adds its manifest and config.
	d := far.bundle(t, 0)
	baseHead := imageHeadSize(t, host+"/base/os:v1")
	if d.Bytes.Members != s.newBytes+baseHead || len(d.Needed) != 2 {
		t.Errorf("the bundle carries %d bytes and leaves out %d blobs, want %d+%d bytes and the base's 2 layers", d.Bytes.Members, len(d.Needed), s.newBytes, baseHead)
	}
	if !strings.Contains(r.stderr, "replicated 2 tags (1 tag unchanged)") {
		t.Errorf("first run's summary: %s", r.stderr)
	}

	// A second run: every tag names the same manifest there; the bundle
	// carries their manifests and configs, no layer, and the far side
	// writes nothing.
	before := snapshot(t, s.b.Dir())
	r = replicate(s.b.Dir())
	noLayer(t, far, 1)
	if !strings.Contains(r.stderr, "replicated 0 tags (3 tags unchanged)") || !strings.Contains(r.stderr, "it wrote 0 B") {
		t.Fatalf("second run said %s", r.stderr)
	}
	if got := snapshot(t, s.b.Dir()); got != before {
		t.Fatal("a second run changed the replica")
	}

	// --delete: a tag deleted in A is deleted in B, and so is a tag that
	// never came from A; both listed first.
	mustRun(t, "--root", s.a.Dir(), "-q", "delete", "site/app:v2")
	mustRun(t, "--root", s.b.Dir(), "-q", "export", "oci:../../testdata/hello-oci:latest", "local/own:v1")
	before = snapshot(t, s.b.Dir())
	r = replicate("--dry-run", "--delete", s.b.Dir())
	if r.stdout != "would delete local/own:v1\nwould delete site/app:v2\n" {
		t.Errorf("--dry-run --delete printed %q", r.stdout)
	}
	if got := snapshot(t, s.b.Dir()); got != before {
		t.Fatal("--dry-run changed the replica")
	}
	replicate("--delete", s.b.Dir())
	for _, ref := range []string{"site/app:v2", "local/own:v1"} {
		if _, ok := replicaTags(t, s.b)[ref]; ok {
			t.Fatalf("--delete left %s in the replica", ref)
		}
	}
	checkReplica(t, s.a, s.b, host)
	mustRun(t, "--root", s.b.Dir(), "verify")
}

// imageHeadSize is the size of the manifest and the config of the image
// ref names.
func imageHeadSize(t *testing.T, ref string) int64 {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(raw) + len(cfg))
}

// noLayer checks that the n-th bundle the far side loaded carried no
// layer: manifests and configs only.
func noLayer(t *testing.T, far *farWrapper, n int) {
	t.Helper()
	if far.loads(t) != n+1 {
		t.Fatalf("%d loads, want %d", far.loads(t), n+1)
	}
	d := far.bundle(t, n)
	for _, m := range d.Members {
		if m.Kind == bundle.KindBlob {
			t.Errorf("bundle %d carries layer %s (%d bytes)", n, m.Digest, m.Size)
		}
	}
	t.Logf("bundle %d: %d members, %d bytes, no layer", n, len(d.Members), d.Bytes.Members)
}

// TestReplicateCrashPoints kills the far side's bundle load at each of
// its durable steps: every tag the replica lists then pulls whole, a
// rerun completes, and the replica then holds what the source holds.
func TestReplicateCrashPoints(t *testing.T) {
	s := newAirgapSites(t)
	far := newFarWrapper(t)
	host := strings.TrimPrefix(testserver.Embedded(t, s.b), "http://")
	start := t.TempDir()
	copyTree(t, s.b.Dir(), start)
	args := []string{"--root", s.a.Dir(), "replicate", "--remote-command", far.path, s.b.Dir()}

	mustRun(t, args...)
	steps := readSteps(t, s.b, far.trace)
	if len(steps) < 20 {
		t.Fatalf("the far side's load took %d steps", len(steps))
	}
	for k := 1; k <= len(steps); k++ {
		at := fmt.Sprintf("far side killed at step %d of %d (%s)", k, len(steps), steps[k-1])
		restoreTree(t, start, s.b.Dir())
		os.Remove(far.trace)
		if err := os.WriteFile(far.at, []byte(strconv.Itoa(k)), 0o644); err != nil {
			t.Fatal(err)
		}
		r := run(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "bundle load") {
			t.Fatalf("%s: replicate exited %d: %s", at, r.code, r.stderr)
		}
		if got := readSteps(t, s.b, far.trace); len(got) != k || got[k-1] != steps[k-1] {
			t.Fatalf("%s: died elsewhere: the steps differ from the clean run's", at)
		}
		// Every tag the replica has — by type map, in tags/list — pulls
		// whole, to the source's digest.
		want := replicaTags(t, s.a)
		for ref, d := range replicaTags(t, s.b) {
			if h, err := pullDigest(host + "/" + ref); err != nil || h.String() != d || d != want[ref] {
				t.Fatalf("%s: pull %s: %v %v, the replica lists %s, the source %s", at, ref, h, err, d, want[ref])
			}
		}
		for _, repo := range []string{"base/os", "site/app", "site/multi"} {
			var list struct{ Tags []string }
			if err := getJSON(crashServer{"embedded", host}, "/v2/"+repo+"/tags/list", &list); err != nil {
				continue // not there yet
			}
			for _, tag := range list.Tags {
				if h, err := pullDigest(host + "/" + repo + ":" + tag); err != nil || h.String() != want[repo+":"+tag] {
					t.Fatalf("%s: tags/list names %s:%s, which pulls %v %v", at, repo, tag, h, err)
				}
			}
		}
		os.Remove(far.at)
		mustRun(t, args...)
		checkReplica(t, s.a, s.b, host)
		for _, repo := range []string{"base/os", "site/app", "site/multi"} {
			var list struct{ Tags []string }
			if err := getJSON(crashServer{"embedded", host}, "/v2/"+repo+"/tags/list", &list); err != nil || len(list.Tags) != 1 {
				t.Fatalf("%s, then a rerun: %s's tags/list: %v %v", at, repo, list.Tags, err)
			}
		}
		if r := run(t, "--root", s.b.Dir(), "verify"); r.code != 0 {
			t.Fatalf("%s, then a rerun: verify: %s%s", at, r.stdout, r.stderr)
		}
	}
	t.Logf("killed the far side's load at each of its %d steps", len(steps))
}

// TestReplicateBadInput: a DEST that is no tree, a replica newer than this
// image-serve, an ssh host that cannot be reached: each refused with one
// line naming it, exit 1, nothing changed on either side.
func TestReplicateBadInput(t *testing.T) {
	s := newAirgapSites(t)
	beforeA, beforeB := snapshot(t, s.a.Dir()), snapshot(t, s.b.Dir())
	notTree := t.TempDir()
	if err := os.WriteFile(filepath.Join(notTree, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A far side whose inventory is of a newer format: a newer
	// image-serve.
	newer := filepath.Join(t.TempDir(), "newer-image-serve")
	script := fmt.Sprintf("#!/bin/sh\ncase \" $* \" in *\" inventory \"*) printf 'image-serve inventory 2\\n'; exit 0;; esac\nexec %s \"$@\"\n", binary)
	if err := os.WriteFile(newer, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Far sides that hang: one that never answers, one that takes no
	// byte of the bundle.
	hang := func(cmd string) string {
		p := filepath.Join(t.TempDir(), "hanging-image-serve")
		script := fmt.Sprintf("#!/bin/sh\ncase \" $* \" in *\" %s \"*) exec sleep 60;; esac\nexec %s \"$@\"\n", cmd, binary)
		if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().(*net.TCPAddr).Port
	l.Close()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"not a tree", []string{notTree}, "replica " + notTree + ": inventory: root " + notTree + ": no registry tree here"},
		{"no such directory", []string{filepath.Join(notTree, "nope")}, "no such directory"},
		{"newer", []string{"--remote-command", newer, s.b.Dir()}, `inventory format version "2": this image-serve reads version 1 only (refused: nothing was changed there)`},
		{"silent", []string{"--timeout", "1s", "--remote-command", hang("inventory"), s.b.Dir()}, "inventory: no answer within --timeout 1s"},
		{"stalled", []string{"--timeout", "10s", "--remote-command", hang("load"), s.b.Dir()}, "bundle load: no progress within --timeout 10s (killed; it publishes all tags or none)"},
		{"unreachable", []string{"--timeout", "10s", fmt.Sprintf("ssh://127.0.0.1:%d/srv/tree", closed)}, fmt.Sprintf("ssh to 127.0.0.1 failed: ssh: connect to host 127.0.0.1 port %d: Connection refused", closed)},
	} {
		r := run(t, append([]string{"--root", s.a.Dir(), "replicate"}, tc.args...)...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%s: exit %d, %q; want exit 1 and one line with %q", tc.name, r.code, r.stderr, tc.want)
		}
	}
	if snapshot(t, s.a.Dir()) != beforeA || snapshot(t, s.b.Dir()) != beforeB {
		t.Error("a refused replicate changed a tree")
	}
	if entries, _ := os.ReadDir(notTree); len(entries) != 1 {
		t.Errorf("a refused replicate wrote into the directory that is no tree: %v", entries)
	}
}

// sshServer is an sshd of the test's own on a free 127.0.0.1 port: its
// host key and the one authorized key made for the test.
type sshServer struct {
	port    int
	options []string // --ssh-option values that reach it
}

func startSSHD(t *testing.T) *sshServer {
	t.Helper()
	sshd := "/usr/sbin/sshd"
	if _, err := os.Stat(sshd); err != nil {
		t.Skip("no sshd (make test-deps installs openssh-server)")
	}
	if os.Geteuid() != 0 {
		t.Skip("sshd needs root to switch to the user")
	}
	// sshd refuses to start without its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	config := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %[2]s/host
AuthorizedKeysFile %[2]s/user.pub
PidFile %[2]s/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
`, port, dir)
	cfg := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
	})
	hostKey, err := os.ReadFile(filepath.Join(dir, "host.pub"))
	if err != nil {
		t.Fatal(err)
	}
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, fmt.Appendf(nil, "[127.0.0.1]:%d %s", port, hostKey), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, fmt.Sprintf("sshd listening on %d", port), func() (bool, string) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return true, ""
		}
		log, _ := os.ReadFile(logf.Name())
		return false, fmt.Sprintf("%v; its log: %s", err, log)
	})
	return &sshServer{port: port, options: []string{
		"IdentityFile=" + filepath.Join(dir, "user"), "IdentitiesOnly=yes",
		"UserKnownHostsFile=" + known, "StrictHostKeyChecking=yes",
	}}
}

// TestReplicateSSH replicates tree A into tree B through ssh to
// 127.0.0.1, with an sshd the test starts: the tags pull from B, a second
// run sends nothing, --delete removes a tag deleted in A, and a load
// killed at a step on the far side is completed by a rerun.
func TestReplicateSSH(t *testing.T) {
	sshd := startSSHD(t)
	s := newAirgapSites(t)
	far := newFarWrapper(t)
	host := strings.TrimPrefix(testserver.Embedded(t, s.b), "http://")
	dest := fmt.Sprintf("ssh://root@127.0.0.1:%d%s", sshd.port, s.b.Dir())
	args := []string{"--root", s.a.Dir(), "replicate", "--remote-command", far.path, "--timeout", "30s"}
	for _, o := range sshd.options {
		args = append(args, "--ssh-option", o)
	}
	replicate := func(more ...string) result { return mustRun(t, slices.Concat(args, more, []string{dest})...) }

	// Killed halfway through its load: every tag B lists pulls, and the
	// rerun completes.
	start := t.TempDir()
	copyTree(t, s.b.Dir(), start)
	replicate()
	steps := readSteps(t, s.b, far.trace)
	restoreTree(t, start, s.b.Dir())
	os.Remove(far.trace)
	os.WriteFile(far.at, []byte(strconv.Itoa(len(steps)/2)), 0o644)
	if r := run(t, slices.Concat(args, []string{dest})...); r.code != 1 || !strings.Contains(r.stderr, "bundle load") {
		t.Fatalf("killed far side: exit %d: %s", r.code, r.stderr)
	}
	for ref, d := range replicaTags(t, s.b) {
		if h, err := pullDigest(host + "/" + ref); err != nil || h.String() != d {
			t.Fatalf("after the kill: pull %s: %v %v, want %s", ref, h, err, d)
		}
	}
	os.Remove(far.at)
	replicate()
	checkReplica(t, s.a, s.b, host)
	s.pullTargets(t, s.b)

	r := replicate()
	noLayer(t, far, far.loads(t)-1)
	if !strings.Contains(r.stderr, "it wrote 0 B") {
		t.Fatalf("second run over ssh: %s", r.stderr)
	}
	mustRun(t, "--root", s.a.Dir(), "-q", "delete", "site/multi:v2")
	replicate("--delete")
	if _, ok := replicaTags(t, s.b)["site/multi:v2"]; ok {
		t.Fatal("--delete over ssh left site/multi:v2")
	}
	checkReplica(t, s.a, s.b, host)
}

// TestReplicateEmptyRoot replicates into an empty directory, the place of
// a replica before its first run, and with REPO:TAG arguments only those
// tags; a REPO:TAG this tree lacks is refused before anything is sent.
func TestReplicateEmptyRoot(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, tag := range []string{"v1", "v2"} {
		mustRun(t, "--root", a, "-q", "export", "oci:../../testdata/hello-oci:latest", "hello:"+tag)
	}
	r := run(t, "--root", a, "replicate", b, "hello:v3")
	if r.code != 1 || !strings.Contains(r.stderr, "hello:v3: no such tag in "+a) {
		t.Fatalf("a tag the source lacks: exit %d, %s", r.code, r.stderr)
	}
	if entries, _ := os.ReadDir(b); len(entries) != 0 {
		t.Fatalf("a refused replicate wrote into the empty root: %v", entries)
	}
	mustRun(t, "--root", a, "replicate", b, "hello:v1")
	rb, err := tree.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(testserver.Embedded(t, rb), "http://")
	got := replicaTags(t, rb)
	if len(got) != 1 || got["hello:v1"] == "" {
		t.Fatalf("replicate of hello:v1 left %v", got)
	}
	if h, err := pullDigest(host + "/hello:v1"); err != nil || h.String() != got["hello:v1"] {
		t.Fatalf("pull hello:v1: %v %v", h, err)
	}
	ra, err := tree.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "--root", a, "replicate", b)
	checkReplica(t, ra, rb, host)
}
