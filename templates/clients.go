package templates

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
)

// The files a client node needs to pull from an image-serve registry —
// podman and skopeo (containers-image), containerd, Docker — rendered
// from the registry's address, the CA that signed its certificate, and
// the upstream registries it mirrors. docs/clients.md describes each
// format and why each file says what it says.

// ClientKinds are the clients ClientFiles renders for.
var ClientKinds = []string{"podman", "containerd", "docker"}

// Client is what a node needs to know of the registry.
type Client struct {
	// Registry is the registry's HOST or HOST:PORT, as clients name it
	// in image references.
	Registry string
	// CA is the PEM certificate (or bundle) of the authority that signed
	// the registry's certificate. Empty: the registry is reached without
	// certificate checks — plain HTTP for containerd, which (1.6) does
	// not fall back from HTTPS to HTTP as podman and Docker do.
	CA []byte
	// MirrorOf are upstream registries (HOST or HOST:PORT) whose
	// repositories the tree holds at the same paths: pulls of
	// HOST/REPO… go to this registry first.
	MirrorOf []string
	// Mirrors are caching tiers in front of this registry (config nginx
	// --cache-for), as URLs http(s)://HOST[:PORT], in the order nodes
	// try them: each pull goes to the first that answers, then to the
	// registry itself. A tier reached over http:// is insecure, as the
	// registry is without CA.
	Mirrors []string
}

// A ClientFile is one file to install on the node.
type ClientFile struct {
	// Path is where it goes: an absolute path.
	Path string
	// Note says what to do with it, in one line; "" when it is installed
	// as it is.
	Note string
	// Content is the whole file.
	Content []byte
}

// ClientError refuses a Client: Flag names what is wrong (--registry,
// --ca, --mirror-of, --mirror).
type ClientError struct{ Flag, Value, Why string }

func (e *ClientError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Flag, e.Why)
	}
	return fmt.Sprintf("%s %q: %s", e.Flag, e.Value, e.Why)
}

// dockerHub is Docker Hub as image references and containers-image name
// it; dockerHubAliases are the other names people give it.
const dockerHub = "docker.io"

var dockerHubAliases = []string{"docker.io", "index.docker.io", "registry-1.docker.io"}

// ClientFiles returns the files kind (one of ClientKinds) needs to pull
// from c.Registry, in the order to install them. A registry or mirror
// that is not a HOST[:PORT], a CA that is not PEM certificates, or a
// mirror the client cannot take (Docker mirrors only Docker Hub) is a
// *ClientError.
func ClientFiles(kind string, c Client) ([]ClientFile, error) {
	if !slices.Contains(ClientKinds, kind) {
		return nil, fmt.Errorf("unknown client %q: want one of %s", kind, strings.Join(ClientKinds, ", "))
	}
	if c.Registry == "" {
		return nil, &ClientError{"--registry", "", "required: the registry's HOST:PORT, as nodes name it"}
	}
	if !isHostPort(c.Registry) {
		return nil, &ClientError{"--registry", c.Registry, "not a HOST or HOST:PORT (a host name or IP address, and a port from 1 to 65535)"}
	}
	if len(c.CA) > 0 {
		if err := checkCA(c.CA); err != nil {
			return nil, err
		}
	}
	var mirrors []string
	for _, m := range c.MirrorOf {
		if !isHostPort(m) {
			return nil, &ClientError{"--mirror-of", m, "not a registry host (want HOST or HOST:PORT, as in quay.io)"}
		}
		if slices.Contains(dockerHubAliases, m) {
			m = dockerHub
		}
		if m == c.Registry {
			return nil, &ClientError{"--mirror-of", m, "is --registry itself"}
		}
		if !slices.Contains(mirrors, m) {
			mirrors = append(mirrors, m)
		}
	}
	c.MirrorOf = mirrors
	var tiers []string
	for _, m := range c.Mirrors {
		t, err := parseTier(m)
		if err != nil {
			return nil, err
		}
		if t.host == c.Registry {
			return nil, &ClientError{"--mirror", m, "is --registry itself"}
		}
		if !slices.ContainsFunc(tiers, func(s string) bool { return s == t.url }) {
			tiers = append(tiers, t.url)
		}
	}
	c.Mirrors = tiers
	switch kind {
	case "podman":
		return podmanFiles(c), nil
	case "containerd":
		return containerdFiles(c), nil
	default:
		return dockerFiles(c)
	}
}

// tier is a caching tier's URL, split.
type tier struct {
	url, host string // scheme://host[:port]; host[:port]
	insecure  bool   // http://
}

// parseTier reads a --mirror URL: http(s)://HOST[:PORT] and nothing more.
func parseTier(s string) (tier, error) {
	scheme, host, ok := strings.Cut(s, "://")
	host = strings.TrimSuffix(host, "/")
	if !ok || (scheme != "http" && scheme != "https") || !isHostPort(host) {
		return tier{}, &ClientError{"--mirror", s, "not a caching tier's URL (want http://HOST[:PORT] or https://HOST[:PORT])"}
	}
	return tier{url: scheme + "://" + host, host: host, insecure: scheme == "http"}, nil
}

