package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// serviceNames are the undercloud's service images (TripleO's names).
var serviceNames = []string{
	"nova-api", "nova-compute", "nova-conductor", "nova-scheduler", "nova-novncproxy", "nova-libvirt",
	"neutron-server", "neutron-dhcp-agent", "neutron-l3-agent", "neutron-openvswitch-agent",
	"keystone", "glance-api", "cinder-api", "cinder-scheduler", "cinder-volume",
	"heat-api", "heat-engine", "swift-proxy-server", "ironic-api", "ironic-conductor",
	"placement-api", "horizon", "mariadb", "rabbitmq", "memcached", "haproxy", "ovn-controller", "iscsid",
}

const (
	namespace = "tripleomaster"
	tag       = "current-tripleo"
	indexName = "openstack-base" // the multi-arch index
)

// undercloud is the generated set and where it is.
type undercloud struct {
	layout   *bench.Images
	names    []string // oci ref names, "openstack-<service>", the index last
	registry string   // host:port of the distribution registry holding it
	reg      *daemon
}

func (u *undercloud) repo(name string) string { return namespace + "/" + name }

func (u *undercloud) docker(name string) string {
	return "docker://" + u.registry + "/" + u.repo(name) + ":" + tag
}

// ensureUndercloud generates the set as an OCI layout, starts the
// distribution registry and pushes every image into it with skopeo.
func (e *env) ensureUndercloud() (*undercloud, error) {
	if e.uc != nil {
		return e.uc, nil
	}
	sz := e.sz
	base := bench.LayerSpec{Seed: 1, Index: 0, Size: sz.baseLayer}
	middle := bench.LayerSpec{Seed: 1, Index: 1, Size: sz.middleLayer}
	var specs []bench.ImageSpec
	u := &undercloud{}
	for i, s := range serviceNames[:sz.services] {
		name := "openstack-" + s
		u.names = append(u.names, name)
		specs = append(specs, bench.ImageSpec{Ref: name, Platforms: []bench.PlatformImage{{
			Arch: "amd64", Layers: []bench.LayerSpec{base, middle, {Seed: 2, Index: uint64(i), Size: sz.topLayer}},
		}}})
	}
	u.names = append(u.names, indexName)
	specs = append(specs, bench.ImageSpec{Ref: indexName, Platforms: []bench.PlatformImage{
		{Arch: "amd64", Layers: []bench.LayerSpec{base, middle}},
		{Arch: "arm64", Layers: []bench.LayerSpec{{Seed: 3, Index: 0, Size: sz.armBase}, {Seed: 3, Index: 1, Size: sz.middleLayer}}},
	}})
	start := time.Now()
	l, err := bench.WriteImages(e.path("undercloud-oci"), specs)
	if err != nil {
		return nil, err
	}
	u.layout = l
	logf("generated %d images, %s of distinct blobs, in %v", len(specs), mib(l.UniqueBytes), time.Since(start).Round(time.Millisecond))

	if u.reg, u.registry, err = e.ensureRegistry(); err != nil {
		return nil, err
	}
	start = time.Now()
	for _, name := range u.names {
		args := []string{"--insecure-policy", "copy", "--quiet", "--all", "--dest-tls-verify=false", l.Source(name), u.docker(name)}
		e.rep.cmd("push the set (set-up, untimed)", shellLine(e.skopeo, args))
		if _, err := command(e.skopeo, args...); err != nil {
			return nil, err
		}
	}
	logf("pushed %d images to the registry at %s in %v", len(u.names), u.registry, time.Since(start).Round(time.Millisecond))
	e.uc = u
	return u, nil
}

