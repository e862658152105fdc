package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
)

// localStore exports an image from a podman store (containers-storage:,
// issue 24) against skopeo copying the same image out of the same store
// to an OCI layout. The store is a throwaway vfs one the image is loaded
// into (untimed) from a docker save archive made here: the set's layers
// are random bytes, not tars, which a store cannot hold. Its three layers
// are real tars of the set's base, middle and top layer sizes, of random
// (incompressible) content, so the row measures reading the store more
// than compressing: the compressor takes about six times longer per byte
// of a tar of real files (bench/PROFILES.md, "Issue 24: the layer
// compressor").
// Both sides read the store's uncompressed layers and gzip them, ours
// through podman image save's stream, skopeo through containers/storage
// itself.
func (e *env) localStore() error {
	podman, err := exec.LookPath("podman")
	if err != nil {
		return fmt.Errorf("podman not installed: run make test-deps")
	}
	storeRoot, runRoot := e.path("local", "store"), e.path("local", "run")
	const n, repo = "openstack-local", namespace + "/openstack-local"
	ref := "localhost/" + repo + ":" + tag
	archive := e.path("local", "image.tar")
	if err := writeSaveArchive(archive, ref, []int64{e.sz.baseLayer, e.sz.middleLayer, e.sz.topLayer}); err != nil {
		return err
	}
	load := []string{"--root", storeRoot, "--runroot", runRoot, "--storage-driver", "vfs", "load", "--quiet", "-i", archive}
	e.rep.cmd("local store (set-up, untimed): the image", shellLine(podman, load))
	if _, err := command(podman, load...); err != nil {
		return err
	}
	if err := os.Remove(archive); err != nil {
		return err
	}
	src := "containers-storage:[vfs@" + storeRoot + "+" + runRoot + "]" + ref
	dest := func(kind string, r int) string { return e.path("local", fmt.Sprintf("%s-%d", kind, r)) }
	const (
		ours  = "image-serve export containers-storage:"
		skref = "skopeo copy containers-storage: oci:"
	)
	exportArgs := func(r int) []string {
		return []string{"--root", dest("ours", r), "--quiet", "export", src, repo + ":" + tag}
	}
	skopeoArgs := func(r int) []string {
		return []string{"--insecure-policy", "copy", "--quiet", src, "oci:" + dest("skopeo", r) + ":" + tag}
	}
	e.rep.cmd("local store, "+ours, shellLine(e.bin, exportArgs(0)))
	e.rep.cmd("local store, "+skref, shellLine(e.skopeo, skopeoArgs(0)))
	sizes := map[string]int64{}
	measure := func(kind, name string) func(int) error {
		return func(r int) error {
			b, err := dirBytes(dest(kind, r))
			if err != nil {
				return err
			}
			sizes[name] = b
			return os.RemoveAll(dest(kind, r))
		}
	}
	res, err := rotate(e.sz.coldRounds, []contender{
		{name: ours, run: func(r int) (run, error) { return command(e.bin, exportArgs(r)...) }, cleanup: measure("ours", ours)},
		{name: skref, run: func(r int) (run, error) { return command(e.skopeo, skopeoArgs(r)...) }, cleanup: measure("skopeo", skref)},
	})
	if err != nil {
		return err
	}
	storeBytes, _ := dirBytes(filepath.Join(storeRoot, "vfs-layers"))
	sp := float64(res[skref].median()) / float64(res[ours].median())
	ratio := fmt.Sprintf("%.2f× faster", sp)
	if sp < 1 {
		ratio = fmt.Sprintf("%.2f× slower", 1/sp)
	}
	e.rep.add(row{what: fmt.Sprintf("export of one image (%s, layers of %s, %s, %s) from a podman store (vfs)", n, mib(e.sz.baseLayer), mib(e.sz.middleLayer), mib(e.sz.topLayer)),
		ours: ours, oursVal: dur(res[ours].median()), ref: skref, refVal: dur(res[skref].median()),
		ratio: ratio,
		notes: fmt.Sprintf("written: ours %s (a served tree), skopeo's %s; both gzip the store's uncompressed layers in parallel with klauspost/pgzip (ours at level 6 in fixed 1 MiB blocks, deterministic; skopeo's at its default, 5); the layers are random bytes, which deflate passes through at ~700 MB/s a core against ~115 MB/s for a tar of real files, so the row measures reading more than compressing: ours streams podman image save (which stages each layer in $TMPDIR), skopeo reads the store directly; store's tar-split data %s; max RSS %s",
			mib(sizes[ours]), mib(sizes[skref]), mib(storeBytes), mib(res[ours].maxRSS()))})
	return e.localSync(storeRoot, runRoot, src, repo, n)
}