// tierOf is parseTier of a URL ClientFiles has checked.
func tierOf(s string) tier {
	t, _ := parseTier(s)
	return t
}

// isHostPort says whether s is HOST or HOST:PORT: a DNS name or an IP
// address ([…] for IPv6 with a port), and a port from 1 to 65535. Nothing
// else is a registry as an image reference names it, and nothing else
// reaches the rendered files, which quote it as it is.
func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, ""
	}
	if port != "" {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return false
		}
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return port != "" || !strings.Contains(host, ":") // a bare IPv6 address would read as a port
	}
	return isHostName(host)
}

// checkCA accepts PEM text made only of certificates that parse.
func checkCA(b []byte) error {
	rest := b
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return &ClientError{"--ca", "", fmt.Sprintf("holds a PEM %s, want only CERTIFICATE blocks (the authority's certificate, never a key)", block.Type)}
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return &ClientError{"--ca", "", fmt.Sprintf("certificate %d does not parse: %v", n+1, err)}
		}
		n++
	}
	if n == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return &ClientError{"--ca", "", "not a PEM certificate (want the -----BEGIN CERTIFICATE----- text of the authority that signed the registry's certificate)"}
	}
	return nil
}

// fileName is host as part of a file name: ':' and brackets, which some
// tools mind, become '-'.
func fileName(host string) string {
	return strings.Trim(strings.NewReplacer(":", "-", "[", "", "]", "").Replace(host), "-")
}

// tomlString is s as a TOML basic string. Every value rendered is a host,
// a URL of one, or a path built from them: isHostPort keeps quotes,
// backslashes and control characters out.
func tomlString(s string) string { return `"` + s + `"` }

// podmanFiles: one registries.conf.d drop-in, and the CA under
// /etc/containers/certs.d/HOST[:PORT]/, which containers-image reads for
// that host (the registry, as itself and as a mirror).
func podmanFiles(c Client) []ClientFile {
	insecure := len(c.CA) == 0
	var b strings.Builder
	fmt.Fprintf(&b, "# image-serve registry %s, for podman, skopeo and buildah (containers-registries.conf(5)).\n", c.Registry)
	if insecure {
		b.WriteString("# insecure: plain HTTP, or HTTPS without certificate checks (no --ca was given).\n")
	}
	b.WriteString("[[registry]]\n")
	fmt.Fprintf(&b, "location = %s\n", tomlString(c.Registry))
	if insecure {
		b.WriteString("insecure = true\n")
	}
	// The tiers in front of the registry, tried in order before it.
	tierMirrors := func() {
		for _, u := range c.Mirrors {
			t := tierOf(u)
			b.WriteString("\n[[registry.mirror]]\n")
			fmt.Fprintf(&b, "location = %s\n", tomlString(t.host))
			if t.insecure {
				b.WriteString("insecure = true\n")
			}
		}
	}
	if len(c.Mirrors) > 0 {
		fmt.Fprintf(&b, "# Caching tiers in front of %s, tried in this order before it.\n", c.Registry)
		tierMirrors()
	}
	for _, m := range c.MirrorOf {
		if len(c.Mirrors) > 0 {
			fmt.Fprintf(&b, "\n# Pulls of %s/… try the caching tiers, then %s, then %s itself.\n", m, c.Registry, m)
		} else {
			fmt.Fprintf(&b, "\n# Pulls of %s/… try %s first, then %s itself.\n", m, c.Registry, m)
		}
		b.WriteString("[[registry]]\n")
		fmt.Fprintf(&b, "prefix = %s\n", tomlString(m))
		fmt.Fprintf(&b, "location = %s\n", tomlString(m))
		tierMirrors()
		b.WriteString("\n[[registry.mirror]]\n")
		fmt.Fprintf(&b, "location = %s\n", tomlString(c.Registry))
		if insecure {
			b.WriteString("insecure = true\n")
		}
		b.WriteString("# When the tree is a mirror by digest (its tags may lag behind or differ from\n")
		fmt.Fprintf(&b, "# %s's), uncomment this: pulls by digest come from the mirror, pulls by tag\n", m)
		fmt.Fprintf(&b, "# always from %s, so a tag never resolves to the mirror's older image.\n", m)
		b.WriteString("# pull-from-mirror = \"digest-only\"\n")
	}
	files := []ClientFile{{
		Path:    "/etc/containers/registries.conf.d/50-image-serve-" + fileName(c.Registry) + ".conf",
		Content: []byte(b.String()),
	}}
	if !insecure {
		files = append(files, ClientFile{
			Path:    "/etc/containers/certs.d/" + c.Registry + "/ca.crt",
			Note:    "the --ca certificate",
			Content: c.CA,
		})
	}
	return files
}

