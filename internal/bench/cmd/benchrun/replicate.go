package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// replicas is `image-serve replicate DEST` of the set's tree to a fresh
// root on this machine, and its rerun with nothing to do, against what a
// user without image-serve runs to keep a copy of a directory tree:
// `rsync -aH` (-H because the tree hard-links a blob shared by several
// repositories: without it the copy holds it once per repository). The
// two are not the same work: replicate goes through inventory and a delta
// bundle that the far side loads, writing every file synced and
// publishing all tags or none; rsync copies file by file in name order,
// nothing synced, so the copy is only whole once it ends. ssh:// is not
// measured: the rows compare the copy, not a link.
func (e *env) replicas() error {
	rsync, err := lookPath("rsync")
	if err != nil {
		return fmt.Errorf("%w: run make bench (it installs rsync)", err)
	}
	u, err := e.ensureUndercloud()
	if err != nil {
		return err
	}
	src := e.coldTree
	if src == "" {
		// -only replicate: the set as the cold export leaves it, exported
		// from its layout (the same blobs and manifests).
		src = e.path("replicate-tree")
		var lines []string
		for _, n := range u.names {
			lines = append(lines, u.layout.Source(n)+" "+u.repo(n)+":"+tag)
		}
		list := e.path("replicate.list")
		if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return err
		}
		args := []string{"--root", src, "--quiet", "export", "--from-file", list}
		e.rep.cmd("replicate (set-up, untimed): the tree", shellLine(e.bin, args))
		if _, err := command(e.bin, args...); err != nil {
			return err
		}
	}
	srcBytes, srcFiles, err := treeBytes(src)
	if err != nil {
		return err
	}
	tags, err := command(e.bin, "--root", src, "list")
	if err != nil {
		return err
	}
	dest := func(kind string, r int) string { return e.path("replicas", fmt.Sprintf("%s-%d", kind, r)) }
	replicateArgs := func(r int) []string {
		return []string{"--root", src, "--quiet", "replicate", dest("ours", r)}
	}
	rsyncArgs := func(r int) []string { return []string{"-aH", src + "/", dest("rsync", r) + "/"} }
	e.rep.cmd("replicate, cold (a fresh empty directory) and rerun (nothing to do)", shellLine(e.bin, replicateArgs(0)))
	e.rep.cmd("replicate, reference, cold and rerun", shellLine(rsync, rsyncArgs(0)))
	timeBin, err := lookPath("/usr/bin/time")
	if err == nil {
		e.rep.cmd("replicate, peak RSS of each command and the processes it waits for",
			shellLine(timeBin, []string{"-f", "%M %U %S", "-o", "FILE", "COMMAND..."})+" (GNU time: replicate's far-side image-serve processes and rsync's forked receiver included)")
	} else {
		timeBin = ""
		e.rep.note("replicate: no GNU time (/usr/bin/time): peak RSS is getrusage's, at least benchrun's own RSS whatever the command's")
	}
	probed := func(tag, name string, args []string) (run, error) {
		p := newRSSProbe(timeBin, e.path("replicate-rss-"+tag), exec.Command(name, args...))
		r, err := command(p.cmd.Path, p.cmd.Args[1:]...)
		var cpu time.Duration
		return r, p.peak(&r.maxRSS, &cpu, err)
	}
	const (
		ours      = "image-serve replicate, cold"
		ref       = "rsync -aH, cold"
		oursAgain = "image-serve replicate, rerun"
		refAgain  = "rsync -aH, rerun"
	)
	mkdir := func(kind string) func(int) error {
		return func(r int) error { return os.MkdirAll(dest(kind, r), 0o755) }
	}
	written := map[string]int64{}
	// Each cold round's copy is measured and removed, but for the last
	// round's: the reruns run against it.
	keep := func(kind, name string) func(int) error {
		return func(r int) error {
			n, _, err := treeBytes(dest(kind, r))
			if err != nil {
				return err
			}
			written[name] = n
			if r == e.sz.coldRounds-1 {
				return nil
			}
			return os.RemoveAll(dest(kind, r))
		}
	}
	res, err := rotate(e.sz.coldRounds, []contender{
		{name: ours, setup: mkdir("ours"), run: func(r int) (run, error) { return probed("ours", e.bin, replicateArgs(r)) }, cleanup: keep("ours", ours)},
		{name: ref, setup: mkdir("rsync"), run: func(r int) (run, error) { return probed("rsync", rsync, rsyncArgs(r)) }, cleanup: keep("rsync", ref)},
	})
	if err != nil {
		return err
	}
	last := e.sz.coldRounds - 1
	// Untimed: both copies hold the tree's tags, whole.
	for _, kind := range []string{"ours", "rsync"} {
		for _, check := range [][]string{{"verify"}, {"list"}} {
			args := append([]string{"--root", dest(kind, last), "--quiet"}, check...)
			e.rep.cmd("replicate, check of each copy (untimed)", shellLine(e.bin, args))
			got, err := command(e.bin, args...)
			if err != nil {
				return err
			}
			if check[0] == "list" && !bytes.Equal(got.stdout, tags.stdout) {
				return fmt.Errorf("%s lists other tags than the tree it copies:\n%s", dest(kind, last), got.stdout)
			}
		}
	}
	syscall.Sync()
	again, err := rotate(e.sz.fastRounds, []contender{
		{name: oursAgain, run: func(int) (run, error) { return probed("ours", e.bin, replicateArgs(last)) }},
		{name: refAgain, run: func(int) (run, error) { return probed("rsync", rsync, rsyncArgs(last)) }},
	})
	if err != nil {
		return err
	}
	// Untimed: what a rerun sends, in replicate's own words.
	summary, err := exec.Command(e.bin, "--root", src, "replicate", dest("ours", last)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("replicate rerun: %v\n%s", err, summary)
	}
	lines := strings.Split(strings.TrimSpace(string(summary)), "\n")
	rerunSaid := lines[len(lines)-1]

	nTags := len(strings.Split(strings.TrimSpace(string(tags.stdout)), "\n"))
	what := fmt.Sprintf("replicate the set's tree (%d tags, %s in %d files, each blob once) to an empty root on this machine", nTags, mib(srcBytes), srcFiles)
	sp := float64(res[ref].median()) / float64(res[ours].median())
	e.rep.add(row{what: what, ours: ours, oursVal: dur(res[ours].median()), ref: ref, refVal: dur(res[ref].median()),
		ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: fmt.Sprintf("no target; max RSS %s, rsync %s; written: ours %s, rsync %s; replicate syncs every file and publishes all tags or none, rsync copies file by file in name order and syncs nothing (the copy is whole only once it ends); both copies verify and list the same tags",
			mib(res[ours].maxRSS()), mib(res[ref].maxRSS()), mib(written[ours]), mib(written[ref]))})
	sp = float64(again[refAgain].median()) / float64(again[oursAgain].median())
	e.rep.add(row{what: "replicate again, the replica up to date (nothing to do)", ours: oursAgain, oursVal: dur(again[oursAgain].median()),
		ref: refAgain, refVal: dur(again[refAgain].median()), ratio: fmt.Sprintf("%.2f× faster", sp),
		notes: fmt.Sprintf("no target; max RSS %s, rsync %s; replicate asks the far side for its inventory and tags and sends the tags' manifests and configs (no layer), which it loads: %q",
			mib(again[oursAgain].maxRSS()), mib(again[refAgain].maxRSS()), rerunSaid)})
	return nil
}

// treeBytes is the size of the regular files under dir, each file (inode)
// once however many names it has, and their count.
func treeBytes(dir string) (n int64, files int, err error) {
	seen := map[uint64]bool{}
	err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		n += fi.Size()
		files++
		return nil
	})
	return n, files, err
}
