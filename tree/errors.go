package tree

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
)

// ServerError is one error response of the registry API, identical for
// every server: Apache and nginx send the files Init writes, the embedded
// server sends Body.
type ServerError struct {
	Status  int
	Code    ErrorCode
	Message string
	file    string
}

// The error responses, by the file Init writes for the static servers.
var (
	ErrBlobUnknown     = ServerError{http.StatusNotFound, BlobUnknown, "blob unknown to registry", "blob-unknown.json"}
	ErrManifestUnknown = ServerError{http.StatusNotFound, ManifestUnknown, "manifest unknown to registry", "manifest-unknown.json"}
	ErrNotAcceptable   = ServerError{http.StatusNotAcceptable, ManifestUnknown, "manifest unknown: no variant matches the Accept header", "manifest-not-acceptable.json"}
	ErrNameUnknown     = ServerError{http.StatusNotFound, NameUnknown, "repository name not known to registry", "name-unknown.json"}
	ErrUnsupported     = ServerError{http.StatusMethodNotAllowed, Unsupported, "the operation is unsupported: this registry is read-only", "unsupported.json"}
	// ErrDigestInvalid answers a referrers request whose digest is not one
	// (distribution-spec: 400, not the empty index).
	ErrDigestInvalid = ServerError{http.StatusBadRequest, DigestInvalid, "provided digest is invalid: want sha256:<64 hex> or sha512:<128 hex>", "digest-invalid.json"}
)

var errorBodies = []ServerError{ErrBlobUnknown, ErrManifestUnknown, ErrNotAcceptable, ErrNameUnknown, ErrUnsupported, ErrDigestInvalid}

// File is the name of the body file in Root.ErrorsDir.
func (e ServerError) File() string { return e.file }

// Body is the JSON error document, {"errors":[{"code":…}]}.
func (e ServerError) Body() []byte { return e.body() }

func (e ServerError) body() []byte {
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
