package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// gcTree builds a tree of gcRepos repositories × gcTags tags sharing a
// base layer (each repository also holds two untagged manifests with a
// blob of their own, gc's garbage) and times gc, verify and delete on it.
func (e *env) gcTree() error {
	sz := e.sz
	base := bench.LayerSpec{Seed: 50, Index: 0, Size: 4096}
	var specs []bench.ImageSpec
	for i := range sz.gcTags {
		specs = append(specs, bench.ImageSpec{Ref: fmt.Sprint("v", i), Platforms: []bench.PlatformImage{{
			Arch: "amd64", Layers: []bench.LayerSpec{base, {Seed: 51, Index: uint64(i), Size: 512}},
		}}})
	}
	garbage := []string{"garbage0", "garbage1"}
	for i, g := range garbage {
		specs = append(specs, bench.ImageSpec{Ref: g, Platforms: []bench.PlatformImage{{
			Arch: "amd64", Layers: []bench.LayerSpec{{Seed: 52, Index: uint64(i), Size: 256}},
		}}})
	}
	l, err := bench.WriteImages(e.path("gc-oci"), specs)
	if err != nil {
		return err
	}
	tree := e.path("gc-tree")
	const tmpl = "bench/r0000"
	var lines []string
	for _, s := range specs {
		lines = append(lines, l.Source(s.Ref)+" "+tmpl+":"+s.Ref)
	}
	list := e.path("gc.list")
	if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	start := time.Now()
	gen := []string{"--root", tree, "--quiet", "export", "--from-file", list}
	e.rep.cmd("gc tree (set-up): the template repository", shellLine(e.bin, gen))
	if _, err := command(e.bin, gen...); err != nil {
		return err
	}
	untag := []string{"--root", tree, "--quiet", "delete", "--no-prune", tmpl + ":" + garbage[0], tmpl + ":" + garbage[1]}
	e.rep.cmd("gc tree (set-up): untag the garbage", shellLine(e.bin, untag))
	if _, err := command(e.bin, untag...); err != nil {
		return err
	}
	repos, err := replicate(tree, tmpl, sz.gcRepos)
	if err != nil {
		return err
	}
	syscall.Sync()
	e.rep.cmd("gc tree (set-up)", fmt.Sprintf("in benchrun: v2/%s copied %d times (blobs hard-linked, tags/list renamed, _catalog rewritten)", tmpl, sz.gcRepos-1))
	logf("generated %d repositories × %d tags in %v", sz.gcRepos, sz.gcTags, time.Since(start).Round(time.Millisecond))
	manifests := sz.gcRepos * sz.gcTags

	// The garbage's files, hard-linked aside so that every real gc round
	// has the same 2 × gcRepos manifests to delete.
	var garbageFiles []string // relative to a repository
	for _, g := range garbage {
		for _, b := range l.Blobs[g] {
			if b.MediaType == bench.MediaTypeManifest {
				dir := filepath.Join("manifests", string(b.Digest))
				entries, err := os.ReadDir(filepath.Join(tree, "v2", tmpl, dir))
				if err != nil {
					return err
				}
				for _, en := range entries {
					garbageFiles = append(garbageFiles, filepath.Join(dir, en.Name()))
				}
			} else {
				garbageFiles = append(garbageFiles, filepath.Join("blobs", string(b.Digest)))
			}
		}
	}
	stash := e.path("gc-stash")
	if err := linkAll(repos, garbageFiles, filepath.Join(tree, "v2"), stash); err != nil {
		return err
	}
	restore := func(int) error { return linkAll(repos, garbageFiles, stash, filepath.Join(tree, "v2")) }

	verify := []string{"--root", tree, "verify"}
	dry := []string{"--root", tree, "gc", "--dry-run", "--grace", "0s", "--json"}
	real := []string{"--root", tree, "gc", "--grace", "0s", "--json"}
	e.rep.cmd("verify", shellLine(e.bin, verify))
	e.rep.cmd("gc --dry-run", shellLine(e.bin, dry))
	e.rep.cmd("gc", shellLine(e.bin, real))
	e.rep.cmd("verify, gc --dry-run, gc", "the garbage is re-linked from a stash before each round, untimed")
	var dryOut, realOut, steadyOut []byte
	res, err := rotate(sz.fastRounds, []contender{
		{name: "verify", setup: restore, run: func(int) (run, error) { return command(e.bin, verify...) }},
		{name: "gc --dry-run", setup: restore, run: func(int) (run, error) {
			r, err := command(e.bin, dry...)
			dryOut = r.stdout
			return r, err
		}},
		{name: "gc", setup: restore, run: func(int) (run, error) {
			r, err := command(e.bin, real...)
			realOut = r.stdout
			return r, err
		}},
	})
	if err != nil {
		return err
	}
	steady, err := rotate(sz.fastRounds, []contender{{name: "gc, nothing to delete", run: func(int) (run, error) {
		r, err := command(e.bin, real...)
		steadyOut = r.stdout
		return r, err
	}}})
	if err != nil {
		return err
	}
	shape := fmt.Sprintf("%d repositories × %d tags (%d manifests)", sz.gcRepos, sz.gcTags, manifests)
	for _, c := range []struct {
		name, what string
		s          samples
		out        []byte
	}{
		{"gc --dry-run", "gc --dry-run, " + shape + ", 2 untagged manifests per repository", res["gc --dry-run"], dryOut},
		{"gc", "gc, " + shape + ", deleting 2 untagged manifests and their blobs per repository", res["gc"], realOut},
		{"gc", "gc, " + shape + ", nothing to delete", steady["gc, nothing to delete"], steadyOut},
	} {
		d := c.s.median()
		e.rep.add(row{what: c.what, ours: c.name, oursVal: dur(d), ref: "target", refVal: "2 s",
			ratio: fmt.Sprintf("%.2f of 2 s", d.Seconds()/2), target: "≤ 2 s", met: met(d.Seconds(), 2, false),
			notes: "report: " + jsonNumbers(c.out)})
	}
	e.rep.add(row{what: "verify, " + shape, ours: "verify", oursVal: dur(res["verify"].median()), ratio: "", notes: "re-hashes every blob and manifest; no target"})

	// Delete one tag, each round another repository's, against the
	// binary's start-up (image-serve --version) as the floor.
	tagArgs := func(r int) []string {
		return []string{"--root", tree, "--quiet", "delete", fmt.Sprintf("bench/r%04d:v%d", 1+r, r%sz.gcTags)}
	}
	e.rep.cmd("delete one tag", shellLine(e.bin, tagArgs(0))+" (each round another repository)")
	e.rep.cmd("process start-up floor", shellLine(e.bin, []string{"--version"}))
	del, err := rotate(2*sz.fastRounds+1, []contender{
		{name: "delete REPO:TAG", run: func(r int) (run, error) { return command(e.bin, tagArgs(r)...) }},
		{name: "image-serve --version", run: func(int) (run, error) { return command(e.bin, "--version") }},
	})
	if err != nil {
		return err
	}
	d := del["delete REPO:TAG"].median()
	e.rep.add(row{what: "delete one tag (and prune what only it reached) in that tree", ours: "delete REPO:TAG", oursVal: dur(d),
		ref: "image-serve --version (start-up)", refVal: dur(del["image-serve --version"].median()),
		ratio: fmt.Sprintf("%.2f of 20 ms", d.Seconds()/0.020), target: "≤ 20 ms", met: met(d.Seconds(), 0.020, false)})
	return nil
}

