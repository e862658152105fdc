// Package syncfile parses the declarative file `image-serve sync -f`
// reads: skopeo sync's YAML (`skopeo sync --src yaml`), unchanged, plus
// image-serve's additions. It only parses and validates bytes; it opens no
// file and talks to no registry.
//
// The format, as skopeo documents it: each top-level key is a registry
// host (with an optional port), holding
//
//	images:              REPO: [TAG or DIGEST, …]   ([] means every tag)
//	images-by-tag-regex: REPO: REGEX                (tags the regex matches)
//	images-by-semver:    REPO: RANGE                (tags in the semver range)
//	credentials:         {username: U, password: P}
//	tls-verify:          true | false               (default true)
//	cert-dir:            DIR                        (a certs.d directory)
//
// image-serve adds, on a registry (for all its images) or on one image of
// `images` written as a mapping {tags: [...], KEY: ...} instead of a list:
//
//	platforms: [OS/ARCH[/VARIANT], …]   children of an index to keep
//	exclude:   [REGEX, …]               tags never synced
//	immutable: [REGEX, …]               tags that never move once present
//	referrers: false                    signatures and SBOMs stay behind
//	                                    (referrers, cosign's .sig/.att/.sbom tags)
//
// and on a registry `prefix: PATH`, the repository path its images go
// under in the tree, and the load a run may put on it:
//
//	max-requests:        N   requests in flight to it at once (N ≥ 1)
//	requests-per-second: R   requests started per second (R > 0; a burst
//	                         of one second's worth)
//
// Both count every request sent because of the registry: pings, tokens,
// listings, HEADs, GETs and retries. Regular expressions are Go's (RE2), matched anywhere
// in a tag as skopeo matches them: anchor them with ^ and $.
//
// image-serve also takes, instead of a registry host, a store on this
// machine as a top-level key (skopeo's file has no such key):
//
//	containers-storage                   podman's configured store
//	containers-storage:[STORE-SPEC]      another one, [[DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]]
//	docker-daemon                        the Docker Engine's (DOCKER_HOST)
//
// with images, images-by-tag-regex, images-by-semver (repositories as the
// store names them, a registry host and port included: localhost/app),
// prefix, exclude and immutable — and nothing a registry alone has
// (credentials, TLS, request limits), nor platforms, referrers or digests:
// a local image is one platform, has no referrers, and is synced by tag,
// the digest a store gives being not the one the tree serves. A registry
// whose host is one of these words is written with its port.
//
// Every error names the entry and its line: an unknown key, a value of
// the wrong kind, a regex or a semver range that does not compile.
package syncfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/image-serve/image-serve/distribution"
	"github.com/opencontainers/go-digest"
	"go.yaml.in/yaml/v3"
)

// MaxSize bounds the file: a release of thousands of images is far
// smaller, and a YAML parser holds all of it.
const MaxSize = 4 << 20

// File is a parsed sync file: its registries in the order written.
type File struct {
	Registries []Registry
}

// Registry is one top-level entry: a registry, or a store on this
// machine (Local).
type Registry struct {
	Host string // as written: HOST[:PORT], or a local store's key
	Line int
	// Local is the transport of a store on this machine the entry reads
	// instead of a registry: "containers-storage" or "docker-daemon"; ""
	// for a registry.
	Local string
	// Store is the STORE-SPEC of a containers-storage:[STORE-SPEC] key,
	// without its brackets; "" for podman's configured store. It is
	// checked by whoever opens the store.
	Store string
	// Images in the order written: images, then images-by-tag-regex,
	// then images-by-semver, each in its own order.
	Images      []Image
	Credentials *Credentials // nil: the default auth file
	TLSVerify   *bool        // nil: true
	CertDir     string
	Prefix      string
	// MaxRequests caps the requests in flight to the registry; 0: no
	// cap (max-requests).
	MaxRequests int
	// RequestsPerSecond is the rate requests to the registry may start
	// at; 0: none (requests-per-second).
	RequestsPerSecond float64
	Options
}

// Credentials is a registry's user name and password.
type Credentials struct {
	Username string
	Password string
}

