package server

import (
	"cmp"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxRangeSpecs is the most byte ranges one Range header may ask for.
// Beyond it the whole representation is sent, as Apache does past its
// MaxRanges: clients resume a download with one range, and thousands of
// tiny ones are an amplification attack (docs/http-contract.md).
const maxRangeSpecs = 8

// serveContent is http.ServeContent with the Range limits of the contract
// (docs/http-contract.md, "Byte ranges"): the Range header is first
// reduced by limitRange to one ServeContent answers right. Conditional
// requests (If-Range included) are still ServeContent's, so a stale
// If-Range still gets the whole representation.
func serveContent(w http.ResponseWriter, r *http.Request, modtime time.Time, content io.ReadSeeker) {
	if spec := r.Header.Get("Range"); spec != "" {
		size, err := content.Seek(0, io.SeekEnd)
		if err == nil {
			_, err = content.Seek(0, io.SeekStart)
		}
		if err != nil {
			// ServeContent seeks the same way and answers 500 itself.
			http.ServeContent(w, r, "", modtime, content)
			return
		}
		if limited := limitRange(spec, size, w.Header().Get("Content-Type")); limited != spec {
			r = r.Clone(r.Context())
			if limited == "" {
				r.Header.Del("Range")
			} else {
				r.Header.Set("Range", limited)
			}
		}
	}
	http.ServeContent(w, r, "", modtime, content)
}

// byteRange is the bytes [start, end] of a representation, both inclusive
// as in Content-Range.
type byteRange struct{ start, end int64 }

// limitRange returns the Range header to hand to http.ServeContent for
// spec on a representation of size bytes and type contentType: "" to send
// the whole representation (200), spec itself when ServeContent already
// answers it right, and otherwise an equivalent it does:
//
//   - more than maxRangeSpecs ranges, or an empty representation: "";
//   - no satisfiable range (all start past the end, or are the zero-length
//     suffix "-0", which ServeContent would answer with an impossible
//     Content-Range): "bytes=<size>-", which ServeContent answers 416
//     with "Content-Range: bytes */<size>";
//   - otherwise the satisfiable ranges sorted and coalesced where they
//     overlap or touch: one range gets a plain 206, several a
//     multipart/byteranges 206 only while that answer, part headers and
//     boundaries included, is no larger than the representation itself;
//     a larger one is "".
//
// A spec that is not a syntactically valid bytes range set is returned
// unchanged: ServeContent refuses it with 416.
func limitRange(spec string, size int64, contentType string) string {
	if strings.Count(spec, ",") >= maxRangeSpecs || size == 0 {
		return ""
	}
	ranges, ok := parseRangeSet(spec, size)
	if !ok {
		return spec
	}
	if len(ranges) == 0 {
		return fmt.Sprintf("bytes=%d-", size)
	}
	ranges = coalesce(ranges)
	if len(ranges) > 1 && multipartSize(ranges, size, contentType) > size {
		return ""
	}
	parts := make([]string, len(ranges))
	for i, ra := range ranges {
		parts[i] = fmt.Sprintf("%d-%d", ra.start, ra.end)
	}
	return "bytes=" + strings.Join(parts, ",")
}

// parseRangeSet parses an RFC 9110 "bytes=" range set against size and
// returns its satisfiable ranges, clipped to the representation; ok is
// false if the syntax is invalid.
func parseRangeSet(spec string, size int64) (ranges []byteRange, ok bool) {
	set, found := strings.CutPrefix(spec, "bytes=")
	if !found {
		return nil, false
	}
	for _, one := range strings.Split(set, ",") {
		one = textproto.TrimString(one)
		if one == "" {
			continue // RFC 9110 list syntax allows empty elements
		}
		first, last, found := strings.Cut(one, "-")
		if !found {
			return nil, false
		}
		first, last = textproto.TrimString(first), textproto.TrimString(last)
		if first == "" { // suffix range "-n": the last n bytes
			n, ok := digits(last)
			if !ok {
				return nil, false
			}
			if n == 0 {
				continue // unsatisfiable
			}
			ranges = append(ranges, byteRange{max(size-n, 0), size - 1})
			continue
		}
		start, ok := digits(first)
		if !ok {
			return nil, false
		}
		end := size - 1
		if last != "" {
			if end, ok = digits(last); !ok || end < start {
				return nil, false
			}
		}
		if start >= size {
			continue // unsatisfiable
		}
		ranges = append(ranges, byteRange{start, min(end, size-1)})
	}
	return ranges, true
}

// digits parses a non-empty run of decimal digits.
func digits(s string) (int64, bool) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// coalesce sorts ranges and merges those that overlap or touch, which RFC
// 9110 (14.2) allows whatever order they were asked in.
func coalesce(ranges []byteRange) []byteRange {
	slices.SortFunc(ranges, func(a, b byteRange) int { return cmp.Compare(a.start, b.start) })
	out := ranges[:1]
	for _, ra := range ranges[1:] {
		last := &out[len(out)-1]
		if ra.start <= last.end+1 {
			last.end = max(last.end, ra.end)
			continue
		}
		out = append(out, ra)
	}
	return out
}

// multipartSize is the length of the multipart/byteranges body
// ServeContent sends for ranges, computed as it computes its
// Content-Length: the same part headers and a boundary of the same length.
func multipartSize(ranges []byteRange, size int64, contentType string) int64 {
	var cw countingWriter
	mw := multipart.NewWriter(&cw)
	var n int64
	for _, ra := range ranges {
		_, _ = mw.CreatePart(textproto.MIMEHeader{
			"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", ra.start, ra.end, size)},
			"Content-Type":  {contentType},
		})
		n += ra.end - ra.start + 1
	}
	_ = mw.Close()
	return n + int64(cw)
}

type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}