// exports is the cold export of the set, image-serve against skopeo, and
// the re-export of the unchanged set.
func (e *env) exports() error {
	u, err := e.ensureUndercloud()
	if err != nil {
		return err
	}
	list := e.path("images.list")
	var lines []string
	for _, n := range u.names {
		lines = append(lines, u.docker(n))
	}
	if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	syncYAML := e.path("sync.yaml")
	var y strings.Builder
	fmt.Fprintf(&y, "%s:\n  tls-verify: false\n  images:\n", u.registry)
	for _, n := range u.names {
		fmt.Fprintf(&y, "    %s: [%s]\n", u.repo(n), tag)
	}
	if err := os.WriteFile(syncYAML, []byte(y.String()), 0o644); err != nil {
		return err
	}
	rounds := e.sz.coldRounds
	dest := func(kind string, r int) string { return e.path("cold", fmt.Sprintf("%s-%d", kind, r)) }
	const (
		perTag   = "image-serve export, one per tag"
		fromFile = "image-serve export --from-file"
		ociDest  = "skopeo copy --all → one oci:"
		dirDest  = "skopeo copy --all → dir: each"
		syncDest = "skopeo sync → dir:"
		fromNo   = "image-serve export --from-file, no flushes"
		plain    = "plainexport (2 images × 4 streams, no fsync)"
	)
	plainBin, err := e.plainExporter()
	if err != nil {
		return err
	}
	remove := func(kind string) func(int) error {
		return func(r int) error { return os.RemoveAll(dest(kind, r)) }
	}
	mkdir := func(kind string) func(int) error {
		return func(r int) error { return os.MkdirAll(dest(kind, r), 0o755) }
	}
	cmdRun := func(section, name string, args ...string) func() (run, error) {
		e.rep.cmd(section, shellLine(name, args))
		return func() (run, error) { return command(name, args...) }
	}
	contenders := []contender{
		{name: perTag, run: func(r int) (run, error) {
			var fns []func() (run, error)
			for _, n := range u.names {
				fns = append(fns, cmdRun("cold export, "+perTag+" (×"+fmt.Sprint(len(u.names))+")", e.bin,
					"--root", dest("pertag", r), "--quiet", "export", "--src-tls-verify=false", u.docker(n)))
			}
			return sequence(fns)
		}, cleanup: remove("pertag")},
		{name: fromFile, run: func(r int) (run, error) {
			return cmdRun("cold export, "+fromFile, e.bin, "--root", dest("fromfile", r), "--quiet", "export",
				"--src-tls-verify=false", "--from-file", list)()
		}, cleanup: func(r int) error {
			if r == rounds-1 {
				e.coldTree = dest("fromfile", r) // kept: re-export, serving
				return nil
			}
			return os.RemoveAll(dest("fromfile", r))
		}},
		{name: ociDest, setup: mkdir("oci"), run: func(r int) (run, error) {
			var fns []func() (run, error)
			for _, n := range u.names {
				fns = append(fns, cmdRun("cold export, "+ociDest+" (×"+fmt.Sprint(len(u.names))+")", e.skopeo,
					"--insecure-policy", "copy", "--quiet", "--all", "--src-tls-verify=false", u.docker(n), "oci:"+dest("oci", r)+":"+n))
			}
			return sequence(fns)
		}, cleanup: remove("oci")},
		{name: dirDest, setup: mkdir("dir"), run: func(r int) (run, error) {
			var fns []func() (run, error)
			for _, n := range u.names {
				fns = append(fns, cmdRun("cold export, "+dirDest+" (×"+fmt.Sprint(len(u.names))+")", e.skopeo,
					"--insecure-policy", "copy", "--quiet", "--all", "--src-tls-verify=false", u.docker(n), "dir:"+filepath.Join(dest("dir", r), n)))
			}
			return sequence(fns)
		}, cleanup: remove("dir"), rounds: 1},
		{name: syncDest, setup: mkdir("sync"), run: func(r int) (run, error) {
			return cmdRun("cold export, "+syncDest, e.skopeo, "--insecure-policy", "sync", "--all", "--src", "yaml", "--dest", "dir",
				syncYAML, dest("sync", r))()
		}, cleanup: remove("sync"), rounds: 1},
	}
	contenders = append(contenders, contender{name: plain, run: e.withSourceCPU(func(r int) (run, error) {
		return cmdRun("cold export, "+plain, plainBin, list, dest("plain", r))()
	}), cleanup: remove("plain")})
	if _, _, ok := e.noSync(e.bin, nil); ok {
		contenders = append(contenders, contender{name: fromNo, run: e.withSourceCPU(func(r int) (run, error) {
			name, args, _ := e.noSync(e.bin, []string{"--root", dest("nosync", r), "--quiet", "export", "--src-tls-verify=false", "--from-file", list})
			return cmdRun("cold export, "+fromNo+" (strace answers "+noSyncCalls+" with 0)", name, args...)()
		}), cleanup: remove("nosync")})
	}
	for i, c := range contenders {
		if c.name == fromFile {
			contenders[i].run = e.withSourceCPU(c.run)
		}
	}
	logf("cold export of %d images (%s distinct), %d rounds", len(u.names), mib(u.layout.UniqueBytes), rounds)
	res, err := rotate(rounds, contenders)
	if err != nil {
		return err
	}
	// The kept tree must be whole.
	if _, err := command(e.bin, "--root", e.coldTree, "verify"); err != nil {
		return fmt.Errorf("the cold-exported tree does not verify: %w", err)
	}
	e.rep.cmd("check (untimed)", shellLine(e.bin, []string{"--root", e.coldTree, "verify"}))
	ref := res[ociDest].median()
	what := fmt.Sprintf("cold export of %d images (%d services + 1 two-arch index; %s distinct, %s base layer) from the distribution registry",
		len(u.names), len(u.names)-1, mib(u.layout.UniqueBytes), mib(e.sz.baseLayer))
	for _, ours := range []string{fromFile, perTag} {
		sp := float64(ref) / float64(res[ours].median())
		e.rep.add(row{what: what, ours: ours, oursVal: dur(res[ours].median()), ref: ociDest, refVal: dur(ref),
			ratio: fmt.Sprintf("%.2f× faster", sp), target: "≥ 3× faster", met: met(sp, 3, true),
			notes: "max RSS " + mib(res[ours].maxRSS())})
	}
	for _, other := range []string{dirDest, syncDest} {
		sp := float64(res[other].median()) / float64(res[fromFile].median())
		e.rep.add(row{what: what, ours: fromFile, oursVal: dur(res[fromFile].median()), ref: other, refVal: dur(res[other].median()),
			ratio: fmt.Sprintf("%.2f× faster", sp), notes: "no target; one round (a full copy per image takes about a minute)"})
	}

	if err := e.exportLimits(u, res, what, fromFile, plain, fromNo); err != nil {
		return err
	}

	// Re-export of the unchanged set into the tree that has it.
	args := []string{"--root", e.coldTree, "--quiet", "export", "--src-tls-verify=false", "--from-file", list}
	e.rep.cmd("re-export of the unchanged set", shellLine(e.bin, args))
	re, err := rotate(e.sz.fastRounds, []contender{{name: "re-export --from-file", run: func(int) (run, error) { return command(e.bin, args...) }}})
	if err != nil {
		return err
	}
	var perTagRe []contender
	perTagRe = append(perTagRe, contender{name: "re-export, one per tag", run: func(int) (run, error) {
		var fns []func() (run, error)
		for _, n := range u.names {
			a := []string{"--root", e.coldTree, "--quiet", "export", "--src-tls-verify=false", u.docker(n)}
			e.rep.cmd("re-export, one per tag (×"+fmt.Sprint(len(u.names))+")", shellLine(e.bin, a))
			fns = append(fns, func() (run, error) { return command(e.bin, a...) })
		}
		return sequence(fns)
	}})
	re2, err := rotate(e.sz.fastRounds, perTagRe)
	if err != nil {
		return err
	}
	cold := res[fromFile].median()
	frac := float64(re["re-export --from-file"].median()) / float64(cold)
	e.rep.add(row{what: "re-export of the unchanged set (every blob present)", ours: "re-export --from-file",
		oursVal: dur(re["re-export --from-file"].median()), ref: "cold " + fromFile, refVal: dur(cold),
		ratio: fmt.Sprintf("%.1f%% of cold", 100*frac), target: "≤ 5% of cold", met: met(frac, 0.05, false)})
	cold2 := res[perTag].median()
	frac2 := float64(re2["re-export, one per tag"].median()) / float64(cold2)
	e.rep.add(row{what: "re-export of the unchanged set, one process per tag", ours: "re-export, one per tag",
		oursVal: dur(re2["re-export, one per tag"].median()), ref: "cold " + perTag, refVal: dur(cold2),
		ratio: fmt.Sprintf("%.1f%% of cold", 100*frac2), target: "≤ 5% of cold", met: met(frac2, 0.05, false)})
	return nil
}

