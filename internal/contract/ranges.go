package contract

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// span is the bytes [from, to] of a file, both inclusive, as Content-Range
// writes them.
type span struct{ from, to int }

// requested is the set of bytes a "bytes=" Range header asks of a file
// of size bytes, as sorted disjoint spans: the satisfiable ranges
// clipped to the file, merged. The specs must be valid.
func requested(spec string, size int) []span {
	var spans []span
	for _, one := range strings.Split(strings.TrimPrefix(spec, "bytes="), ",") {
		first, last, _ := strings.Cut(strings.TrimSpace(one), "-")
		var s span
		switch n, _ := strconv.Atoi(last); {
		case first == "":
			s = span{max(size-n, 0), size - 1}
			if n == 0 {
				continue
			}
		case last == "":
			s.from, _ = strconv.Atoi(first)
			s.to = size - 1
		default:
			s.from, _ = strconv.Atoi(first)
			s.to = min(n, size-1)
		}
		if s.from < size {
			spans = append(spans, s)
		}
	}
	return merge(spans)
}

// merge sorts spans and joins those that overlap or touch.
func merge(spans []span) []span {
	slices.SortFunc(spans, func(a, b span) int { return a.from - b.from })
	var out []span
	for _, s := range spans {
		if n := len(out); n > 0 && s.from <= out[n-1].to+1 {
			out[n-1].to = max(out[n-1].to, s.to)
			continue
		}
		out = append(out, s)
	}
	return out
}

// rangesServed checks the answer to a Range request of spec on a file
// holding data, as every server must give it: the whole file (200, the
// Range ignored), or a 206 of exactly the bytes asked for (one
// Content-Range, or multipart/byteranges parts that together cover them),
// and never more bytes than the file itself.
func rangesServed(spec string, data []byte) check {
	return func(r *response) error {
		switch r.status {
		case http.StatusOK:
			if len(r.header.Values("Content-Range")) > 0 || !bytes.Equal(r.body, data) {
				return fmt.Errorf("200 with %d bytes and Content-Range %q, want the whole file of %d", len(r.body), r.header.Values("Content-Range"), len(data))
			}
			return nil
		case http.StatusPartialContent:
		default:
			return fmt.Errorf("status %d, want 200 (the whole file) or 206", r.status)
		}
		if len(r.body) > len(data) {
			return fmt.Errorf("206 of %d bytes for a file of %d: larger than the file itself", len(r.body), len(data))
		}
		want := requested(spec, len(data))
		mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			got, err := part(r.header.Get("Content-Range"), r.body, data)
			if err != nil {
				return err
			}
			if len(want) != 1 || got != want[0] {
				return fmt.Errorf("206 of bytes %v, want %v", got, want)
			}
			return nil
		}
		var got []span
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("multipart body: %v", err)
			}
			b, err := io.ReadAll(p)
			if err != nil {
				return fmt.Errorf("multipart body: %v", err)
			}
			s, err := part(p.Header.Get("Content-Range"), b, data)
			if err != nil {
				return fmt.Errorf("part %d: %v", len(got)+1, err)
			}
			got = append(got, s)
		}
		if merged := merge(slices.Clone(got)); !slices.Equal(merged, want) {
			return fmt.Errorf("multipart parts %v cover %v, want %v", got, merged, want)
		}
		return nil
	}
}

// part checks one Content-Range and its bytes against data and returns
// the span it names.
func part(contentRange string, b, data []byte) (span, error) {
	var s span
	var size int
	if _, err := fmt.Sscanf(contentRange, "bytes %d-%d/%d", &s.from, &s.to, &size); err != nil || size != len(data) ||
		s.from < 0 || s.from > s.to || s.to >= size {
		return s, fmt.Errorf("Content-Range %q for a file of %d bytes", contentRange, len(data))
	}
	if !bytes.Equal(b, data[s.from:s.to+1]) {
		return s, fmt.Errorf("Content-Range %q over %d bytes that are not those of the file", contentRange, len(b))
	}
	return s, nil
}

// everyOther is a Range header of n one-byte ranges with a byte between
// each: bytes=0-0,2-2,…
func everyOther(n int) string {
	specs := make([]string, n)
	for i := range specs {
		specs[i] = fmt.Sprintf("%d-%d", 2*i, 2*i)
	}
	return "bytes=" + strings.Join(specs, ",")
}