// Options are what a registry sets for all its images and an image may
// set for itself; an image's own replace its registry's, key by key.
type Options struct {
	Platforms []string
	Exclude   []*regexp.Regexp
	Immutable []*regexp.Regexp
	Referrers *bool // nil: true
}

// Kind says how an image entry selects its tags.
type Kind int

const (
	// Listed: the tags and digests of images; none means every tag.
	Listed Kind = iota
	// ByRegex: the tags TagRegex matches (images-by-tag-regex).
	ByRegex
	// BySemver: the tags that parse as semantic versions in Semver's
	// range (images-by-semver).
	BySemver
)

// Image is one repository entry of a registry.
type Image struct {
	Repo    string
	Line    int
	Kind    Kind
	Tags    []string // Listed: the tags named
	Digests []string // Listed: the digests named (pins)
	// TagRegex selects tags for ByRegex.
	TagRegex *regexp.Regexp
	// Semver selects tags for BySemver: a tag in any of the ranges (one,
	// or a list as skopeo takes them). SemverText is the ranges as written.
	Semver     []*semver.Constraints
	SemverText []string
	// Options are the image's, its registry's filled in where it sets
	// none.
	Options
}

// AllTags reports whether the entry takes every tag of the repository
// (before exclude): a Listed entry with an empty list.
func (im Image) AllTags() bool {
	return im.Kind == Listed && len(im.Tags) == 0 && len(im.Digests) == 0
}

// Selects reports whether tag is one the entry takes from a listing:
// selected by its kind, and matched by no exclude pattern. A Listed entry
// naming tags selects exactly those, exclude patterns still applying.
func (im Image) Selects(tag string) bool {
	switch im.Kind {
	case ByRegex:
		if !im.TagRegex.MatchString(tag) {
			return false
		}
	case BySemver:
		v, err := semver.NewVersion(tag)
		if err != nil || !slices.ContainsFunc(im.Semver, func(c *semver.Constraints) bool { return c.Check(v) }) {
			return false
		}
	default:
		if !im.AllTags() && !slices.Contains(im.Tags, tag) {
			return false
		}
	}
	for _, re := range im.Exclude {
		if re.MatchString(tag) {
			return false
		}
	}
	return true
}

// IsImmutable reports whether tag matches one of the entry's immutable
// patterns: once in the tree, it is never asked for again.
func (im Image) IsImmutable(tag string) bool {
	for _, re := range im.Immutable {
		if re.MatchString(tag) {
			return true
		}
	}
	return false
}

// WantsReferrers reports whether the entry asks for its signatures and
// referrers to travel with it (the default): sync then brings the
// referrers of each manifest it exports, and cosign's signature,
// attestation and SBOM tags of the digests its tags name.
func (im Image) WantsReferrers() bool { return im.Referrers == nil || *im.Referrers }

// Read reads and parses at most MaxSize bytes of r.
func Read(r io.Reader) (*File, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("over %d bytes", MaxSize)
	}
	return Parse(b)
}

// Parse parses the bytes of a sync file.
func Parse(b []byte) (*File, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no registry: the file is empty")
		}
		return nil, fmt.Errorf("not valid YAML: %s", yamlMessage(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("line %d: a second YAML document; a sync file is one", extra.Line)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("no registry: the file is empty")
	}
	top := deref(doc.Content[0])
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping of registries (HOST: {images: …}), got %s", top.Line, kindName(top))
	}
	f := &File{}
	seen := map[string]int{}
	err := eachPair(top, func(k, v *yaml.Node) error {
		host := k.Value
		if prev, ok := seen[host]; ok {
			return fmt.Errorf("line %d: registry %q given twice (first on line %d)", k.Line, host, prev)
		}
		seen[host] = k.Line
		reg, err := parseRegistry(host, k, v)
		if err != nil {
			return err
		}
		f.Registries = append(f.Registries, *reg)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(f.Registries) == 0 {
		return nil, errors.New("no registry: the file is empty")
	}
	return f, nil
}

// yamlMessage is the parser's error on one line, without its "yaml: "
// prefix.
func yamlMessage(err error) string {
	return strings.Join(strings.Fields(strings.TrimPrefix(err.Error(), "yaml: ")), " ")
}

// hostPattern is a registry host as skopeo's file keys it: a DNS name or
// an IP address, an optional port; no scheme, no path.
var hostPattern = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*)(:[0-9]{1,5})?$`)

// repoPattern is a repository path below a registry, as the distribution
// spec's grammar has it.
var repoPattern = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

// digestPattern is the distribution spec's digest grammar; a sha256
// digest is further checked by go-digest (64 lowercase hex digits). Tags
// are distribution.ValidateTag's.
var digestPattern = regexp.MustCompile(`^[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)

