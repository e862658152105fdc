package templates

import (
	"bytes"
	"embed"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/template"
	"unicode"

	"github.com/image-serve/image-serve/tree"
)

// The files that run "image-serve gc --quiet" daily — a systemd service and
// timer, and a cron.d line for hosts without systemd timers — and the
// systemd services that run "image-serve watch" and "image-serve serve".
// Those that name the tree are templates of the root: IMAGE_SERVE_ROOT
// (and, in a systemd unit, RequiresMountsFor), rendered quoted and escaped
// for systemd or cron; the serve unit also takes its listen address. The
// timer names nothing and is a plain file.
//
// The plain files beside the templates (image-serve-gc.service, …) are
// the templates rendered for tree.DefaultRoot, for an admin to install
// as they are and edit; TestShippedUnits keeps them so.
//
//go:embed image-serve-gc.service.tmpl image-serve-gc.timer image-serve-gc.cron.tmpl image-serve-watch.service.tmpl image-serve.service.tmpl
var unitFiles embed.FS

// Parsed at first use, not at start-up: most commands render no configuration.
var unitTmpl = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("").Option("missingkey=error").Funcs(template.FuncMap{
		"systemd": systemdValue,
		"cron":    cronValue,
	}).ParseFS(unitFiles, "*.tmpl"))
})

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
	return renderUnit(name, root, nil)
}

// WatchUnitFor is WatchUnit for the tree root, as GCUnitFor.
func WatchUnitFor(root string) ([]byte, error) { return renderUnit(WatchUnitName, root, nil) }

// ServeUnitName is the name of the serve service, as installed in
// /etc/systemd/system/.
const ServeUnitName = "image-serve.service"

// DefaultServeListen is the address the shipped serve unit listens on:
// serve's own default.
const DefaultServeListen = "127.0.0.1:8787"

// ServeUnit returns the content of the serve service for the default root
// and DefaultServeListen.
func ServeUnit() []byte {
	b, err := ServeUnitFor(tree.DefaultRoot, DefaultServeListen)
	if err != nil {
		panic(err) // the defaults are a root and an address a unit can name
	}
	return b
}

// ServeUnitFor is ServeUnit for the tree root, as GCUnitFor, and the
// address listen, HOST:PORT as serve's --listen takes it (HOST empty, an
// IP address or a host name). The unit runs serve hardened: its own
// dynamic user, the root read-only, the rest of the system read-only or
// hidden, and no capability at all unless the port is below 1024, when it
// keeps CAP_NET_BIND_SERVICE and nothing else. An address the unit could
// not name exactly, or that serve could not listen on, is refused (see
// ListenError).
func ServeUnitFor(root, listen string) ([]byte, error) {
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, &ListenError{listen, "want HOST:PORT"}
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, &ListenError{listen, "the port must be a number from 1 to 65535"}
	}
	if _, err := netip.ParseAddr(host); err != nil && host != "" && !isHostName(host) {
		return nil, &ListenError{listen, "the host must be an IP address or a host name"}
	}
	protectHome := "yes"
	for _, dir := range []string{"/home", "/root", "/run/user"} {
		if root == dir || strings.HasPrefix(root, dir+"/") {
			// yes would hide the tree itself.
			protectHome = "read-only"
		}
	}
	return renderUnit(ServeUnitName, root, map[string]any{
		"Listen":         listen,
		"Port":           port,
		"BindCapability": port < 1024,
		"ProtectHome":    protectHome,
	})
}

// ListenError refuses a listen address for the serve unit.
type ListenError struct{ Listen, Why string }

func (e *ListenError) Error() string {
	return fmt.Sprintf("--listen %q: %s", e.Listen, e.Why)
}

// isHostName says whether s is a DNS name: dot-separated labels of
// letters, digits and inner hyphens. Nothing else can reach the unit's
// ExecStart, where systemd would expand a '$' or a '%' and split on a
// space.
func isHostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// UnitRootError refuses a root that a unit or cron line cannot name
// exactly: a control character (a newline would start a line of its own,
// in cron one that runs as root), a double quote or a backslash (systemd
// reads escapes in some settings and not in others).
type UnitRootError struct{ Root string }

func (e *UnitRootError) Error() string {
	return fmt.Sprintf("--root %q: a systemd unit or cron line cannot name it exactly (control character, quote or backslash); use a path without them", e.Root)
}

// renderUnit renders unit file name (its template, or the file itself
// when it names no root) for root, with the further parameters params.
func renderUnit(name, root string, params map[string]any) ([]byte, error) {
	if strings.ContainsFunc(root, unicode.IsControl) || strings.ContainsAny(root, "\"\\") {
		return nil, &UnitRootError{root}
	}
	if unitTmpl().Lookup(name+".tmpl") == nil {
		return unitFiles.ReadFile(name)
	}
	var b bytes.Buffer
	data := map[string]any{"Root": root}
	maps.Copy(data, params)
	if err := unitTmpl().ExecuteTemplate(&b, name+".tmpl", data); err != nil {
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
