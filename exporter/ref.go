package exporter

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/image-serve/image-serve/distribution"
	"github.com/image-serve/image-serve/tree"
	"github.com/opencontainers/go-digest"
)

// Transports, named as skopeo names them.
const (
	transportDocker        = "docker"
	transportOCI           = "oci"
	transportOCIArchive    = "oci-archive"
	transportDockerArchive = "docker-archive"
	// transportContainersStorage is podman's, buildah's and CRI-O's local
	// store: containers-storage:[[STORE-SPEC]]REF.
	transportContainersStorage = "containers-storage"
	// transportDockerDaemon is a Docker Engine's image store, read
	// through its API socket: docker-daemon:REF.
	transportDockerDaemon = "docker-daemon"
)

// transportList names the transports for a message about a SOURCE that
// has none, or an unknown one.
const transportList = "docker://, oci:, oci-archive:, docker-archive:, containers-storage: or docker-daemon:"

// SourceRef is a parsed SOURCE argument.
type SourceRef struct {
	Transport string
	// Docker: the registry reference. containers-storage and
	// docker-daemon: all that follows the transport. Others: the file or
	// directory.
	Path string
	// The image inside Path: oci REF, docker-archive REPO:TAG or @N; "" for
	// the only one. containers-storage and docker-daemon: the image as the
	// store names it.
	Image string
	ref   name.Reference // docker only
	// store is containers-storage's STORE-SPEC, nil when the reference
	// gives none (podman's configured store).
	store *StoreSpec
}

func (s SourceRef) String() string {
	switch s.Transport {
	case transportDocker:
		return "docker://" + s.Path
	case transportContainersStorage, transportDockerDaemon:
		return s.Transport + ":" + s.Path
	}
	if s.Image == "" {
		return s.Transport + ":" + s.Path
	}
	return s.Transport + ":" + s.Path + ":" + s.Image
}

// ParseSource parses a skopeo-style transport reference. A docker://
// reference with no tag and no digest names the tag latest.
func ParseSource(s string) (SourceRef, error) {
	if rest, ok := strings.CutPrefix(s, "docker://"); ok {
		if rest != "" && !strings.Contains(rest, "@") && !strings.Contains(rest[strings.LastIndex(rest, "/")+1:], ":") {
			// No tag and no digest: the tag is latest, as skopeo, docker
			// and podman take it.
			rest += ":latest"
		}
		ref, err := name.ParseReference(rest, name.StrictValidation)
		if err != nil {
			return SourceRef{}, fmt.Errorf("source %q: malformed docker reference: %v", s, referenceCause(rest, err))
		}
		return SourceRef{Transport: transportDocker, Path: rest, ref: ref}, nil
	}
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return SourceRef{}, fmt.Errorf("source %q: no transport (want %s)", s, transportList)
	}
	switch transport {
	case transportOCI, transportOCIArchive:
		// skopeo splits at the first colon: the path cannot hold one.
		path, image, _ := strings.Cut(rest, ":")
		if path == "" {
			return SourceRef{}, fmt.Errorf("source %q: empty path", s)
		}
		return SourceRef{Transport: transport, Path: path, Image: image}, nil
	case transportDockerArchive:
		path, image, _ := strings.Cut(rest, ":")
		if path == "" {
			return SourceRef{}, fmt.Errorf("source %q: empty path", s)
		}
		return SourceRef{Transport: transport, Path: path, Image: image}, nil
	case transportContainersStorage:
		store, image, err := ParseStoreRef(rest)
		if err != nil {
			return SourceRef{}, fmt.Errorf("source %q: %v", s, err)
		}
		return SourceRef{Transport: transport, Path: rest, Image: image, store: store}, nil
	case transportDockerDaemon:
		image, err := parseDaemonRef(rest)
		if err != nil {
			return SourceRef{}, fmt.Errorf("source %q: %v", s, err)
		}
		return SourceRef{Transport: transport, Path: rest, Image: image}, nil
	case "docker":
		return SourceRef{}, fmt.Errorf("source %q: the docker transport is written docker://HOST/REPO:TAG", s)
	default:
		return SourceRef{}, fmt.Errorf("source %q: unknown transport %q (want %s)", s, transport, transportList)
	}
}

