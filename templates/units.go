package templates

import (
	"embed"
	"fmt"
	"strings"
	"unicode"
)

// The files that run "image-serve gc --quiet" daily: a systemd service and
// timer, and a cron.d line for hosts without systemd timers. They are
// plain files, not templates: the tree and the binary are named in them
// (IMAGE_SERVE_ROOT, the ExecStart path) for an admin to change.
//
//go:embed image-serve-gc.service image-serve-gc.timer image-serve-gc.cron
var gcUnits embed.FS

// GCUnits are the names of the scheduling files, as installed:
// /etc/systemd/system/ for the service and timer, /etc/cron.d/image-serve-gc
// for the cron line.
var GCUnits = []string{"image-serve-gc.service", "image-serve-gc.timer", "image-serve-gc.cron"}

// GCUnit returns the content of the scheduling file name, one of GCUnits.
func GCUnit(name string) ([]byte, error) { return gcUnits.ReadFile(name) }

// The systemd service that runs "image-serve watch", installed in
// /etc/systemd/system/ as WatchUnitName. A plain file too.
//
//go:embed image-serve-watch.service
var watchUnit []byte

// WatchUnitName is the name of the watch service, as installed.
const WatchUnitName = "image-serve-watch.service"

// WatchUnit returns the content of the watch service.
func WatchUnit() []byte { return append([]byte(nil), watchUnit...) }

// GCUnitFor is GCUnit pointed at the tree root: the file sets
// IMAGE_SERVE_ROOT (and, in a systemd unit, RequiresMountsFor) to root,
// quoted and escaped for systemd or cron. A root these files cannot hold
// exactly is refused (see UnitRootError).
func GCUnitFor(name, root string) ([]byte, error) {
	b, err := GCUnit(name)
	if err != nil {
		return nil, err
	}
	return pointAt(b, root)
}

// WatchUnitFor is WatchUnit pointed at the tree root, as GCUnitFor.
func WatchUnitFor(root string) ([]byte, error) { return pointAt(WatchUnit(), root) }

// UnitRootError refuses a root that a unit or cron line cannot name
// exactly: a control character (a newline would start a line of its own,
// in cron one that runs as root), a double quote or a backslash (systemd
// reads escapes in some settings and not in others).
type UnitRootError struct{ Root string }

func (e *UnitRootError) Error() string {
	return fmt.Sprintf("--root %q: a systemd unit or cron line cannot name it exactly (control character, quote or backslash); use a path without them", e.Root)
}

// The settings of the shipped files that name the default root.
const (
	systemdEnvRoot = "Environment=IMAGE_SERVE_ROOT="
	systemdMounts  = "RequiresMountsFor="
	cronEnvRoot    = "IMAGE_SERVE_ROOT="
)

// pointAt rewrites the settings of unit b that name the default root so
// that they name root. In systemd settings '%' starts a specifier and is
// doubled, and a value with a space is quoted (unquoted, a space splits
// Environment= into two assignments: gc would run on the part before
// it); cron takes an environment value up to the end of its line, quotes
// removed.
func pointAt(b []byte, root string) ([]byte, error) {
	if strings.ContainsFunc(root, unicode.IsControl) || strings.ContainsAny(root, "\"\\") {
		return nil, &UnitRootError{root}
	}
	quote := func(s string) string {
		if strings.ContainsAny(s, " '") {
			return `"` + s + `"`
		}
		return s
	}
	systemd := strings.ReplaceAll(root, "%", "%%")
	lines := strings.SplitAfter(string(b), "\n")
	for i, line := range lines {
		switch {
		case strings.HasPrefix(line, systemdEnvRoot):
			lines[i] = "Environment=" + quote("IMAGE_SERVE_ROOT="+systemd) + "\n"
		case strings.HasPrefix(line, systemdMounts):
			lines[i] = systemdMounts + quote(systemd) + "\n"
		case strings.HasPrefix(line, cronEnvRoot):
			lines[i] = cronEnvRoot + quote(root) + "\n"
		}
	}
	return []byte(strings.Join(lines, "")), nil
}
