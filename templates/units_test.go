package templates

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/tree"
)

// unitKeys parses a systemd unit file into "Section.Key" -> value.
func unitKeys(t *testing.T, name string) map[string]string {
	t.Helper()
	b := unitFile(t, name)
	keys := map[string]string{}
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", name, i+1, line)
			}
			keys[section+"."+k] = v
		}
	}
	return keys
}

// TestGCUnits: the service runs "image-serve gc --quiet" once, the timer
// starts it daily at a random time and catches up missed runs.
func TestGCUnits(t *testing.T) {
	svc := unitKeys(t, "image-serve-gc.service")
	timer := unitKeys(t, "image-serve-gc.timer")
	want := map[string]map[string]string{
		"service": {"Service.Type": "oneshot", "Service.Environment": "IMAGE_SERVE_ROOT=/var/lib/image-serve"},
		"timer":   {"Timer.OnCalendar": "daily", "Timer.RandomizedDelaySec": "1h", "Timer.Persistent": "true", "Install.WantedBy": "timers.target"},
	}
	for kind, keys := range map[string]map[string]string{"service": svc, "timer": timer} {
		for k, v := range want[kind] {
			if keys[k] != v {
				t.Errorf("%s: %s=%q, want %q", kind, k, keys[k], v)
			}
		}
	}
	cmd := strings.Fields(svc["Service.ExecStart"])
	if len(cmd) != 3 || !filepath.IsAbs(cmd[0]) || filepath.Base(cmd[0]) != "image-serve" || cmd[1] != "gc" || cmd[2] != "--quiet" {
		t.Errorf("service: ExecStart=%q, want /…/image-serve gc --quiet", svc["Service.ExecStart"])
	}
}

// unitFile is the content of unit file name: the watch service or a
// scheduling file.
func unitFile(t *testing.T, name string) []byte {
	t.Helper()
	if name == WatchUnitName {
		return WatchUnit()
	}
	b, err := GCUnit(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWatchUnit: the service runs "image-serve watch" for the default
// root, restarts it when it fails, counts the exit statuses of SIGINT and
// SIGTERM as a clean stop, and starts at boot.
func TestWatchUnit(t *testing.T) {
	keys := unitKeys(t, WatchUnitName)
	for k, v := range map[string]string{
		"Service.Environment":       "IMAGE_SERVE_ROOT=/var/lib/image-serve",
		"Service.Restart":           "on-failure",
		"Service.SuccessExitStatus": "130 143",
		"Install.WantedBy":          "multi-user.target",
		"Unit.RequiresMountsFor":    "/var/lib/image-serve",
	} {
		if keys[k] != v {
			t.Errorf("%s=%q, want %q", k, keys[k], v)
		}
	}
	cmd := strings.Fields(keys["Service.ExecStart"])
	if len(cmd) != 2 || !filepath.IsAbs(cmd[0]) || filepath.Base(cmd[0]) != "image-serve" || cmd[1] != "watch" {
		t.Errorf("ExecStart=%q, want /…/image-serve watch", keys["Service.ExecStart"])
	}
}

// TestGCCron: one cron.d line, with a user field, runs "image-serve gc
// --quiet" daily.
func TestGCCron(t *testing.T) {
	b, err := GCUnit("image-serve-gc.cron")
	if err != nil {
		t.Fatal(err)
	}
	var jobs [][]string
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && !strings.ContainsAny(k, " \t") {
			env[k] = v
			continue
		}
		jobs = append(jobs, strings.Fields(line))
	}
	if len(jobs) != 1 {
		t.Fatalf("cron: %d job lines, want 1", len(jobs))
	}
	f := jobs[0]
	if len(f) < 7 {
		t.Fatalf("cron: %q: want minute hour dom month dow user command", f)
	}
	if f[2] != "*" || f[3] != "*" || f[4] != "*" || strings.ContainsAny(f[0]+f[1], "*/,-") {
		t.Errorf("cron: schedule %q is not once a day", f[:5])
	}
	if f[5] != "root" {
		t.Errorf("cron: user %q, want root", f[5])
	}
	if cmd := strings.Join(f[6:], " "); cmd != "image-serve gc --quiet" {
		t.Errorf("cron: command %q, want image-serve gc --quiet", cmd)
	}
	if env["IMAGE_SERVE_ROOT"] == "" || !strings.Contains(env["PATH"], "/usr/local/bin") {
		t.Errorf("cron: environment %v lacks IMAGE_SERVE_ROOT or a PATH with /usr/local/bin", env)
	}
}

// lookSystemdAnalyze finds systemd's unit checker; make test-deps
// installs it (Debian's systemd package).
func lookSystemdAnalyze(t *testing.T) string {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is not installed (make test-deps installs the systemd package)")
	}
	return analyze
}

// writeFakeBinary writes an executable for ExecStart to name: the checker
// wants the command to exist.
func writeFakeBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "image-serve")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestGCUnitsSystemdAnalyze runs systemd's own checker on the shipped
// units.
func TestGCUnitsSystemdAnalyze(t *testing.T) {
	units := map[string][]byte{}
	for _, name := range []string{"image-serve-gc.service", "image-serve-gc.timer", WatchUnitName} {
		units[name] = unitFile(t, name)
	}
	systemdAnalyze(t, units)
}

