package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// bundleTargets is how many target images the bundle section carries
// over their shared base.
const bundleTargets = 8

// bundles carries a set of targets built on a shared base to a site that
// holds the base: image-serve's inventory of the far tree, bundle create
// --have in the near tree and bundle load in the far one, against skopeo
// copying each target out to a docker-archive and back into an OCI
// layout (skopeo writes one image per docker-archive, skopeo#556, and
// carries every layer: it has no delta). Time and bytes carried, as
// ratios; and the load's write rate against the disk's sequential write
// rate, measured in the same run. hauler and mindthegap, which would be
// the other references, are not served by the Go module proxy.
func (e *env) bundles() error {
	sz := e.sz
	base := []bench.LayerSpec{{Seed: 11, Index: 0, Size: sz.baseLayer}, {Seed: 11, Index: 1, Size: sz.middleLayer}}
	specs := []bench.ImageSpec{{Ref: "base", Platforms: []bench.PlatformImage{{Arch: "amd64", Layers: base}}}}
	var targets []string
	for i := range bundleTargets {
		name := fmt.Sprintf("app-%d", i)
		targets = append(targets, name)
		layers := append(append([]bench.LayerSpec{}, base...), bench.LayerSpec{Seed: 12, Index: uint64(i), Size: sz.middleLayer})
		specs = append(specs, bench.ImageSpec{Ref: name, Platforms: []bench.PlatformImage{{Arch: "amd64", Layers: layers}}})
	}
	l, err := bench.WriteImages(e.path("bundle-oci"), specs)
	if err != nil {
		return err
	}
	// New blobs: every blob of the targets (layers, configs, manifests)
	// the base does not have, each once.
	inBase := map[string]bool{}
	for _, b := range l.Blobs["base"] {
		inBase[b.Digest.String()] = true
	}
	var newBytes, fullBytes int64
	seen := map[string]bool{}
	for _, n := range targets {
		for _, b := range l.Blobs[n] {
			if seen[b.Digest.String()] {
				continue
			}
			seen[b.Digest.String()] = true
			fullBytes += b.Size
			if !inBase[b.Digest.String()] {
				newBytes += b.Size
			}
		}
	}

	// The near tree holds base and targets, the far one the base (made
	// anew for each round from the same layout): set-up, untimed.
	near := e.path("bundle-near")
	export := func(root, name string) error {
		args := []string{"--root", root, "--quiet", "export", l.Source(name), "bench/" + name + ":" + tag}
		e.rep.cmd("bundle (set-up, untimed): the trees", shellLine(e.bin, args))
		_, err := command(e.bin, args...)
		return err
	}
	for _, n := range append([]string{"base"}, targets...) {
		if err := export(near, n); err != nil {
			return err
		}
	}
	far := func(r int) string { return e.path("bundle-far", fmt.Sprint(r)) }
	if err := export(far(-1), "base"); err != nil {
		return err
	}
	inv := e.path("bundle-far.inventory")
	invArgs := []string{"--root", far(-1), "--quiet", "inventory", "-o", inv}
	e.rep.cmd("bundle (set-up, untimed): the far tree's inventory", shellLine(e.bin, invArgs))
	if _, err := command(e.bin, invArgs...); err != nil {
		return err
	}

	diskBytes := sz.bigLayer
	diskRate, err := e.diskWriteRate(diskBytes)
	if err != nil {
		return err
	}
	logf("disk: sequential write+fsync of %s at %.1f MiB/s", mib(diskBytes), diskRate/(1<<20))

	const (
		ours = "image-serve bundle create --have + bundle load"
		ref  = "skopeo copy oci: → docker-archive: → oci: each"
	)
	bundleFile := func(r int) string { return e.path("bundle", fmt.Sprintf("update-%d.bundle", r)) }
	createArgs := func(r int) []string {
		args := []string{"--root", near, "--quiet", "bundle", "create", "-o", bundleFile(r), "--have", inv}
		for _, n := range targets {
			args = append(args, "bench/"+n+":"+tag)
		}
		return args
	}
	loadArgs := func(r int) []string {
		return []string{"--root", far(r), "--quiet", "bundle", "load", "--json", bundleFile(r)}
	}
	e.rep.cmd("bundle, "+ours, shellLine(e.bin, createArgs(0))+"` then `"+shellLine(e.bin, loadArgs(0)))
	archive := func(r int, n string) string { return e.path("bundle-skopeo", fmt.Sprint(r), n+".tar") }
	outArgs := func(r int, n string) []string {
		return []string{"--insecure-policy", "copy", "--quiet", l.Source(n), "docker-archive:" + archive(r, n) + ":bench/" + n + ":" + tag}
	}
	backArgs := func(r int, n string) []string {
		return []string{"--insecure-policy", "copy", "--quiet", "docker-archive:" + archive(r, n), "oci:" + e.path("bundle-skopeo-back", fmt.Sprint(r)) + ":" + n}
	}
	e.rep.cmd("bundle, "+ref+" (×"+fmt.Sprint(len(targets))+")", shellLine(e.skopeo, outArgs(0, targets[0]))+"` then `"+shellLine(e.skopeo, backArgs(0, targets[0])))

	carried := map[string]int64{}
	var loadWalls []time.Duration
	var written int64
	res, err := rotate(e.sz.coldRounds, []contender{
		{name: ours,
			setup: func(r int) error {
				if err := os.MkdirAll(filepath.Dir(bundleFile(r)), 0o755); err != nil {
					return err
				}
				return export(far(r), "base")
			},
			run: func(r int) (run, error) {
				start := time.Now()
				c, err := command(e.bin, createArgs(r)...)
				if err != nil {
					return c, err
				}
				ld, err := command(e.bin, loadArgs(r)...)
				if err != nil {
					return ld, err
				}
				var rep struct {
					Written int64 `json:"bytes_written"`
				}
				if err := json.Unmarshal(ld.stdout, &rep); err != nil {
					return ld, fmt.Errorf("bundle load --json: %v", err)
				}
				loadWalls = append(loadWalls, ld.wall)
				written = rep.Written
				return run{wall: time.Since(start), maxRSS: max(c.maxRSS, ld.maxRSS)}, nil
			},
			cleanup: func(r int) error {
				fi, err := os.Stat(bundleFile(r))
				if err != nil {
					return err
				}
				carried[ours] = fi.Size()
				if err := os.Remove(bundleFile(r)); err != nil {
					return err
				}
				return os.RemoveAll(far(r))
			}},
		{name: ref,
			setup: func(r int) error {
				if err := os.MkdirAll(filepath.Dir(archive(r, "x")), 0o755); err != nil {
					return err
				}
				return os.MkdirAll(e.path("bundle-skopeo-back"), 0o755)
			},
			run: func(r int) (run, error) {
				var fns []func() (run, error)
				for _, n := range targets {
					fns = append(fns,
						func() (run, error) { return command(e.skopeo, outArgs(r, n)...) },
						func() (run, error) { return command(e.skopeo, backArgs(r, n)...) })
				}
				return sequence(fns)
			},
			cleanup: func(r int) error {
				n, err := dirBytes(filepath.Dir(archive(r, "x")))
				if err != nil {
					return err
				}
				carried[ref] = n
				if err := os.RemoveAll(filepath.Dir(archive(r, "x"))); err != nil {
					return err
				}
				return os.RemoveAll(e.path("bundle-skopeo-back", fmt.Sprint(r)))
			}},
	})
	if err != nil {
		return err
	}
	sp := float64(res[ref].median()) / float64(res[ours].median())
	over := float64(carried[ours])/float64(newBytes) - 1
	e.rep.add(row{what: fmt.Sprintf("carry %d targets over a shared base of %s to a site holding the base", len(targets), mib(sz.baseLayer+sz.middleLayer)),
		ours: ours, oursVal: dur(res[ours].median()), ref: ref, refVal: dur(res[ref].median()),
		ratio:  fmt.Sprintf("%.2f× faster; %.3f× the bytes carried", sp, float64(carried[ours])/float64(carried[ref])),
		target: "bytes carried ≤ new blobs + 1%", met: met(over, 0.01, false),
		notes: fmt.Sprintf("carried: the bundle %s, skopeo's archives %s; new blobs %s (+%.2f%%), the targets' full size %s; max RSS %s; hauler and mindthegap: not served by the Go module proxy (403), not compared",
			mib(carried[ours]), mib(carried[ref]), mib(newBytes), 100*over, mib(fullBytes), mib(res[ours].maxRSS()))})
	loadWall := bench.Median(loadWalls)
	loadRate := float64(written) / loadWall.Seconds()
	e.rep.add(row{what: fmt.Sprintf("bundle load's write rate (%s written)", mib(written)),
		ours: "image-serve bundle load", oursVal: fmt.Sprintf("%.1f MiB/s (%s)", loadRate/(1<<20), dur(loadWall)),
		ref: fmt.Sprintf("write + fsync of a %s file", mib(diskBytes)), refVal: fmt.Sprintf("%.1f MiB/s", diskRate/(1<<20)),
		ratio: fmt.Sprintf("%.2f× the disk's rate", loadRate/diskRate), target: "≥ 0.7× the disk's rate", met: met(loadRate/diskRate, 0.7, true),
		notes: "the load's wall time holds its checks (descriptor, needed blobs, each blob staged and hashed once as the bundle is read) and its publish (renames, manifests, tags)"})
	return nil
}

// diskWriteRate writes n bytes to a file of the work directory and
// fsyncs it: the disk's sequential write rate, in bytes per second.
func (e *env) diskWriteRate(n int64) (float64, error) {
	path := e.path("disk-rate")
	defer os.Remove(path)
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8) // not zeros: no file system shortcut
	}
	start := time.Now()
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), left)]); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
