package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// saves writes the set from a tree to docker-archive: image-serve save,
// all of it into one archive, against skopeo copy of each image from the
// set's OCI layout to a docker-archive of its own (skopeo writes one image
// per docker-archive file, skopeo#556), the same images and platform
// (linux/amd64 of the index).
func (e *env) saves() error {
	u, err := e.ensureUndercloud()
	if err != nil {
		return err
	}
	tree := e.coldTree
	if tree == "" {
		// -only save: the tree the cold export would have kept.
		tree = e.path("save-tree")
		var lines []string
		for _, n := range u.names {
			lines = append(lines, u.docker(n))
		}
		list := e.path("save.list")
		if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		args := []string{"--root", tree, "--quiet", "export", "--src-tls-verify=false", "--from-file", list}
		e.rep.cmd("save (set-up, untimed): the tree", shellLine(e.bin, args))
		if _, err := command(e.bin, args...); err != nil {
			return err
		}
	}
	dest := func(kind string, r int) string { return e.path("save", fmt.Sprintf("%s-%d", kind, r)) }
	const (
		ours = "image-serve save → one docker-archive"
		ref  = "skopeo copy oci: → docker-archive: each"
	)
	saveArgs := func(r int) []string {
		args := []string{"--root", tree, "--quiet", "save", "-o", filepath.Join(dest("ours", r), "set.tar")}
		for _, n := range u.names {
			args = append(args, u.repo(n)+":"+tag)
		}
		return args
	}
	e.rep.cmd("save, "+ours, shellLine(e.bin, saveArgs(0)))
	skopeoArgs := func(r int, n string) []string {
		return []string{"--insecure-policy", "copy", "--quiet", "--override-os", "linux", "--override-arch", "amd64",
			u.layout.Source(n), "docker-archive:" + filepath.Join(dest("skopeo", r), n+".tar") + ":" + u.repo(n) + ":" + tag}
	}
	e.rep.cmd("save, "+ref+" (×"+fmt.Sprint(len(u.names))+")", shellLine(e.skopeo, skopeoArgs(0, u.names[0])))
	mkdir := func(kind string) func(int) error {
		return func(r int) error { return os.MkdirAll(dest(kind, r), 0o755) }
	}
	sizes := map[string]int64{}
	measure := func(kind, name string) func(int) error {
		return func(r int) error {
			n, err := dirBytes(dest(kind, r))
			if err != nil {
				return err
			}
			sizes[name] = n
			return os.RemoveAll(dest(kind, r))
		}
	}
	res, err := rotate(e.sz.coldRounds, []contender{
		{name: ours, setup: mkdir("ours"), run: func(r int) (run, error) { return command(e.bin, saveArgs(r)...) }, cleanup: measure("ours", ours)},
		{name: ref, setup: mkdir("skopeo"), run: func(r int) (run, error) {
			var fns []func() (run, error)
			for _, n := range u.names {
				fns = append(fns, func() (run, error) { return command(e.skopeo, skopeoArgs(r, n)...) })
			}
			return sequence(fns)
		}, cleanup: measure("skopeo", ref)},
	})
	if err != nil {
		return err
	}
	sp := float64(res[ref].median()) / float64(res[ours].median())
	e.rep.add(row{what: fmt.Sprintf("save of the %d images to docker-archive (index: linux/amd64)", len(u.names)),
		ours: ours, oursVal: dur(res[ours].median()), ref: ref, refVal: dur(res[ref].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: fmt.Sprintf("written: ours %s (each layer once, as the tree stores it), skopeo's %s (a base layer per file, uncompressed); max RSS %s",
			mib(sizes[ours]), mib(sizes[ref]), mib(res[ours].maxRSS()))})
	return nil
}

// dirBytes is the size of the regular files under dir.
func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}
