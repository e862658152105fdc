package distribution

import (
	"encoding/json"
	"net/http"
)

// ErrorCode is an OCI distribution error code.
type ErrorCode string

// The error codes a read-only registry answers with.
const (
	BlobUnknown     ErrorCode = "BLOB_UNKNOWN"
	DigestInvalid   ErrorCode = "DIGEST_INVALID"
	ManifestUnknown ErrorCode = "MANIFEST_UNKNOWN"
	NameUnknown     ErrorCode = "NAME_UNKNOWN"
	Unsupported     ErrorCode = "UNSUPPORTED"
	Unavailable     ErrorCode = "UNAVAILABLE"
)

// Error is one error response of the registry API, identical for every
// server. Name identifies it among Errors (the static servers send a file
// named after it); it is not sent to clients.
type Error struct {
	Status  int
	Code    ErrorCode
	Message string
	Name    string
}

// The error responses of a read-only registry.
var (
	ErrBlobUnknown     = Error{http.StatusNotFound, BlobUnknown, "blob unknown to registry", "blob-unknown"}
	ErrManifestUnknown = Error{http.StatusNotFound, ManifestUnknown, "manifest unknown to registry", "manifest-unknown"}
	ErrNotAcceptable   = Error{http.StatusNotAcceptable, ManifestUnknown, "manifest unknown: no variant matches the Accept header", "manifest-not-acceptable"}
	ErrNameUnknown     = Error{http.StatusNotFound, NameUnknown, "repository name not known to registry", "name-unknown"}
	ErrUnsupported     = Error{http.StatusMethodNotAllowed, Unsupported, "the operation is unsupported: this registry is read-only", "unsupported"}
	// ErrDigestInvalid answers a referrers request whose digest is not one
	// (distribution-spec: 400, not the empty index).
	ErrDigestInvalid = Error{http.StatusBadRequest, DigestInvalid, "provided digest is invalid: want sha256:<64 hex> or sha512:<128 hex>", "digest-invalid"}
	// ErrTooManyConnections answers a connection past the embedded
	// server's limit. It is not among Errors: Apache and nginx have
	// limits of their own and no file of the tree answers it.
	ErrTooManyConnections = Error{http.StatusServiceUnavailable, Unavailable, "service unavailable: too many connections, try again", "unavailable"}
)

// Errors lists every error response above.
func Errors() []Error {
	return []Error{ErrBlobUnknown, ErrManifestUnknown, ErrNotAcceptable, ErrNameUnknown, ErrUnsupported, ErrDigestInvalid}
}

// Body is the JSON error document, {"errors":[{"code":…}]}, with a
// trailing newline.
func (e Error) Body() []byte {
	type entry struct {
		Code    ErrorCode `json:"code"`
		Message string    `json:"message"`
		Detail  any       `json:"detail"`
	}
	b, _ := json.Marshal(struct {
		Errors []entry `json:"errors"`
	}{[]entry{{e.Code, e.Message, nil}}})
	return append(b, '\n')
}