// referenceCause is why rest is no reference. go-containerregistry's
// ParseReference only says "could not parse reference"; the parser of the
// form rest takes (by tag or by digest) says which part is wrong.
func referenceCause(rest string, err error) error {
	var specific error
	if strings.Contains(rest, "@") {
		_, specific = name.NewDigest(rest, name.StrictValidation)
	} else {
		_, specific = name.NewTag(rest, name.StrictValidation)
	}
	if specific != nil {
		return specific
	}
	return err
}

// Dest is where an image goes in the tree.
type Dest struct {
	Repo string
	Tag  string
}

func (d Dest) String() string { return d.Repo + ":" + d.Tag }

// ParseDest parses DEST, REPO[:TAG]; a missing tag defaults to def.
func ParseDest(s, defTag string) (Dest, error) {
	repo, tag := splitRepoTag(s)
	if tag == "" && repo != s {
		return Dest{}, fmt.Errorf("destination %q: empty tag", s)
	}
	if tag == "" {
		tag = defTag
	}
	if err := tree.ValidateRepo(repo); err != nil {
		return Dest{}, fmt.Errorf("destination %q: %w", s, err)
	}
	if tag == "" {
		return Dest{}, fmt.Errorf("destination %q: no tag, and the source names none", s)
	}
	if err := distribution.ValidateTag(tag); err != nil {
		return Dest{}, fmt.Errorf("destination %q: %w", s, err)
	}
	return Dest{Repo: repo, Tag: tag}, nil
}

// splitRepoTag splits "repo:tag" (distribution.SplitTag); tag is "" when
// s names none.
func splitRepoTag(s string) (repo, tag string) {
	repo, tag, _ = distribution.SplitTag(s)
	return repo, tag
}

// stripRegistry drops a leading registry host (a first component with a
// dot or a colon, or localhost) as docker does when it names a repository.
func stripRegistry(repo string) string {
	if host, rest := distribution.SplitHost(repo); host != "" && registryHost.MatchString(host) {
		return rest
	}
	return repo
}

// registryHost is a host name or bracketed IPv6 address with an optional
// port: ".." is not one, so a source naming "../app" is refused, not
// exported as "app".
var registryHost = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// defaultDest is the destination when DEST is omitted: the repository path
// the source names, without its registry, and its tag.
func defaultDest(src SourceRef, imageName string) (string, error) {
	switch src.Transport {
	case transportDocker:
		repo := src.ref.Context().RepositoryStr()
		if t, ok := src.ref.(name.Tag); ok {
			return repo + ":" + t.TagStr(), nil
		}
		return "", fmt.Errorf("source %s is named by digest: give DEST as REPO:TAG", src)
	case transportContainersStorage, transportDockerDaemon:
		// The store's own name for the image, as the reference gives it
		// (a short name as podman completes it), else the first name the
		// saved image carries: an image ID names no repository.
		if n := localImageName(src.Image); n != "" {
			imageName = n
		}
		if imageName == "" || !strings.ContainsAny(imageName, "/:") {
			return "", fmt.Errorf("source %s names no repository and tag: give DEST as REPO:TAG", src)
		}
		repo, tag := splitRepoTag(imageName)
		return stripRegistry(repo) + ":" + tag, nil
	default:
		// imageName is what the archive or layout calls the image, if it
		// names it: "repo:tag", or a bare tag in an OCI layout.
		if imageName != "" && strings.ContainsAny(imageName, "/:") {
			repo, tag := splitRepoTag(imageName)
			return stripRegistry(repo) + ":" + tag, nil
		}
		base := strings.ToLower(strings.TrimSuffix(filepath.Base(src.Path), filepath.Ext(src.Path)))
		if imageName == "" {
			imageName = "latest"
		}
		return base + ":" + imageName, nil
	}
}