// jsonNumbers lists the top-level numbers of a JSON object, "key=n".
func jsonNumbers(b []byte) string {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return "?"
	}
	var out []string
	for k, v := range m {
		if n, ok := v.(float64); ok && n != 0 {
			out = append(out, fmt.Sprintf("%s=%v", k, n))
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// linkAll hard-links every rel of every repository from src to dst
// (both holding repository directories), making directories as needed.
func linkAll(repos, rels []string, src, dst string) error {
	for _, repo := range repos {
		for _, rel := range rels {
			to := filepath.Join(dst, repo, rel)
			if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
				return err
			}
			if err := os.Link(filepath.Join(src, repo, rel), to); err != nil && !os.IsExist(err) {
				return err
			}
		}
	}
	return nil
}

// replicate copies repository tmpl of tree n-1 times as bench/rNNNN
// (bench.ReplicateRepo), then rewrites _catalog. It returns every
// repository's name.
func replicate(tree, tmpl string, n int) ([]string, error) {
	repos := []string{tmpl}
	for i := 1; i < n; i++ {
		repos = append(repos, fmt.Sprintf("bench/r%04d", i))
	}
	if err := bench.ReplicateRepo(filepath.Join(tree, "v2"), tmpl, repos[1:]); err != nil {
		return nil, err
	}
	catalog, err := json.Marshal(map[string][]string{"repositories": repos})
	if err != nil {
		return nil, err
	}
	return repos, os.WriteFile(filepath.Join(tree, "v2", "_catalog"), catalog, 0o644)
}
