package exporter

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/image-serve/image-serve/internal/testlock"
	"github.com/opencontainers/go-digest"
)

func TestParseStoreRef(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, c := range []struct {
		in    string
		spec  *StoreSpec
		image string
	}{
		{"localhost/app:hotfix", nil, "localhost/app:hotfix"},
		{"app", nil, "app"},
		{id, nil, id},
		{"app@" + id, nil, "app@" + id},
		{"quay.io/ns/app@sha256:" + strings.Repeat("1", 64), nil, "quay.io/ns/app@sha256:" + strings.Repeat("1", 64)},
		{"[/var/lib/containers/storage]app:1", &StoreSpec{GraphRoot: "/var/lib/containers/storage"}, "app:1"},
		{"[vfs@/r+/rr]localhost:5000/app:1", &StoreSpec{Driver: "vfs", GraphRoot: "/r", RunRoot: "/rr"}, "localhost:5000/app:1"},
		{"[overlay@/r+/rr:overlay.mountopt=nodev,overlay.ignore_chown_errors=true]app",
			&StoreSpec{Driver: "overlay", GraphRoot: "/r", RunRoot: "/rr", Options: []string{"overlay.mountopt=nodev", "overlay.ignore_chown_errors=true"}}, "app"},
		{"[/r:opt=1]app", &StoreSpec{GraphRoot: "/r", Options: []string{"opt=1"}}, "app"},
	} {
		spec, image, err := ParseStoreRef(c.in)
		if err != nil {
			t.Errorf("ParseStoreRef(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(spec, c.spec) || image != c.image {
			t.Errorf("ParseStoreRef(%q) = %+v, %q; want %+v, %q", c.in, spec, image, c.spec, c.image)
		}
		if c.spec != nil {
			if back := "[" + spec.String() + "]" + image; back != c.in {
				t.Errorf("ParseStoreRef(%q) prints back as %q", c.in, back)
			}
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "no image"},
		{"[vfs@/r", "no closing ]"},
		{"[]app", "no graph root"},
		{"[vfs@]app", "no graph root"},
		{"[@/r]app", `driver ""`},
		{"[--root@/r]app", "not a driver name"},
		{"[relative/dir]app", "not an absolute path"},
		{"[/r+rel]app", "run root"},
		{"[/r:,x]app", "not a driver option"},
		{"[/r:--privileged]app", "not a driver option"},
		{"[/r\n]app", "control character"},
		{"[/r]", "no image"},
		{"[/r]App:1", "image"},
		{"[/r]app:bad tag", "image"},
		{"app@sha256:123", "invalid digest"},
	} {
		_, _, err := ParseStoreRef(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseStoreRef(%q) = %v, want an error containing %q", c.in, err, c.want)
		}
	}
}

func TestParseSourceLocal(t *testing.T) {
	src, err := ParseSource("containers-storage:[vfs@/r+/rr]localhost/app:hotfix")
	if err != nil {
		t.Fatal(err)
	}
	if src.String() != "containers-storage:[vfs@/r+/rr]localhost/app:hotfix" || src.Image != "localhost/app:hotfix" {
		t.Errorf("parsed as %+v, prints %q", src, src.String())
	}
	if d, err := defaultDest(src, "localhost/other:1"); err != nil || d != "app:hotfix" {
		t.Errorf("default dest %q, %v; want app:hotfix (the reference's name, not the saved image's)", d, err)
	}
	byID, _ := ParseSource("containers-storage:" + strings.Repeat("c", 64))
	if d, err := defaultDest(byID, "localhost/app:2"); err != nil || d != "app:2" {
		t.Errorf("default dest of an ID %q, %v; want the saved image's own name app:2", d, err)
	}
	if _, err := defaultDest(byID, ""); err == nil || !strings.Contains(err.Error(), "give DEST") {
		t.Errorf("default dest of an untagged image by ID: %v, want a request for DEST", err)
	}
	d, err := ParseSource("docker-daemon:hello")
	if err != nil || d.Image != "hello:latest" || d.String() != "docker-daemon:hello" {
		t.Errorf("docker-daemon:hello = %+v, %v", d, err)
	}
	for _, bad := range []string{"docker-daemon:", "docker-daemon:app@sha256:" + strings.Repeat("1", 64), "docker-daemon:sha256:12", "docker-daemon:UP"} {
		if _, err := ParseSource(bad); err == nil {
			t.Errorf("ParseSource(%q) accepted", bad)
		}
	}
}

// FuzzParseStoreRef: any containers-storage: reference parses or fails
// with an error; a parsed store spec prints back as itself, and what is
// handed to podman never starts with a dash.
func FuzzParseStoreRef(f *testing.F) {
	for _, seed := range []string{
		"localhost/app:1", "[vfs@/r+/rr:a=1,b=2]app", "[/r]" + strings.Repeat("a", 64),
		"[", "[]", "[@/]x", "[/a+b:c]d@e", "app@" + strings.Repeat("f", 64),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, image, err := ParseStoreRef(s)
		if err != nil {
			return
		}
		if image == "" || strings.HasPrefix(storeImageArg(image), "-") {
			t.Fatalf("ParseStoreRef(%q) = image %q", s, image)
		}
		if spec == nil {
			return
		}
		for _, a := range storeFlags(spec) {
			if a == "" {
				t.Fatalf("ParseStoreRef(%q): an empty podman argument in %q", s, storeFlags(spec))
			}
		}
		spec2, image2, err := ParseStoreRef("[" + spec.String() + "]" + image)
		if err != nil || !reflect.DeepEqual(spec, spec2) || image2 != image {
			t.Fatalf("ParseStoreRef(%q) = %+v; printed back it parses as %+v, %q, %v", s, spec, spec2, image2, err)
		}
	})
}