// digestOf returns the digest a docker reference pins, if any.
func (s SourceRef) digestOf() digest.Digest {
	if d, ok := s.ref.(name.Digest); ok {
		return digest.Digest(d.DigestStr())
	}
	return ""
}

// CheckJob checks what the text of a job alone tells, before any source
// is opened: SOURCE's transport and reference grammar, and, when DEST is
// given, its repository and tag grammar. A job it passes may still fail
// on what the source holds.
func CheckJob(j Job) error {
	if _, err := ParseSource(j.Source); err != nil {
		return err
	}
	if j.Dest == "" {
		return nil
	}
	// The source's tag is known only once it is opened; any valid tag
	// stands in for it here.
	_, err := ParseDest(j.Dest, "latest")
	return err
}

// StoreSpec is the store specifier of a containers-storage: reference,
// [[DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]] as containers-transports(5)
// writes it: which store podman is to read instead of its configured one.
type StoreSpec struct {
	Driver    string   // the storage driver ("overlay", "vfs"); "": the store's own
	GraphRoot string   // the store's root directory, an absolute path
	RunRoot   string   // its run directory, an absolute path; "": podman's default
	Options   []string // driver options, one --storage-opt each
}

// String writes s back in the syntax ParseStoreRef reads, without the
// brackets.
func (s StoreSpec) String() string {
	var b strings.Builder
	if s.Driver != "" {
		b.WriteString(s.Driver + "@")
	}
	b.WriteString(s.GraphRoot)
	if s.RunRoot != "" {
		b.WriteString("+" + s.RunRoot)
	}
	if len(s.Options) > 0 {
		b.WriteString(":" + strings.Join(s.Options, ","))
	}
	return b.String()
}

// storeDriver is what a storage driver's name looks like: a word, never
// something podman could take for a flag.
var storeDriver = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// imageID is a full image ID, 64 hex digits with no algorithm.
var imageID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseStoreRef parses what follows "containers-storage:":
// [[STORE-SPEC]]REF, where REF is an image ID, or NAME[:TAG][@DIGEST]
// optionally followed by @ID. It splits the specifier as containers/image
// does (driver at the first @, options at the first colon after it, run
// root at the first +), and, stricter than containers/image, requires
// the graph root: it is where the store's locks are looked at. It returns
// a nil StoreSpec when the reference gives none.
func ParseStoreRef(s string) (*StoreSpec, string, error) {
	var spec *StoreSpec
	if rest, ok := strings.CutPrefix(s, "["); ok {
		inside, image, ok := strings.Cut(rest, "]")
		if !ok {
			return nil, "", fmt.Errorf("store specifier %q: no closing ]", s)
		}
		sp, err := parseStoreSpec(inside)
		if err != nil {
			return nil, "", err
		}
		spec, s = &sp, image
	}
	if err := checkStoreImage(s); err != nil {
		return nil, "", err
	}
	return spec, s, nil
}

func parseStoreSpec(s string) (StoreSpec, error) {
	var spec StoreSpec
	bad := func(format string, args ...any) (StoreSpec, error) {
		return StoreSpec{}, fmt.Errorf("store specifier [%s]: %s (want [[DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS]])", s, fmt.Sprintf(format, args...))
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return bad("a control character")
	}
	rest := s
	if driver, after, ok := strings.Cut(rest, "@"); ok {
		if !storeDriver.MatchString(driver) {
			return bad("driver %q is not a driver name", driver)
		}
		spec.Driver, rest = driver, after
	}
	rest, opts, ok := strings.Cut(rest, ":")
	if ok {
		for o := range strings.SplitSeq(opts, ",") {
			if o == "" || strings.HasPrefix(o, "-") {
				return bad("option %q is not a driver option", o)
			}
			spec.Options = append(spec.Options, o)
		}
	}
	spec.GraphRoot, spec.RunRoot, _ = strings.Cut(rest, "+")
	switch {
	case spec.GraphRoot == "":
		return bad("no graph root")
	case !filepath.IsAbs(spec.GraphRoot):
		return bad("graph root %q is not an absolute path", spec.GraphRoot)
	case spec.RunRoot != "" && !filepath.IsAbs(spec.RunRoot):
		return bad("run root %q is not an absolute path", spec.RunRoot)
	}
	return spec, nil
}

