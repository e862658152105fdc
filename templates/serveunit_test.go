package templates

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// parseUnit parses systemd unit text into "Section.Key" -> values, every
// assignment of a key in order (SystemCallFilter= is given twice).
func parseUnit(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
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
				t.Fatalf("line %d: not a key=value line in a section: %q", i+1, line)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	return keys
}

func serveUnitFor(t *testing.T, root, listen string) map[string][]string {
	t.Helper()
	b, err := ServeUnitFor(root, listen)
	if err != nil {
		t.Fatal(err)
	}
	return parseUnit(t, b)
}

// TestServeUnit: the shipped serve unit runs "image-serve serve --listen
// 127.0.0.1:8787" for the default root, restarts it when it fails, and is
// hardened: a dynamic user, the root read-only, the system read-only,
// home directories and devices hidden, no capability at all (8787 needs
// none), no new privileges.
func TestServeUnit(t *testing.T) {
	keys := parseUnit(t, ServeUnit())
	for k, v := range map[string]string{
		"Unit.RequiresMountsFor":          "/var/lib/image-serve",
		"Service.Environment":             "IMAGE_SERVE_ROOT=/var/lib/image-serve",
		"Service.ExecStart":               "/usr/local/bin/image-serve serve --listen 127.0.0.1:8787",
		"Service.Restart":                 "on-failure",
		"Service.DynamicUser":             "yes",
		"Service.ReadOnlyPaths":           "/var/lib/image-serve",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateDevices":          "yes",
		"Service.NoNewPrivileges":         "yes",
		"Service.CapabilityBoundingSet":   "",
		"Service.AmbientCapabilities":     "",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.SystemCallErrorNumber":   "EPERM",
		"Install.WantedBy":                "multi-user.target",
	} {
		if got := keys[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q once", k, got, v)
		}
	}
}

// TestServeUnitCapability: CAP_NET_BIND_SERVICE, and it alone, is granted
// exactly when the port is below 1024; the unit names the root and the
// address it was asked for. Guards: a unit granting the capability for
// any port, or none for 443.
func TestServeUnitCapability(t *testing.T) {
	for _, tc := range []struct {
		listen string
		cap    bool
	}{
		{"127.0.0.1:8787", false},
		{"0.0.0.0:443", true},
		{":80", true},
		{"[::1]:1023", true},
		{"[::]:1024", false},
		{"registry.example:5000", false},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			keys := serveUnitFor(t, "/srv/registry", tc.listen)
			want := ""
			if tc.cap {
				want = "CAP_NET_BIND_SERVICE"
			}
			for _, k := range []string{"Service.CapabilityBoundingSet", "Service.AmbientCapabilities"} {
				if got := keys[k]; len(got) != 1 || got[0] != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			if got := keys["Service.ExecStart"]; len(got) != 1 || got[0] != "/usr/local/bin/image-serve serve --listen "+tc.listen {
				t.Errorf("ExecStart=%q, want serve --listen %s", got, tc.listen)
			}
			if got := keys["Service.ReadOnlyPaths"]; len(got) != 1 || got[0] != "/srv/registry" {
				t.Errorf("ReadOnlyPaths=%q, want the root", got)
			}
			if got := keys["Service.Environment"]; len(got) != 1 || got[0] != "IMAGE_SERVE_ROOT=/srv/registry" {
				t.Errorf("Environment=%q, want the root", got)
			}
		})
	}
}

// TestServeUnitHomeRoot: a root under /home stays visible (read-only):
// ProtectHome=yes would hide the tree from the server.
func TestServeUnitHomeRoot(t *testing.T) {
	for root, want := range map[string]string{
		"/home/ops/registry": "read-only",
		"/root/registry":     "read-only",
		"/homestead":         "yes",
		"/var/lib/x":         "yes",
	} {
		if got := serveUnitFor(t, root, DefaultServeListen)["Service.ProtectHome"]; len(got) != 1 || got[0] != want {
			t.Errorf("root %s: ProtectHome=%q, want %q", root, got, want)
		}
	}
}

// TestServeUnitRefuses: an address the unit cannot name exactly, or serve
// could not listen on, is a *ListenError; a root it cannot name, a
// *UnitRootError. Guards: "$PORT" or "%h" would be expanded by systemd in
// ExecStart, and a space would split it into two arguments.
func TestServeUnitRefuses(t *testing.T) {
	for _, listen := range []string{"8787", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http", "$HOST:80", "%h:80", "a b:80", "-x:80", "host_name:80"} {
		var le *ListenError
		if _, err := ServeUnitFor("/srv/r", listen); !errors.As(err, &le) {
			t.Errorf("ServeUnitFor(--listen %q): %v, want a *ListenError", listen, err)
		}
	}
	var ue *UnitRootError
	if _, err := ServeUnitFor("/srv/a\nb", DefaultServeListen); !errors.As(err, &ue) {
		t.Errorf("ServeUnitFor(root with a newline): %v, want a *UnitRootError", err)
	}
}

// TestServeUnitSystemdAnalyze runs systemd's own checker on the serve unit
// as shipped, for a privileged port, and for a root with a space and a
// '%'.
func TestServeUnitSystemdAnalyze(t *testing.T) {
	systemdAnalyze(t, map[string][]byte{ServeUnitName: ServeUnit()})
	for _, tc := range []struct{ root, listen string }{
		{"/srv/registry", "0.0.0.0:443"},
		{"/srv/image serve/100%H", "[::]:8787"},
	} {
		b, err := ServeUnitFor(tc.root, tc.listen)
		if err != nil {
			t.Fatal(err)
		}
		systemdAnalyze(t, map[string][]byte{ServeUnitName: b})
	}
}

// TestShippedServeUnit: templates/image-serve.service, the plain file an
// admin may install as it is, is the template rendered for the default
// root and address (go test ./templates -run TestShippedServeUnit
// -update-units rewrites it).
func TestShippedServeUnit(t *testing.T) {
	want := ServeUnit()
	if *updateUnits {
		if err := os.WriteFile(ServeUnitName, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(ServeUnitName)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not its template rendered for the defaults: run go test ./templates -run TestShippedServeUnit -update-units\n--- shipped\n%s\n--- rendered\n%s", ServeUnitName, got, want)
	}
}