// localSync times what a daily run costs when the store has not moved:
// sync from a file naming the store (one listing, one manifest read of
// the tree per tag, no image read) against exporting the image again,
// what a job without sync would run, into the same tree (all of the image
// read and compressed, nothing published).
func (e *env) localSync(storeRoot, runRoot, src, repo, n string) error {
	tree := e.path("local", "sync-tree")
	file := e.path("local", "sync.yaml")
	// localhost/REPO goes to the tree as REPO: the tag the export names.
	body := fmt.Sprintf("containers-storage:[vfs@%s+%s]:\n  images:\n    localhost/%s: [%s]\n", storeRoot, runRoot, repo, tag)
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		return err
	}
	const (
		ours = "image-serve sync -f (a store, nothing moved)"
		ref  = "image-serve export containers-storage: (again)"
	)
	syncArgs := []string{"--root", tree, "--quiet", "sync", "-f", file}
	exportArgs := []string{"--root", tree, "--quiet", "export", src, repo + ":" + tag}
	e.rep.cmd("local store, first sync (set-up, untimed)", shellLine(e.bin, syncArgs))
	if _, err := command(e.bin, syncArgs...); err != nil {
		return err
	}
	e.rep.cmd("local store, "+ours, shellLine(e.bin, syncArgs))
	e.rep.cmd("local store, "+ref, shellLine(e.bin, exportArgs))
	res, err := rotate(e.sz.coldRounds, []contender{
		{name: ours, run: func(int) (run, error) { return command(e.bin, syncArgs...) }},
		{name: ref, run: func(int) (run, error) { return command(e.bin, exportArgs...) }},
	})
	if err != nil {
		return err
	}
	e.rep.add(row{what: fmt.Sprintf("daily run from a podman store, nothing moved (%s, one tag)", n),
		ours: ours, oursVal: dur(res[ours].median()), ref: ref, refVal: dur(res[ref].median()),
		ratio: fmt.Sprintf("%.1f×", float64(res[ref].median())/float64(res[ours].median())),
		notes: fmt.Sprintf("sync lists the store once (podman images) and compares the image ID with the config the tree's tag names: no image is read; export reads the whole image through podman image save and compresses it, to publish nothing; max RSS %s vs %s", mib(res[ours].maxRSS()), mib(res[ref].maxRSS()))})
	return nil
}

// writeSaveArchive writes a docker save archive of one image tagged ref
// whose layers are tars of one random file each, of the given sizes.
func writeSaveArchive(path, ref string, sizes []int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	rng := rand.NewChaCha8([32]byte{'l', 'o', 'c', 'a', 'l'})
	var layers, diffIDs []string
	for i, size := range sizes {
		// The layer tar is built in a temporary file to know its size.
		lf, err := os.CreateTemp(filepath.Dir(path), "layer-")
		if err != nil {
			return err
		}
		h := sha256.New()
		lw := tar.NewWriter(io.MultiWriter(lf, h))
		if err := lw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/layer%d.bin", i), Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.CopyN(lw, rng, size); err != nil {
			return err
		}
		if err := lw.Close(); err != nil {
			return err
		}
		diffID := hex.EncodeToString(h.Sum(nil))
		name := diffID + "/layer.tar"
		fi, err := lf.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := lf.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if _, err := io.Copy(tw, lf); err != nil {
			return err
		}
		lf.Close()
		os.Remove(lf.Name())
		layers, diffIDs = append(layers, name), append(diffIDs, "sha256:"+diffID)
	}
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(config)
	configName := hex.EncodeToString(sum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": layers}})
	if err != nil {
		return err
	}
	for _, file := range []struct {
		name string
		body []byte
	}{{configName, config}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: file.name, Mode: 0o644, Size: int64(len(file.body)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(file.body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
