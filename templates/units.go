package templates

import (
	"bytes"
	"embed"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"unicode"

	"github.com/image-serve/image-serve/tree"
)

// The files that run "image-serve gc --quiet" daily — a systemd service and
// timer, and a cron.d line for hosts without systemd timers — and the
// systemd service that runs "image-serve watch". Those that name the tree
// are templates with one parameter, the root: IMAGE_SERVE_ROOT (and, in a
// systemd unit, RequiresMountsFor), rendered quoted and escaped for
// systemd or cron. The timer names nothing and is a plain file.
//
// The plain files beside the templates (image-serve-gc.service, …) are
// the templates rendered for tree.DefaultRoot, for an admin to install
// as they are and edit; TestShippedUnits keeps them so.
//
//go:embed image-serve-gc.service.tmpl image-serve-gc.timer image-serve-gc.cron.tmpl image-serve-watch.service.tmpl
var unitFiles embed.FS

var unitTmpl = template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
	"systemd": systemdValue,
	"cron":    cronValue,
}).ParseFS(unitFiles, "*.tmpl"))

// GCUnits are the names of the scheduling files, as installed:
// /etc/systemd/system/ for the service and timer, /etc/cron.d/image-serve-gc
// for the cron line.
var GCUnits = []string{"image-serve-gc.service", "image-serve-gc.timer", "image-serve-gc.cron"}

// GCUnit returns the content of the scheduling file name, one of GCUnits,
// for the default root.
func GCUnit(name string) ([]byte, error) { return GCUnitFor(name, tree.DefaultRoot) }

// WatchUnitName is the name of the watch service, as installed in
// /etc/systemd/system/.
const WatchUnitName = "image-serve-watch.service"

// WatchUnit returns the content of the watch service for the default
// root.
func WatchUnit() []byte {
	b, err := WatchUnitFor(tree.DefaultRoot)
	if err != nil {
		panic(err) // the default root is a root a unit can name
	}
	return b
}

// GCUnitFor is GCUnit for the tree root: the file sets IMAGE_SERVE_ROOT
// (and, in a systemd unit, RequiresMountsFor) to root, quoted and escaped
// for systemd or cron. A root these files cannot hold exactly is refused
// (see UnitRootError).
func GCUnitFor(name, root string) ([]byte, error) {
	if !slices.Contains(GCUnits, name) {
		return nil, fmt.Errorf("no scheduling file %q: want one of %v", name, GCUnits)
	}
	return renderUnit(name, root)
}

// WatchUnitFor is WatchUnit for the tree root, as GCUnitFor.
func WatchUnitFor(root string) ([]byte, error) { return renderUnit(WatchUnitName, root) }

// UnitRootError refuses a root that a unit or cron line cannot name
// exactly: a control character (a newline would start a line of its own,
// in cron one that runs as root), a double quote or a backslash (systemd
// reads escapes in some settings and not in others).
type UnitRootError struct{ Root string }

func (e *UnitRootError) Error() string {
	return fmt.Sprintf("--root %q: a systemd unit or cron line cannot name it exactly (control character, quote or backslash); use a path without them", e.Root)
}

// renderUnit renders unit file name (its template, or the file itself
// when it names no root) for root.
func renderUnit(name, root string) ([]byte, error) {
	if strings.ContainsFunc(root, unicode.IsControl) || strings.ContainsAny(root, "\"\\") {
		return nil, &UnitRootError{root}
	}
	if unitTmpl.Lookup(name+".tmpl") == nil {
		return unitFiles.ReadFile(name)
	}
	var b bytes.Buffer
	if err := unitTmpl.ExecuteTemplate(&b, name+".tmpl", struct{ Root string }{root}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// systemdValue is s as the value of a systemd setting: '%' starts a
// specifier and is doubled, and a value with a space is quoted (unquoted,
// a space splits Environment= into two assignments: gc would run on the
// part before it), as is one with a single quote.
func systemdValue(s string) string { return quoteSpaced(strings.ReplaceAll(s, "%", "%%")) }

// cronValue is s as the value of a cron environment setting, which cron
// takes up to the end of its line, quotes removed.
func cronValue(s string) string { return quoteSpaced(s) }

func quoteSpaced(s string) string {
	if strings.ContainsAny(s, " '") {
		return `"` + s + `"`
	}
	return s
}