// saveStream builds a docker save stream of files.
func saveStream(t *testing.T, files []daFile) []byte {
	t.Helper()
	b, err := os.ReadFile(daWriteTar(t, "save.tar", false, files))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// configFor is an image config whose diff_ids are the layers' digests.
func configFor(t *testing.T, layers ...[]byte) []byte {
	t.Helper()
	ids := []digest.Digest{}
	for _, l := range layers {
		ids = append(ids, digest.FromBytes(l))
	}
	b, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "rootfs": map[string]any{"type": "layers", "diff_ids": ids}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blobName(b []byte) string { return "blobs/sha256/" + digest.FromBytes(b).Encoded() }

func readStream(t *testing.T, b []byte) (*streamedArchive, error) {
	t.Helper()
	a, err := readDockerSave(context.Background(), "test-stream", bytes.NewReader(b), streamLimits{maxLayer: 1 << 30})
	if a != nil {
		t.Cleanup(func() { a.Close() })
	}
	return a, err
}

// TestReadDockerSave reads both layouts docker save writes from a stream
// and gets the manifest docker-archive: synthesises for the same archive.
func TestReadDockerSave(t *testing.T) {
	l1, l2 := daLayer(t, "one", false), daLayer(t, "two", false)
	empty := make([]byte, 1024) // an empty layer: two zero blocks
	cfg := configFor(t, l1, l2, empty)
	legacy := []daFile{
		{name: "aaa.tar", body: l1},
		{name: "id1/layer.tar", typeflag: tar.TypeSymlink, linkname: "../aaa.tar"},
		{name: "id1/VERSION", body: []byte("1.0")},
		{name: "id2/layer.tar", body: l2},
		{name: "id3/layer.tar", body: empty},
		{name: "cfg.json", body: cfg},
		{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "cfg.json", RepoTags: []string{"localhost/app:1"}, Layers: []string{"id1/layer.tar", "id2/layer.tar", "id3/layer.tar"}})},
	}
	oci := []daFile{
		{name: "blobs/sha256/", typeflag: tar.TypeDir},
		{name: blobName(l1), body: l1},
		{name: blobName(l2), body: l2},
		{name: blobName(empty), body: empty},
		{name: blobName(cfg), body: cfg},
		{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{name: "index.json", body: []byte(`{"schemaVersion":2,"manifests":[]}`)},
		{name: "manifest.json", body: daManifestJSON(t, daImage{Config: blobName(cfg), RepoTags: []string{"localhost/app:1"}, Layers: []string{blobName(l1), blobName(l2), blobName(empty)}})},
	}
	var digests []digest.Digest
	for _, layout := range [][]daFile{legacy, oci, legacy} {
		stream := saveStream(t, layout)
		a, err := readStream(t, stream)
		if err != nil {
			t.Fatal(err)
		}
		if a.repoTag() != "localhost/app:1" || a.rewritten != 3 {
			t.Errorf("tag %q, %d layers rewritten; want localhost/app:1, 3", a.repoTag(), a.rewritten)
		}
		var m dockerArchiveManifest
		if err := json.Unmarshal(a.manifest, &m); err != nil {
			t.Fatal(err)
		}
		daCheckBlobsOf(t, a, append([]Descriptor{m.Config}, m.Layers...))
		for i, l := range m.Layers {
			if l.MediaType != dockerArchiveLayerGzipType {
				t.Errorf("layer %d is %s, want gzip", i, l.MediaType)
			}
		}
		// The same image read from a file gives the same manifest.
		p := filepath.Join(t.TempDir(), "save.tar")
		if err := os.WriteFile(p, stream, 0o644); err != nil {
			t.Fatal(err)
		}
		fa, err := openDockerArchive(context.Background(), p, "")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fa.manifest, a.manifest) {
			t.Errorf("the stream's manifest\n%s\ndiffers from docker-archive:'s\n%s", a.manifest, fa.manifest)
		}
		fa.Close()
		digests = append(digests, a.digest)
	}
	if digests[0] != digests[1] || digests[1] != digests[2] {
		t.Errorf("one image, three reads, digests %v: want one", digests)
	}
}