// peakRSS exports one huge layer and records the process's peak RSS.
func (e *env) peakRSS() error {
	l, err := bench.WriteLayout(e.path("huge-oci"), bench.Image{Layers: 1, LayerSize: e.sz.hugeLayer, Seed: 10})
	if err != nil {
		return err
	}
	defer os.RemoveAll(l.Dir)
	tree := e.path("huge-tree")
	defer os.RemoveAll(tree)
	args := []string{"--root", tree, "--quiet", "export", l.Source(), "bench/huge:v1"}
	e.rep.cmd("peak RSS", shellLine(e.bin, args)+" (peak RSS: getrusage ru_maxrss of the child)")
	r, err := command(e.bin, args...)
	if err != nil {
		return err
	}
	notes := fmt.Sprintf("export took %s", dur(r.wall))
	if e.bigRSS > 0 {
		notes += fmt.Sprintf("; %s layer: %s", mib(e.sz.bigLayer), mib(e.bigRSS))
	}
	e.rep.add(row{what: fmt.Sprintf("peak RSS exporting one %s layer", mib(e.sz.hugeLayer)), ours: "image-serve export",
		oursVal: mib(r.maxRSS), ref: "budget", refVal: "64.0 MiB",
		ratio: fmt.Sprintf("%.2f of budget", float64(r.maxRSS)/(64<<20)), target: "≤ 64 MiB", met: met(float64(r.maxRSS), 64<<20, false), notes: notes})
	return nil
}
