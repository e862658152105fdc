package templates

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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

// TestGCUnitsSystemdAnalyze runs systemd's own checker where it exists,
// with ExecStart pointed at an executable (it checks that the command is
// there).
func TestGCUnitsSystemdAnalyze(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "image-serve")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, name := range []string{"image-serve-gc.service", "image-serve-gc.timer", WatchUnitName} {
		b := unitFile(t, name)
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/image-serve", bin))
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
	if err != nil || strings.Contains(string(out), "image-serve-") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