// daCheckBlobsOf reads every blob of a stream back against its digest.
func daCheckBlobsOf(t *testing.T, a *streamedArchive, ds []Descriptor) {
	t.Helper()
	for _, d := range ds {
		rc, err := a.Blob(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || digest.FromBytes(b) != d.Digest || int64(len(b)) != d.Size {
			t.Errorf("blob %s: %d bytes of %s, %v", d.Digest, len(b), digest.FromBytes(b), err)
		}
	}
}

// TestReadDockerSaveCompressedLayer: a layer stored gzipped is served as
// it is, and counts as nothing rewritten.
func TestReadDockerSaveCompressedLayer(t *testing.T) {
	gz := daLayer(t, "z", true)
	cfg := []byte(`{"rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("0", 64) + `"]}}`)
	a, err := readStream(t, saveStream(t, []daFile{
		{name: "l.tar.gz", body: gz},
		{name: "c.json", body: cfg},
		{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", Layers: []string{"l.tar.gz"}})},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.layers[digest.FromBytes(gz)]; !ok || a.rewritten != 0 {
		t.Errorf("gzipped layer not served as is (%v), %d rewritten", a.layers, a.rewritten)
	}
}

// TestReadDockerSaveHostile: a stream that is not a docker save of one
// image fails with one line saying why, and leaves no temporary file.
func TestReadDockerSaveHostile(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	l1 := daLayer(t, "one", false)
	cfg := configFor(t, l1)
	good := func(extra ...daFile) []daFile {
		return append(extra,
			daFile{name: "l.tar", body: l1},
			daFile{name: "c.json", body: cfg},
			daFile{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", Layers: []string{"l.tar"}})})
	}
	full := saveStream(t, good())
	huge := bytes.Repeat([]byte("x"), dockerArchiveMaxJSON+1)
	for _, c := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"empty", nil, "not a docker save stream"},
		{"not a tar", []byte("Error: something went wrong\n"), "not a docker save stream"},
		{"truncated", full[:len(full)/2], "truncated"},
		{"path outside", saveStream(t, good(daFile{name: "../evil", body: []byte("x")})), "outside the archive"},
		{"absolute path", saveStream(t, good(daFile{name: "/etc/passwd", body: []byte("x")})), "outside the archive"},
		{"huge JSON", saveStream(t, good(daFile{name: "big.json", body: huge})), "4 MiB limit"},
		{"no manifest.json", saveStream(t, []daFile{{name: "c.json", body: cfg}}), "no manifest.json"},
		{"two images", saveStream(t, []daFile{{name: "l.tar", body: l1}, {name: "c.json", body: cfg},
			{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", Layers: []string{"l.tar"}}, daImage{Config: "c.json", Layers: []string{"l.tar"}})}}), "lists 2 images"},
		{"diff_id mismatch", saveStream(t, []daFile{{name: "l.tar", body: l1}, {name: "c.json", body: configFor(t, daLayer(t, "other", false))},
			{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", Layers: []string{"l.tar"}})}}), "diff_id"},
		{"config is a layer", saveStream(t, []daFile{{name: "l.tar", body: l1},
			{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "l.tar", Layers: []string{"l.tar"}})}}), "not JSON"},
		{"layer is JSON", saveStream(t, []daFile{{name: "c.json", body: cfg},
			{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", Layers: []string{"c.json"}})}}), "not a tar, gzip or zstd"},
		{"link outside", saveStream(t, []daFile{{name: "x/layer.tar", typeflag: tar.TypeSymlink, linkname: "../../l.tar"}, {name: "c.json", body: cfg},
			{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", Layers: []string{"x/layer.tar"}})}}), "outside the archive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readStream(t, c.stream)
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("got %v, want one line containing %q", err, c.want)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("left %d temporary files behind", len(left))
			}
		})
	}
	_, err := readDockerSave(context.Background(), "s", bytes.NewReader(full), streamLimits{maxLayer: 100})
	if err == nil || !strings.Contains(err.Error(), "--max-blob-size") {
		t.Errorf("a layer over the limit: %v", err)
	}
}

// TestStoreLockWait: a store whose lock another process holds is waited
// for, with one message naming the holder, until it is released; with a
// timeout, the wait gives up naming --lock-timeout.
func TestStoreLockWait(t *testing.T) {
	root := t.TempDir()
	for _, dir := range []string{"vfs-layers", "vfs-images"} {
		if err := os.Mkdir(filepath.Join(root, dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"storage.lock", "vfs-layers/layers.lock", "vfs-images/images.lock"} {
		if err := os.WriteFile(filepath.Join(root, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitStoreUnlocked(context.Background(), "s", root, "", LocalOptions{}); err != nil {
		t.Fatalf("an unlocked store: %v", err)
	}
	for _, name := range []string{"storage.lock", "vfs-layers/layers.lock", "vfs-images/images.lock"} {
		t.Run(name, func(t *testing.T) {
			pid, release := testlock.Hold(t, filepath.Join(root, name))
			notified := make(chan string, 2)
			done := make(chan error, 1)
			go func() {
				done <- waitStoreUnlocked(context.Background(), "containers-storage:x", root, "", LocalOptions{Notify: func(m string) { notified <- m }})
			}()
			msg := <-notified
			if want := fmt.Sprintf("waiting for the container store's lock held by pid %d (a running build?)", pid); !strings.Contains(msg, want) {
				t.Errorf("message %q, want %q", msg, want)
			}
			select {
			case err := <-done:
				t.Fatalf("returned while the lock is held: %v", err)
			default:
			}
			release()
			if err := <-done; err != nil {
				t.Errorf("after the lock was released: %v", err)
			}
			if len(notified) != 0 {
				t.Errorf("said more than once: %q", <-notified)
			}
		})
	}
	_, _ = testlock.Hold(t, filepath.Join(root, "storage.lock"))
	err := waitStoreUnlocked(context.Background(), "containers-storage:x", root, "vfs", LocalOptions{LockTimeout: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "--lock-timeout") || !strings.Contains(err.Error(), "still held by pid") {
		t.Errorf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitStoreUnlocked(ctx, "containers-storage:x", root, "vfs", LocalOptions{}); err == nil {
		t.Error("a cancelled wait returned no error")
	}
}

// TestOpenLocalStoreErrors: podman missing, a store that is not there.
func TestOpenLocalStoreErrors(t *testing.T) {
	empty := t.TempDir()
	for _, c := range []struct {
		ref, podman, want string
	}{
		{"containers-storage:app", "no-such-podman-for-test", "there is no no-such-podman-for-test in PATH (install podman)"},
		{"containers-storage:[vfs@/nonexistent-store-for-test]app", "", "no container store at /nonexistent-store-for-test: no such directory"},
		{"containers-storage:[vfs@" + empty + "]app", "", "no container store at " + empty + ": it has no storage.lock"},
	} {
		src, err := ParseSource(c.ref)
		if err != nil {
			t.Fatal(err)
		}
		if c.podman == "" {
			c.podman = "/bin/true" // never reached: the store is checked first
		}
		_, err = openLocalStore(context.Background(), src, Options{Local: LocalOptions{Podman: c.podman}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.ref, err, c.want)
		}
	}
	if left, _ := os.ReadDir(empty); len(left) != 0 {
		t.Errorf("a store was made in %s", empty)
	}
}

// TestStreamCommand: the tool's own error line is the error when it
// fails; a stream it cuts short is not blamed on the tar.
func TestStreamCommand(t *testing.T) {
	_, err := streamCommand(context.Background(), "containers-storage:app", "podman image save", "/bin/sh",
		[]string{"-c", `echo 'time="x" level=warning msg="noise"' >&2; echo 'Error: app: image not known' >&2; exit 125`}, Options{})
	if err == nil || err.Error() != "containers-storage:app: podman image save: app: image not known" {
		t.Errorf("got %v", err)
	}
	_, err = streamCommand(context.Background(), "s", "tool", "/bin/sh", []string{"-c", "exit 0"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "not a docker save stream") {
		t.Errorf("an empty stream: %v", err)
	}
	_, err = streamCommand(context.Background(), "s", "tool", "/bin/sh", []string{"-c", "exec sleep 600"}, Options{Registry: RegistryOptions{Timeout: time.Millisecond}})
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Errorf("a stalled stream: %v", err)
	}
}

// serveDocker serves h on a unix socket and returns its path.
func serveDocker(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestDockerDaemon reads an image through a fake engine's socket and
// fails with one line on each way the engine can let it down.
func TestDockerDaemon(t *testing.T) {
	l1 := daLayer(t, "one", false)
	stream := saveStream(t, []daFile{
		{name: "l.tar", body: l1},
		{name: "c.json", body: configFor(t, l1)},
		{name: "manifest.json", body: daManifestJSON(t, daImage{Config: "c.json", RepoTags: []string{"app:1"}, Layers: []string{"l.tar"}})},
	})
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	sock := serveDocker(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/images/get" {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Query().Get("names") {
		case "app:1":
			w.Write(stream)
		case "stall:1":
			w.Write(stream[:1024])
			w.(http.Flusher).Flush()
			<-stall
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"reference does not exist"}`))
		}
	}))
	src, _ := ParseSource("docker-daemon:app:1")
	a, err := openDockerDaemon(context.Background(), src, Options{Local: LocalOptions{DockerHost: "unix://" + sock}})
	if err != nil {
		t.Fatal(err)
	}
	if a.repoTag() != "app:1" {
		t.Errorf("tag %q", a.repoTag())
	}
	a.Close()
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	silent := filepath.Join(t.TempDir(), "silent.sock")
	sl, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close() // accepts into the backlog, never answers
	quick := Options{Registry: RegistryOptions{Timeout: 50 * time.Millisecond}}
	for _, c := range []struct {
		ref, host string
		o         Options
		want      string
	}{
		{"docker-daemon:nope:1", "", Options{}, "answers 404 Not Found: reference does not exist"},
		{"docker-daemon:stall:1", "", quick, "stalled"},
		{"docker-daemon:app:1", "unix:///nonexistent/docker.sock", Options{}, "no Docker Engine socket at /nonexistent/docker.sock"},
		{"docker-daemon:app:1", "tcp://127.0.0.1:2375", Options{}, "only a unix:///PATH socket"},
		{"docker-daemon:app:1", "unix://" + silent, quick, "does not answer"},
	} {
		src, _ := ParseSource(c.ref)
		c.o.Local.DockerHost = c.host
		_, err := openDockerDaemon(context.Background(), src, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s via %q: %v, want one line containing %q", c.ref, c.host, err, c.want)
		}
	}
}
