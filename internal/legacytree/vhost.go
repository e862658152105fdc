package legacytree

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/image-serve/image-serve/internal/testserver"
	"github.com/image-serve/image-serve/templates"
)

// TripleOVhost renders, for testserver.Apache's WithConfig, a standalone
// httpd.conf around the vhost TripleO's final Ansible role installed for
// the undercloud's registry (docs/legacy-trees.md): DocumentRoot the tree,
// FollowSymLinks and MultiViews on, per-directory .htaccess files allowed,
// tags rewritten to exactly <tag>.type-map, blobs given their digest, an
// unquoted ETag and an octet-stream type by mod_headers, a legacy .gz
// layer found by MultiViews, and the system's mime.types. With
// testserver.WithHostileEncoding the server adds "AddEncoding x-gzip .gz",
// under which MultiViews sends every .gz layer with a Content-Encoding
// that makes clients gunzip it and fail its digest — the configuration
// migrating the blob names takes out of play.
func TripleOVhost(dir string) testserver.ConfigRenderer {
	return func(t testing.TB, listen, runDir string) string {
		t.Helper()
		conf := filepath.Join(runDir, "httpd.conf")
		if err := os.WriteFile(conf, []byte(tripleOConfig(t, dir, listen, runDir)), 0o644); err != nil {
			t.Fatal(err)
		}
		return conf
	}
}

func tripleOConfig(t testing.TB, dir, listen, runDir string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "ServerRoot %q\nDefaultRuntimeDir %q\nPidFile %q\nServerName localhost\n", runDir, runDir, filepath.Join(runDir, "httpd.pid"))
	for _, m := range tripleOModules(t) {
		fmt.Fprintf(&b, "<IfModule !%s_module>\n    LoadModule %s_module %q\n</IfModule>\n", m[0], m[0], m[1])
	}
	if u, g := account(t); u != "" {
		fmt.Fprintf(&b, "User %s\nGroup %s\n", u, g)
	}
	fmt.Fprintf(&b, "ErrorLog %q\nLogLevel warn\nCustomLog %q \"%%h %%t \\\"%%r\\\" %%>s %%b\"\n",
		filepath.Join(runDir, "error.log"), filepath.Join(runDir, "access.log"))
	types := "/etc/mime.types"
	if _, err := os.Stat(types); err != nil {
		types = "/dev/null"
	}
	fmt.Fprintf(&b, "TypesConfig %q\n", types)
	b.WriteString("<IfDefine ADDENCODING>\n    AddEncoding x-gzip .gz .tgz\n</IfDefine>\n")
	b.WriteString("<Directory />\n    Options FollowSymLinks\n    AllowOverride None\n    Require all denied\n</Directory>\n")
	fmt.Fprintf(&b, `Listen %s
<VirtualHost %s>
    DocumentRoot %q
    ServerSignature Off
    TraceEnable off
    SetEnvIf X-Forwarded-Proto https HTTPS=1
    RedirectMatch ^/$ /v2
    <Directory %q>
        DirectoryIndex index.json
        Options FollowSymLinks MultiViews
        AllowOverride FileInfo
        Require all granted
        Header set Docker-Distribution-Api-Version registry/2.0
    </Directory>
    AddHandler type-map .type-map
    <FilesMatch "^\.ht">
        Require all denied
    </FilesMatch>
    RewriteEngine On
    # tags: one- and two-level names, anything not a digest, to <tag>.type-map
    RewriteCond %%{REQUEST_URI} !\.(json|type-map)$
    RewriteRule "^(/v2/(?:[^/]+/)?[^/]+/manifests/(?!sha256:)[^/]+)$" "$1.type-map" [PT]
    SetEnvIf Request_URI "^/v2/.+/blobs/(sha256:[a-f0-9]{64})$" BLOB_DIGEST=$1
    Header set Docker-Content-Digest "%%{BLOB_DIGEST}e" env=BLOB_DIGEST
    Header set ETag "%%{BLOB_DIGEST}e" env=BLOB_DIGEST
    Header set Cache-Control "max-age=31536000" env=BLOB_DIGEST
    Header set Content-Type "application/octet-stream" env=BLOB_DIGEST
</VirtualHost>
`, listen, listen, dir, dir)
	return b.String()
}

// tripleOModules are the modules the vhost uses, with their paths.
func tripleOModules(t testing.TB) [][2]string {
	t.Helper()
	for _, dir := range templates.ModulesDirs {
		if _, err := os.Stat(filepath.Join(dir, "mod_rewrite.so")); err != nil {
			continue
		}
		var mods [][2]string
		for _, name := range []string{"mpm_event", "authz_core", "mime", "dir", "negotiation", "headers", "setenvif", "rewrite", "alias", "unixd", "log_config"} {
			p := filepath.Join(dir, "mod_"+name+".so")
			if _, err := os.Stat(p); err == nil {
				mods = append(mods, [2]string{name, p})
			}
		}
		return mods
	}
	t.Fatalf("no httpd modules directory among %v: %s", templates.ModulesDirs, testserver.Setup)
	return nil
}

// account is the user and group Apache's workers run as when we are root,
// as testserver picks them.
func account(t testing.TB) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return "", ""
	}
	for _, name := range []string{"www-data", "apache", "nginx", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			t.Fatal(err)
		}
		return name, g.Name
	}
	t.Fatal("running as root, but there is no www-data, apache, nginx or nobody account")
	return "", ""
}
