package templates

import "embed"

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
