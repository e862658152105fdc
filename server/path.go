package server

import (
	"net/http"
	"strings"

	"github.com/image-serve/image-serve/distribution"
)

// requestPath returns the path Apache matches its rules against: decoded
// once, runs of slashes merged (MergeSlashes On) and "." and ".." segments
// resolved. Like Apache it refuses an encoded slash or NUL with a 404
// (AllowEncodedSlashes Off), and a path that does not start with "/" or
// climbs above the root with a 400, before any LocationMatch applies, so
// these carry the server-wide body.
func requestPath(r *http.Request) (string, *distribution.Error) {
	if strings.Contains(strings.ToLower(r.URL.EscapedPath()), "%2f") || strings.ContainsRune(r.URL.Path, 0) {
		return "", &distribution.ErrNameUnknown
	}
	p, ok := normalize(r.URL.Path)
	if !ok {
		return "", &errBadPath
	}
	return p, nil
}

// normalize merges slashes and resolves dot segments as Apache's
// ap_normalize_path does: a path that ends in "/", "/." or "/.." keeps a
// trailing slash, and ".." above the root is refused, as is a path that is
// not absolute ("GET *").
func normalize(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		switch s {
		case "", ".":
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
		default:
			out = append(out, s)
		}
	}
	n := "/" + strings.Join(out, "/")
	if last := segs[len(segs)-1]; len(out) > 0 && (last == "" || last == "." || last == "..") {
		n += "/"
	}
	return n, true
}