// systemdAnalyze writes units (name → content), with ExecStart pointed at
// an executable, and fails the test on anything systemd-analyze verify
// says of them.
func systemdAnalyze(t *testing.T, units map[string][]byte) {
	t.Helper()
	analyze := lookSystemdAnalyze(t)
	dir := t.TempDir()
	bin := writeFakeBinary(t, dir)
	var files []string
	for name, b := range units {
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/image-serve", bin))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "image-serve") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitsPointedAt: the files config gc-schedule and config
// watch-service print name --root exactly. Guards: the root was pasted in
// unescaped — a space made systemd read two assignments and run gc on the
// part before it, '%' is a systemd specifier, and a newline put a line of
// the caller's choosing into /etc/cron.d, run as root.
func TestUnitsPointedAt(t *testing.T) {
	type want struct{ env, mounts, cron string }
	for _, tc := range []struct {
		root string
		want want
	}{
		{"/var/lib/image-serve", want{"Environment=IMAGE_SERVE_ROOT=/var/lib/image-serve", "RequiresMountsFor=/var/lib/image-serve", "IMAGE_SERVE_ROOT=/var/lib/image-serve"}},
		{"/srv/image serve", want{`Environment="IMAGE_SERVE_ROOT=/srv/image serve"`, `RequiresMountsFor="/srv/image serve"`, `IMAGE_SERVE_ROOT="/srv/image serve"`}},
		{"/srv/100%H", want{"Environment=IMAGE_SERVE_ROOT=/srv/100%%H", "RequiresMountsFor=/srv/100%%H", "IMAGE_SERVE_ROOT=/srv/100%H"}},
		{"/srv/it's", want{`Environment="IMAGE_SERVE_ROOT=/srv/it's"`, `RequiresMountsFor="/srv/it's"`, `IMAGE_SERVE_ROOT="/srv/it's"`}},
	} {
		t.Run(tc.root, func(t *testing.T) {
			svc, err := GCUnitFor("image-serve-gc.service", tc.root)
			if err != nil {
				t.Fatal(err)
			}
			watch, err := WatchUnitFor(tc.root)
			if err != nil {
				t.Fatal(err)
			}
			cron, err := GCUnitFor("image-serve-gc.cron", tc.root)
			if err != nil {
				t.Fatal(err)
			}
			for _, unit := range []string{string(svc), string(watch)} {
				for _, line := range []string{tc.want.env, tc.want.mounts} {
					if !strings.Contains(unit, "\n"+line+"\n") {
						t.Errorf("no line %q in\n%s", line, unit)
					}
				}
			}
			if !strings.Contains(string(cron), "\n"+tc.want.cron+"\n") {
				t.Errorf("no line %q in\n%s", tc.want.cron, cron)
			}
			if strings.Contains(string(svc)+string(watch)+string(cron), "/var/lib/image-serve") != (tc.root == "/var/lib/image-serve") {
				t.Errorf("the default root is still named")
			}
		})
	}
	for _, root := range []string{"/srv/a\n17 3 * * * root rm -rf /", "/srv/a\tb", `/srv/"q`, `/srv/back\slash`} {
		for _, name := range GCUnits {
			if _, err := GCUnitFor(name, root); err == nil {
				t.Errorf("GCUnitFor(%s, %q) took it", name, root)
			}
		}
		var ue *UnitRootError
		if _, err := WatchUnitFor(root); !errors.As(err, &ue) {
			t.Errorf("WatchUnitFor(%q): %v, want a *UnitRootError", root, err)
		}
	}
}

// TestUnitsPointedAtSystemdAnalyze: systemd's own checker reads the units
// pointed at a root with a space and a '%' without a complaint (unquoted,
// it says "Invalid environment assignment, ignoring").
func TestUnitsPointedAtSystemdAnalyze(t *testing.T) {
	const root = "/srv/image serve/100%H"
	gc, err := GCUnitFor("image-serve-gc.service", root)
	if err != nil {
		t.Fatal(err)
	}
	watch, err := WatchUnitFor(root)
	if err != nil {
		t.Fatal(err)
	}
	systemdAnalyze(t, map[string][]byte{"image-serve-gc.service": gc, WatchUnitName: watch})
}

// updateUnits rewrites the shipped plain unit files from their templates.
var updateUnits = flag.Bool("update-units", false, "rewrite the shipped unit files from their templates")

// TestShippedUnits: the plain unit files an admin installs as they are
// (README: install -m 0644 templates/image-serve-gc.service …) are the
// templates rendered for the default root, so config gc-schedule and
// config watch-service print, for that root, exactly what is shipped.
// Run with -update-units after changing a template.
func TestShippedUnits(t *testing.T) {
	for _, name := range append(slices.Clone(GCUnits), WatchUnitName) {
		want := unitFile(t, name)
		if *updateUnits {
			if err := os.WriteFile(name, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not its template rendered for %s: run go test ./templates -run TestShippedUnits -update-units\n--- shipped\n%s\n--- rendered\n%s", name, tree.DefaultRoot, got, want)
		}
	}
}