// containerdFiles: certs.d/HOST/hosts.toml for the registry, and one for
// each upstream it mirrors naming it as the first host; the CA beside the
// registry's hosts.toml. Each names the CA by a path relative to its own
// directory, which containerd resolves against it, so the files work
// wherever the certs.d directory is (config_path, ctr --hosts-dir).
func containerdFiles(c Client) []ClientFile {
	const dir = "/etc/containerd/certs.d/"
	scheme := "https://"
	if len(c.CA) == 0 {
		scheme = "http://"
	}
	url := scheme + c.Registry
	host := func(b *strings.Builder, caPath string) {
		fmt.Fprintf(b, "[host.%s]\n", tomlString(url))
		b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
		if len(c.CA) > 0 {
			fmt.Fprintf(b, "  ca = %s\n", tomlString(caPath))
		}
	}
	// The tiers in front of the registry, tried in order before it: an
	// https:// tier is checked against the system's roots.
	tierHosts := func(b *strings.Builder) {
		for _, u := range c.Mirrors {
			fmt.Fprintf(b, "[host.%s]\n", tomlString(u))
			b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n\n")
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# image-serve registry %s, for containerd (its hosts.toml format).\n", c.Registry)
	if len(c.CA) == 0 {
		b.WriteString("# Plain HTTP: no --ca was given.\n")
	}
	if len(c.Mirrors) > 0 {
		b.WriteString("# Its caching tiers are tried first, in this order, then the registry itself (server).\n")
	}
	fmt.Fprintf(&b, "server = %s\n\n", tomlString(url))
	tierHosts(&b)
	host(&b, "ca.crt")
	files := []ClientFile{{Path: dir + c.Registry + "/hosts.toml", Content: []byte(b.String())}}
	if len(c.CA) > 0 {
		files = append(files, ClientFile{Path: dir + c.Registry + "/ca.crt", Note: "the --ca certificate", Content: c.CA})
	}
	for _, m := range c.MirrorOf {
		server := "https://" + m
		if m == dockerHub {
			server = "https://registry-1.docker.io"
		}
		var b strings.Builder
		if len(c.Mirrors) > 0 {
			fmt.Fprintf(&b, "# Pulls of %s/… try the caching tiers, then the image-serve registry %s, then %s.\n", m, c.Registry, server)
		} else {
			fmt.Fprintf(&b, "# Pulls of %s/… try the image-serve registry %s first, then %s.\n", m, c.Registry, server)
		}
		fmt.Fprintf(&b, "server = %s\n\n", tomlString(server))
		tierHosts(&b)
		host(&b, "../"+c.Registry+"/ca.crt")
		files = append(files, ClientFile{Path: dir + m + "/hosts.toml", Content: []byte(b.String())})
	}
	return files
}

// dockerFiles: the daemon.json keys, and the CA under
// /etc/docker/certs.d/HOST[:PORT]/. Docker takes mirrors for Docker Hub
// only (registry-mirrors); another upstream is refused.
func dockerFiles(c Client) ([]ClientFile, error) {
	keys := map[string][]string{}
	scheme := "https://"
	if len(c.CA) == 0 {
		keys["insecure-registries"] = []string{c.Registry}
		scheme = "http://"
	}
	for _, m := range c.MirrorOf {
		if m != dockerHub {
			return nil, &ClientError{"--mirror-of", m, "Docker takes mirrors of Docker Hub (docker.io) only; configure podman or containerd to mirror it"}
		}
		keys["registry-mirrors"] = append(slices.Clone(c.Mirrors), scheme+c.Registry)
	}
	if len(c.Mirrors) > 0 && !slices.Contains(c.MirrorOf, dockerHub) {
		return nil, &ClientError{"--mirror", c.Mirrors[0], "Docker takes mirrors of Docker Hub (docker.io) only: give --mirror-of docker.io, or configure podman or containerd"}
	}
	for _, u := range c.Mirrors {
		if t := tierOf(u); t.insecure {
			keys["insecure-registries"] = append(keys["insecure-registries"], t.host)
		}
	}
	var files []ClientFile
	if len(keys) > 0 {
		b, err := json.MarshalIndent(keys, "", "  ")
		if err != nil {
			return nil, err
		}
		files = append(files, ClientFile{
			Path:    "/etc/docker/daemon.json",
			Note:    "merge these keys into the file, then restart dockerd",
			Content: append(b, '\n'),
		})
	}
	if len(c.CA) > 0 {
		files = append(files, ClientFile{
			Path:    "/etc/docker/certs.d/" + c.Registry + "/ca.crt",
			Note:    "the --ca certificate",
			Content: c.CA,
		})
	}
	return files, nil
}

// RelPath is f's path relative to the file system root, for writing it
// under another directory.
func (f ClientFile) RelPath() string { return strings.TrimPrefix(path.Clean(f.Path), "/") }