// Transports of the stores on this machine a top-level key may name.
const (
	ContainersStorage = "containers-storage"
	DockerDaemon      = "docker-daemon"
)

// localKeys are the keys a local store's entry takes.
var localKeys = map[string]bool{"images": true, "images-by-tag-regex": true, "images-by-semver": true, "prefix": true, "exclude": true, "immutable": true}

// localStore tells a top-level key naming a store on this machine from a
// registry host: its transport ("" for a registry host) and STORE-SPEC.
func localStore(key string) (transport, store string, err error) {
	switch {
	case key == DockerDaemon:
		return DockerDaemon, "", nil
	case key == ContainersStorage, key == ContainersStorage+":":
		return ContainersStorage, "", nil
	case strings.HasPrefix(key, DockerDaemon+":"):
		return "", "", errors.New("docker-daemon takes no store specifier: the engine is the one DOCKER_HOST names")
	}
	rest, ok := strings.CutPrefix(key, ContainersStorage+":")
	if !ok {
		return "", "", nil
	}
	inside, open := strings.CutPrefix(rest, "[")
	inside, closed := strings.CutSuffix(inside, "]")
	if !open || !closed || inside == "" || strings.ContainsAny(inside, "[]") {
		return "", "", errors.New("want containers-storage or containers-storage:[STORE-SPEC], STORE-SPEC being [DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]")
	}
	return ContainersStorage, inside, nil
}

