package exporter

import (
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
)

// SourceRef is a parsed SOURCE argument.
type SourceRef struct {
	Transport string
	// Docker: the registry reference. Others: the file or directory.
	Path string
	// The image inside Path: oci REF, docker-archive REPO:TAG or @N; "" for
	// the only one.
	Image string
	ref   name.Reference // docker only
}

func (s SourceRef) String() string {
	if s.Transport == transportDocker {
		return "docker://" + s.Path
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
		return SourceRef{}, fmt.Errorf("source %q: no transport (want docker://, oci:, oci-archive: or docker-archive:)", s)
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
	case "docker":
		return SourceRef{}, fmt.Errorf("source %q: the docker transport is written docker://HOST/REPO:TAG", s)
	default:
		return SourceRef{}, fmt.Errorf("source %q: unknown transport %q (want docker://, oci:, oci-archive: or docker-archive:)", s, transport)
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
	first, rest, ok := strings.Cut(repo, "/")
	if ok && (first == "localhost" || strings.ContainsAny(first, ".:") && registryHost.MatchString(first)) {
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
