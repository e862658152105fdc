package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/image-serve/image-serve/templates"
	"github.com/image-serve/image-serve/tree"
	"github.com/urfave/cli/v2"
)

func configCommand() *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "print web server configuration for this root",
		Subcommands: []*cli.Command{
			{
				Name:  "apache",
				Usage: "print the Apache httpd configuration",
				Description: `Without --standalone: a Listen line and a VirtualHost to include in a distribution's httpd.
With --standalone: a complete httpd.conf that "apache2 -f FILE -k start" (Debian) or
"httpd -f FILE" (RHEL family) runs as its own instance, writing only under --run-dir.
It first writes the files every server needs (v2/index.json, v2/_catalog when missing, and the
error bodies, empty referrers index and locks under .image-serve/), so --root may be an empty
directory: Apache then answers as an empty registry until the first export.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8787", Usage: "address Apache listens on"},
					&cli.BoolFlag{Name: "standalone", Usage: "a complete httpd.conf for its own instance"},
					&cli.StringFlag{Name: "run-dir", Usage: "standalone: directory for the pid file and logs"},
					&cli.StringFlag{Name: "modules-dir", Usage: "standalone: directory of the httpd modules (default: detected)"},
					&cli.StringFlag{Name: "user", Usage: "standalone: user httpd runs as when started as root (default: www-data or apache)"},
					&cli.StringFlag{Name: "group", Usage: "standalone: group httpd runs as when started as root (default: the user's)"},
				},
				Action: runConfigApache,
			},
			{
				Name:  "nginx",
				Usage: "print the nginx configuration",
				Description: `Without --standalone: the maps and a server block to include inside a distribution's http {}
(/etc/nginx/conf.d/). With --standalone: a complete nginx.conf that "nginx -c FILE -p DIR" runs as
its own instance, writing only under --run-dir. nginx needs links in the tree that exports keep up
to date; this command first adds those missing from content written before (TripleO trees, or
image-serve's before nginx support), so the tree must be writable. As config apache, it writes the
files every server needs first, so --root may be an empty directory, before the first export.
With --cache-for ORIGIN: a caching tier in front of the image-serve server at ORIGIN
(http(s)://HOST[:PORT]; Apache, nginx, embedded, or another tier), caching blobs and manifests by
digest under --cache-dir (created if missing) and passing everything else through; --root is not
read (docs/cache-tiers.md).`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8787", Usage: "address nginx listens on"},
					&cli.BoolFlag{Name: "standalone", Usage: "a complete nginx.conf for its own instance"},
					&cli.StringFlag{Name: "run-dir", Usage: "standalone: directory for the pid file, logs and temporary files"},
					&cli.StringFlag{Name: "user", Usage: "standalone: user nginx's workers run as when started as root (default: www-data or nginx)"},
					&cli.StringFlag{Name: "group", Usage: "standalone: group nginx's workers run as (default: the user's name)"},
					&cli.StringFlag{Name: "cache-for", Usage: "a caching tier in front of the image-serve server at `URL` instead"},
					&cli.StringFlag{Name: "cache-dir", Value: templates.DefaultCacheDir, Usage: "caching tier: `DIR` of the cache"},
					&cli.StringFlag{Name: "cache-size", Value: templates.DefaultCacheSize, Usage: "caching tier: the cache's largest `SIZE` (nginx's syntax: 50g, 500m)"},
				},
				Action: runConfigNginx,
			},
			{
				Name:      "gc-schedule",
				Usage:     "print the systemd service and timer, or the cron.d line, that run gc daily",
				ArgsUsage: "systemd-service|systemd-timer|cron",
				Description: `Install the systemd pair in /etc/systemd/system/ and enable the timer
(systemctl enable --now image-serve-gc.timer), or the cron line as /etc/cron.d/image-serve-gc.
Both run "image-serve gc --quiet" with IMAGE_SERVE_ROOT set to --root.`,
				Action: runConfigGCSchedule,
			},
			{
				Name:  "watch-service",
				Usage: "print the systemd service that runs watch",
				Description: `Install it as /etc/systemd/system/image-serve-watch.service and enable it
(systemctl enable --now image-serve-watch.service). It runs "image-serve watch" with
IMAGE_SERVE_ROOT set to --root, and restarts it if it fails.`,
				Action: runConfigWatchService,
			},
			{
				Name:  "serve-service",
				Usage: "print the hardened systemd service that runs serve",
				Description: `Install it as /etc/systemd/system/image-serve.service and enable it
(systemctl enable --now image-serve.service). It runs "image-serve serve --listen ADDR" with
IMAGE_SERVE_ROOT set to --root, as a dynamic user with the root read-only, and restarts it if it
fails. CAP_NET_BIND_SERVICE is granted only when the port is below 1024.`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "listen", Value: templates.DefaultServeListen, Usage: "address serve listens on (HOST:PORT)"},
				},
				Action: runConfigServeService,
			},
			clientConfigCommand(),
		},
	}
}

// gcSchedules maps the gc-schedule argument to the file it prints.
var gcSchedules = map[string]string{
	"systemd-service": "image-serve-gc.service",
	"systemd-timer":   "image-serve-gc.timer",
	"cron":            "image-serve-gc.cron",
}

func runConfigGCSchedule(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one of systemd-service, systemd-timer, cron")
	}
	name, ok := gcSchedules[c.Args().First()]
	if !ok {
		return usageError(c, "unknown schedule %q: want systemd-service, systemd-timer or cron", c.Args().First())
	}
	root, _, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	b, err := templates.GCUnitFor(name, root.Dir())
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(b)
	return err
}

func runConfigWatchService(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "unexpected argument %q", c.Args().First())
	}
	root, _, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	b, err := templates.WatchUnitFor(root.Dir())
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(b)
	return err
}

func runConfigServeService(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "unexpected argument %q", c.Args().First())
	}
	// The address first: a bad flag is a usage error whatever the root.
	if _, err := templates.ServeUnitFor(tree.DefaultRoot, c.String("listen")); err != nil {
		var le *templates.ListenError
		if errors.As(err, &le) {
			return usageError(c, "%v", err)
		}
	}
	root, _, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	b, err := templates.ServeUnitFor(root.Dir(), c.String("listen"))
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(b)
	return err
}

func runConfigApache(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "unexpected argument %q", c.Args().First())
	}
	root, _, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	if err := root.Init(); err != nil {
		return err
	}
	cfg := templates.Apache{
		Listen:     c.String("listen"),
		Root:       root,
		Standalone: c.Bool("standalone"),
		RunDir:     c.String("run-dir"),
		ModulesDir: c.String("modules-dir"),
		User:       c.String("user"),
		Group:      c.String("group"),
	}
	if cfg.Standalone && cfg.User == "" {
		cfg.User = httpdUser()
	}
	if cfg.Group == "" {
		cfg.Group = cfg.User
	}
	return templates.RenderApache(c.App.Writer, cfg)
}

func runConfigNginx(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "unexpected argument %q", c.Args().First())
	}
	if c.IsSet("cache-for") {
		return runConfigNginxCache(c)
	}
	for _, f := range []string{"cache-dir", "cache-size"} {
		if c.IsSet(f) {
			return usageError(c, "--%s needs --cache-for: only a caching tier has a cache", f)
		}
	}
	root, _, err := openTreeOrEmpty(c)
	if err != nil {
		return err
	}
	cfg := templates.Nginx{
		Listen:     c.String("listen"),
		Root:       root,
		Standalone: c.Bool("standalone"),
		RunDir:     c.String("run-dir"),
		User:       c.String("user"),
		Group:      c.String("group"),
	}
	if cfg.Standalone && cfg.User == "" {
		cfg.User = webUser("www-data", "nginx")
	}
	// Render first: a bad flag changes nothing in the tree.
	var conf bytes.Buffer
	if err := templates.RenderNginx(&conf, cfg); err != nil {
		return err
	}
	if err := root.Init(); err != nil {
		return err
	}
	var n tree.NginxLinks
	err = root.Maintain(tree.MaintainOptions{}, func(m *tree.Maint) (err error) {
		n, err = m.LinkForNginx()
		return err
	})
	if err != nil {
		return err
	}
	if n.Manifests > 0 {
		logger(c).Info("linked manifests for nginx", "manifests", n.Manifests, "repositories", n.Repos)
	}
	_, err = c.App.Writer.Write(conf.Bytes())
	return err
}

// runConfigNginxCache prints a caching tier's configuration: no tree is
// read or written.
func runConfigNginxCache(c *cli.Context) error {
	if c.String("cache-for") == "" {
		return usageError(c, "--cache-for \"\": want the origin's URL, http://HOST[:PORT] or https://HOST[:PORT]")
	}
	cfg := templates.Nginx{
		Listen:     c.String("listen"),
		Standalone: c.Bool("standalone"),
		RunDir:     c.String("run-dir"),
		User:       c.String("user"),
		Group:      c.String("group"),
		CacheFor:   c.String("cache-for"),
		CacheDir:   c.String("cache-dir"),
		CacheSize:  c.String("cache-size"),
	}
	if cfg.Standalone && cfg.User == "" {
		cfg.User = webUser("www-data", "nginx")
	}
	var conf bytes.Buffer
	err := templates.RenderNginx(&conf, cfg)
	var fe *templates.CacheFlagError
	if errors.As(err, &fe) {
		return usageError(c, "%v", err)
	}
	if err != nil {
		return err
	}
	_, err = c.App.Writer.Write(conf.Bytes())
	return err
}

// httpdUser is the distribution's web server account: Debian's www-data or
// the RHEL family's apache.
func httpdUser() string { return webUser("www-data", "apache") }

// webUser is the first of names that is an account here, or "".
func webUser(names ...string) string {
	for _, name := range names {
		if _, err := user.Lookup(name); err == nil {
			return name
		}
	}
	return ""
}

func clientConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "client",
		Usage:     "print the files a node needs to pull from this registry",
		ArgsUsage: strings.Join(templates.ClientKinds, "|"),
		Description: `podman: a registries.conf.d drop-in (podman, skopeo and buildah read it), and with --ca the
CA under /etc/containers/certs.d/HOST:PORT/. containerd: certs.d/HOST:PORT/hosts.toml and the
CA beside it. docker: the daemon.json keys, and with --ca the CA under /etc/docker/certs.d/.
Without --ca the registry is reached without certificate checks (containerd: plain HTTP).
--mirror-of HOST (repeatable): pulls of HOST/REPO go to this registry first, then HOST; the
tree must hold HOST's repositories at the same paths. Docker mirrors only docker.io.
--mirror URL (repeatable): caching tiers in front of this registry (config nginx --cache-for),
tried in the order given before the registry itself, for its own repositories and HOST's.
Each file is printed after a comment line with its target path, or written under --output-dir
at that path (atomically, each file's directories created).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "registry", Usage: "HOST:PORT of this registry, as nodes reach it"},
			&cli.StringFlag{Name: "ca", Usage: "PEM `FILE` of the authority that signed the registry's certificate"},
			&cli.StringSliceFlag{Name: "mirror-of", Usage: "upstream `HOST` this registry mirrors (repeatable)"},
			&cli.StringSliceFlag{Name: "mirror", Usage: "a caching tier's `URL` in front of this registry, tried before it, in the order given (repeatable)"},
			&cli.StringFlag{Name: "output-dir", Usage: "write the files under `DIR` at their target paths instead of printing them"},
		},
		Action: runConfigClient,
	}
}

func runConfigClient(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, "want one client: %s", strings.Join(templates.ClientKinds, ", "))
	}
	kind := c.Args().First()
	if !slices.Contains(templates.ClientKinds, kind) {
		return usageError(c, "unknown client %q: want %s", kind, strings.Join(templates.ClientKinds, ", "))
	}
	cfg := templates.Client{Registry: c.String("registry"), MirrorOf: c.StringSlice("mirror-of"), Mirrors: c.StringSlice("mirror")}
	if ca := c.String("ca"); ca != "" {
		b, err := os.ReadFile(ca)
		if err != nil {
			return usageError(c, "--ca: %v", err)
		}
		cfg.CA = b
	}
	files, err := templates.ClientFiles(kind, cfg)
	var ce *templates.ClientError
	if errors.As(err, &ce) {
		if ce.Flag == "--ca" {
			return usageError(c, "--ca %s: %s", c.String("ca"), ce.Why)
		}
		return usageError(c, "%v", err)
	}
	if err != nil {
		return err
	}
	if dir := c.String("output-dir"); dir != "" {
		return writeClientFiles(c, dir, files)
	}
	w := c.App.Writer
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(w)
		}
		header := "# " + f.Path
		if f.Note != "" {
			header += " (" + f.Note + ")"
		}
		if _, err := fmt.Fprintf(w, "%s\n%s", header, f.Content); err != nil {
			return err
		}
	}
	return nil
}

// writeClientFiles writes each file under dir at its target path, each
// atomically (a temporary file renamed into place, so a node reading its
// configuration meanwhile sees the old file or the new one), and prints
// the paths it wrote.
func writeClientFiles(c *cli.Context, dir string, files []templates.ClientFile) error {
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.RelPath()))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := renameio.WriteFile(p, f.Content, 0o644); err != nil {
			return err
		}
		if _, err := fmt.Fprintln(c.App.Writer, p); err != nil {
			return err
		}
	}
	return nil
}