func parseRegistry(host string, k, v *yaml.Node) (*Registry, error) {
	local, store, err := localStore(host)
	reg := &Registry{Host: host, Line: k.Line, Local: local, Store: store}
	at := reg.where(k.Line)
	switch {
	case err != nil:
		return nil, fmt.Errorf("line %d: %q: %v", k.Line, host, err)
	case k.Kind != yaml.ScalarNode || (local == "" && !hostPattern.MatchString(host)):
		return nil, fmt.Errorf("%s: not a registry host (want HOST[:PORT], no scheme or path) nor a store on this machine (containers-storage, containers-storage:[STORE-SPEC], docker-daemon)", at)
	}
	if v.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: want a mapping (images: …), got %s", at, kindName(v))
	}
	var images, byRegex, bySemver *yaml.Node
	err = eachPair(v, func(k, v *yaml.Node) error {
		at := fmt.Sprintf("%s: %s", reg.where(k.Line), k.Value)
		if local != "" && !localKeys[k.Value] {
			return fmt.Errorf("%s: not for a store on this machine (want images, images-by-tag-regex, images-by-semver, prefix, exclude or immutable)", at)
		}
		switch k.Value {
		case "images":
			images = v
			return wantKind(at, v, yaml.MappingNode)
		case "images-by-tag-regex":
			byRegex = v
			return wantKind(at, v, yaml.MappingNode)
		case "images-by-semver":
			bySemver = v
			return wantKind(at, v, yaml.MappingNode)
		case "credentials":
			c, err := parseCredentials(host, at, v)
			reg.Credentials = c
			return err
		case "tls-verify":
			b, err := boolValue(at, v)
			reg.TLSVerify = &b
			return err
		case "cert-dir":
			s, err := stringValue(at, v)
			if err == nil && s == "" {
				err = fmt.Errorf("%s: empty", at)
			}
			reg.CertDir = s
			return err
		case "max-requests":
			var n int
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" || v.Decode(&n) != nil || n < 1 {
				return fmt.Errorf("%s: want a whole number of requests, at least 1, got %s", at, kindName(v))
			}
			reg.MaxRequests = n
			return nil
		case "requests-per-second":
			var r float64
			if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || v.Decode(&r) != nil || !(r > 0) || math.IsInf(r, 0) {
				return fmt.Errorf("%s: want a rate above 0, got %s", at, kindName(v))
			}
			reg.RequestsPerSecond = r
			return nil
		case "prefix":
			s, err := stringValue(at, v)
			if err != nil {
				return err
			}
			s = strings.Trim(s, "/")
			if s != "" && !repoPattern.MatchString(s) {
				return fmt.Errorf("%s %q: not a repository path (lower-case components separated by /)", at, s)
			}
			reg.Prefix = s
			return nil
		}
		ok, err := parseOption(at, k.Value, v, &reg.Options)
		if err == nil && !ok {
			err = fmt.Errorf("%s: unknown key %q (want images, images-by-tag-regex, images-by-semver, credentials, tls-verify, cert-dir, prefix, max-requests, requests-per-second, platforms, exclude, immutable or referrers)", reg.where(k.Line), k.Value)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if images == nil && byRegex == nil && bySemver == nil {
		return nil, fmt.Errorf("%s: no images, images-by-tag-regex or images-by-semver", at)
	}
	if images != nil {
		if err := eachPair(images, func(k, v *yaml.Node) error {
			im, err := parseListed(reg, k, v)
			if err != nil {
				return err
			}
			reg.Images = append(reg.Images, im)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if byRegex != nil {
		if err := eachPair(byRegex, func(k, v *yaml.Node) error {
			at, err := imageAt(reg, "images-by-tag-regex", k)
			if err != nil {
				return err
			}
			s, err := stringValue(at, v)
			if err != nil {
				return err
			}
			re, err := regexp.Compile(s)
			if err != nil {
				return fmt.Errorf("%s: regex %q does not compile: %s", at, s, regexpCause(err))
			}
			reg.Images = append(reg.Images, Image{Repo: k.Value, Line: k.Line, Kind: ByRegex, TagRegex: re})
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if bySemver != nil {
		if err := eachPair(bySemver, func(k, v *yaml.Node) error {
			at, err := imageAt(reg, "images-by-semver", k)
			if err != nil {
				return err
			}
			var ranges []string
			if v.Kind == yaml.SequenceNode {
				ranges, err = stringList(at, v)
			} else {
				var s string
				s, err = stringValue(at, v)
				ranges = []string{s}
			}
			if err != nil {
				return err
			}
			if len(ranges) == 0 {
				return fmt.Errorf("%s: no semver range", at)
			}
			im := Image{Repo: k.Value, Line: k.Line, Kind: BySemver, SemverText: ranges}
			for _, s := range ranges {
				c, err := semver.NewConstraint(s)
				if err != nil {
					return fmt.Errorf("%s: semver range %q does not parse: %v", at, s, err)
				}
				im.Semver = append(im.Semver, c)
			}
			reg.Images = append(reg.Images, im)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	for i := range reg.Images {
		inherit(&reg.Images[i].Options, reg.Options)
	}
	return reg, nil
}

// inherit fills in each option o leaves unset with the registry's.
func inherit(o *Options, reg Options) {
	if o.Platforms == nil {
		o.Platforms = reg.Platforms
	}
	if o.Exclude == nil {
		o.Exclude = reg.Exclude
	}
	if o.Immutable == nil {
		o.Immutable = reg.Immutable
	}
	if o.Referrers == nil {
		o.Referrers = reg.Referrers
	}
}

// where words a line of the entry: `line 7: registry "reg.io"`, or
// `line 7: "docker-daemon"` for a store on this machine.
func (r *Registry) where(line int) string {
	if r.Local != "" {
		return fmt.Sprintf("line %d: %q", line, r.Host)
	}
	return fmt.Sprintf("line %d: registry %q", line, r.Host)
}

// imageAt checks an image key and words where it is. A store on this
// machine names a repository with its registry host, as podman and the
// Docker Engine keep it (localhost/app, reg.io:5000/app).
func imageAt(reg *Registry, section string, k *yaml.Node) (string, error) {
	at := fmt.Sprintf("%s: %s: %q", reg.where(k.Line), section, k.Value)
	if k.Kind != yaml.ScalarNode {
		return at, fmt.Errorf("%s: not a repository name", at)
	}
	if reg.Local != "" {
		if !localRepo(k.Value) {
			return at, fmt.Errorf("%s: not a repository name as the store names it ([HOST[:PORT]/]PATH, lower-case components separated by /)", at)
		}
		return at, nil
	}
	if !repoPattern.MatchString(k.Value) {
		return at, fmt.Errorf("%s: not a repository name (lower-case components separated by /)", at)
	}
	return at, nil
}

// localRepo reports whether s is a repository as a local store names it:
// a path, after a registry host (one with a dot or a port, or localhost)
// when it has one.
func localRepo(s string) bool {
	if host, path := distribution.SplitHost(s); host != "" {
		return hostPattern.MatchString(host) && repoPattern.MatchString(path)
	}
	return repoPattern.MatchString(s)
}

// parseListed parses an entry of images: a list of tags and digests, or
// image-serve's mapping {tags: [...], platforms: …}.
func parseListed(reg *Registry, k, v *yaml.Node) (Image, error) {
	at, err := imageAt(reg, "images", k)
	if err != nil {
		return Image{}, err
	}
	im := Image{Repo: k.Value, Line: k.Line, Kind: Listed}
	var list *yaml.Node
	switch v.Kind {
	case yaml.SequenceNode:
		list = v
	case yaml.MappingNode:
		err := eachPair(v, func(ok, ov *yaml.Node) error {
			oat := fmt.Sprintf("%s: %s (line %d)", at, ok.Value, ok.Line)
			if ok.Value == "tags" {
				list = ov
				return wantKind(oat, ov, yaml.SequenceNode)
			}
			if reg.Local != "" && ok.Value != "exclude" && ok.Value != "immutable" {
				return fmt.Errorf("%s: images: %q: %s: not for a store on this machine (want tags, exclude or immutable)", reg.where(ok.Line), k.Value, ok.Value)
			}
			known, err := parseOption(oat, ok.Value, ov, &im.Options)
			if err == nil && !known {
				err = fmt.Errorf("%s: images: %q: unknown key %q (want tags, platforms, exclude, immutable or referrers)", reg.where(ok.Line), k.Value, ok.Value)
			}
			return err
		})
		if err != nil {
			return Image{}, err
		}
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			break // "repo:" alone, as "repo: []": every tag
		}
		fallthrough
	default:
		return Image{}, fmt.Errorf("%s: want a list of tags and digests ([] for every tag), got %s", at, kindName(v))
	}
	if list != nil {
		for _, e := range list.Content {
			e = deref(e)
			if e.Kind != yaml.ScalarNode {
				return Image{}, fmt.Errorf("%s: line %d: want a tag or a digest, got %s", at, e.Line, kindName(e))
			}
			switch {
			case strings.Contains(e.Value, ":") && reg.Local != "":
				return Image{}, fmt.Errorf("%s: line %d: %q: a store on this machine is synced by tag (the digest it gives is not the one the tree serves)", at, e.Line, e.Value)
			case strings.Contains(e.Value, ":"):
				if !digestPattern.MatchString(e.Value) || (strings.HasPrefix(e.Value, "sha256:") && digest.Digest(e.Value).Validate() != nil) {
					return Image{}, fmt.Errorf("%s: line %d: %q is not a valid digest", at, e.Line, e.Value)
				}
				im.Digests = append(im.Digests, e.Value)
			case distribution.ValidateTag(e.Value) == nil:
				im.Tags = append(im.Tags, e.Value)
			default:
				return Image{}, fmt.Errorf("%s: line %d: %q is not a valid tag", at, e.Line, e.Value)
			}
		}
	}
	return im, nil
}

// parseOption parses key into o if it is one of the options a registry
// and an image share; false when it is none.
func parseOption(at, key string, v *yaml.Node, o *Options) (bool, error) {
	switch key {
	case "platforms":
		list, err := stringList(at, v)
		if err != nil {
			return true, err
		}
		for _, p := range list {
			parts := strings.Split(p, "/")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" || (len(parts) == 3 && parts[2] == "") {
				return true, fmt.Errorf("%s: %q: want OS/ARCH[/VARIANT]", at, p)
			}
		}
		o.Platforms = list
	case "exclude", "immutable":
		res, err := regexList(at, v)
		if err != nil {
			return true, err
		}
		if key == "exclude" {
			o.Exclude = res
		} else {
			o.Immutable = res
		}
	case "referrers":
		b, err := boolValue(at, v)
		if err != nil {
			return true, err
		}
		o.Referrers = &b
	default:
		return false, nil
	}
	return true, nil
}

func regexList(at string, v *yaml.Node) ([]*regexp.Regexp, error) {
	list, err := stringList(at, v)
	if err != nil {
		return nil, err
	}
	res := make([]*regexp.Regexp, 0, len(list))
	for _, s := range list {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%s: regex %q does not compile: %s", at, s, regexpCause(err))
		}
		res = append(res, re)
	}
	return res, nil
}

// regexpCause is why a regex does not compile, without the pattern Go's
// error repeats.
func regexpCause(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

func parseCredentials(host, at string, v *yaml.Node) (*Credentials, error) {
	if err := wantKind(at, v, yaml.MappingNode); err != nil {
		return nil, err
	}
	c := &Credentials{}
	err := eachPair(v, func(k, v *yaml.Node) error {
		kat := fmt.Sprintf("%s: %s (line %d)", at, k.Value, k.Line)
		var err error
		switch k.Value {
		case "username":
			c.Username, err = stringValue(kat, v)
		case "password":
			c.Password, err = stringValue(kat, v)
		default:
			err = fmt.Errorf("line %d: registry %q: credentials: unknown key %q (want username and password)", k.Line, host, k.Value)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if c.Username == "" {
		return nil, fmt.Errorf("%s: no username", at)
	}
	return c, nil
}

// eachPair calls do for each key and value of mapping m, in order;
// a key that is not a scalar is refused.
func eachPair(m *yaml.Node, do func(k, v *yaml.Node) error) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], deref(m.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: want a name as key, got %s", k.Line, kindName(k))
		}
		if k.Tag == "!!merge" {
			// "<<: *defaults": the keys of the mapping (or mappings) named.
			merged := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				merged = v.Content
			}
			for _, m := range merged {
				if m = deref(m); m.Kind != yaml.MappingNode {
					return fmt.Errorf("line %d: a merge key (<<) wants a mapping, got %s", k.Line, kindName(m))
				}
				if err := eachPair(m, do); err != nil {
					return err
				}
			}
			continue
		}
		if err := do(k, v); err != nil {
			return err
		}
	}
	return nil
}

// deref follows a YAML alias to the node it names; the tree of nodes
// holds each node once, so nothing is expanded.
func deref(v *yaml.Node) *yaml.Node {
	for i := 0; v.Kind == yaml.AliasNode && v.Alias != nil && i < 8; i++ {
		v = v.Alias
	}
	return v
}

func wantKind(at string, v *yaml.Node, kind yaml.Kind) error {
	if v.Kind != kind {
		return fmt.Errorf("%s: want %s, got %s", at, kindWord(kind), kindName(v))
	}
	return nil
}

func stringValue(at string, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", fmt.Errorf("%s: want a string, got %s", at, kindName(v))
	}
	return v.Value, nil
}

func stringList(at string, v *yaml.Node) ([]string, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: want a list, got %s", at, kindName(v))
	}
	out := make([]string, 0, len(v.Content))
	for _, e := range v.Content {
		e = deref(e)
		s, err := stringValue(fmt.Sprintf("%s: line %d", at, e.Line), e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func boolValue(at string, v *yaml.Node) (bool, error) {
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		return false, fmt.Errorf("%s: want true or false, got %s", at, kindName(v))
	}
	return b, nil
}

func kindName(v *yaml.Node) string {
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", v.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return kindWord(v.Kind)
}

func kindWord(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a value"
	}
	return "something else"
}