// checkStoreImage checks a containers-storage image reference: an image
// ID, or a name (a short one as podman completes it, a tag, a digest),
// optionally with @ID after it.
func checkStoreImage(s string) error {
	if s == "" {
		return errors.New("no image: want containers-storage:[[STORE-SPEC]]REF")
	}
	if imageID.MatchString(s) {
		return nil
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 && imageID.MatchString(s[i+1:]) {
		s = s[:i]
	}
	if _, _, err := splitLocalName(s); err != nil {
		return fmt.Errorf("image %q: %v", s, err)
	}
	return nil
}

// splitLocalName splits NAME[:TAG][@DIGEST] as a local store names an
// image, checking each part's grammar: repo keeps its registry host, if
// it has one, and tag is "" when none is given.
func splitLocalName(s string) (repo, tag string, err error) {
	named, dig, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if err := distribution.ValidateDigest(digest.Digest(dig)); err != nil {
			return "", "", err
		}
	}
	repo, tag, hasTag := distribution.SplitTag(named)
	if hasTag {
		if err := distribution.ValidateTag(tag); err != nil {
			return "", "", err
		}
	}
	if repo == "" {
		return "", "", errors.New("no repository name")
	}
	// A short name ("app") is a name, which podman and the engine
	// complete themselves; a registry host is optional.
	host, path := distribution.SplitHost(repo)
	if host != "" && !registryHost.MatchString(host) {
		return "", "", fmt.Errorf("invalid registry host %q", host)
	}
	if err := distribution.ValidateRepo(path); err != nil {
		return "", "", err
	}
	return repo, tag, nil
}

// localImageName is the "repo:tag" a local image reference names (tag
// latest when it gives none), or "" when it names none: an image ID, or a
// name pinned by digest, which names no tag to export it as.
func localImageName(image string) string {
	if imageID.MatchString(image) || strings.HasPrefix(image, "sha256:") {
		return ""
	}
	if i := strings.LastIndexByte(image, '@'); i >= 0 && imageID.MatchString(image[i+1:]) {
		image = image[:i]
	}
	repo, tag, err := splitLocalName(image)
	if err != nil || strings.Contains(image, "@") {
		return ""
	}
	if tag == "" {
		tag = "latest"
	}
	return repo + ":" + tag
}

// parseDaemonRef checks a docker-daemon: image reference: NAME[:TAG]
// (tag latest when none is given) or sha256:ID. A Docker Engine saves
// images by these; skopeo's docker-daemon: takes no digest either.
func parseDaemonRef(s string) (string, error) {
	if id, ok := strings.CutPrefix(s, "sha256:"); ok {
		if !imageID.MatchString(id) {
			return "", fmt.Errorf("image ID %q: want sha256: and 64 hex digits", s)
		}
		return s, nil
	}
	if s == "" {
		return "", errors.New("no image: want docker-daemon:NAME[:TAG] or docker-daemon:sha256:ID")
	}
	if strings.Contains(s, "@") {
		return "", fmt.Errorf("image %q: docker-daemon: names an image by NAME[:TAG] or sha256:ID, not by digest", s)
	}
	repo, tag, err := splitLocalName(s)
	if err != nil {
		return "", fmt.Errorf("image %q: %v", s, err)
	}
	if tag == "" {
		tag = "latest"
	}
	return repo + ":" + tag, nil
}
