package server

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestLimitRange: what ServeContent gets to see of a Range header.
func TestLimitRange(t *testing.T) {
	many := "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", maxRangeSpecs+1), ",")
	tests := []struct {
		spec string
		size int64
		want string
	}{
		{"bytes=0-9", 1200, "bytes=0-9"},
		{"bytes=10-", 1200, "bytes=10-1199"},
		{"bytes=0-99999", 1200, "bytes=0-1199"},
		{"bytes=-10", 1200, "bytes=1190-1199"},
		{"bytes=-5000", 1200, "bytes=0-1199"},
		{"bytes= 0 - 9 ", 1200, "bytes=0-9"},
		// unsatisfiable: a start past the end, the zero-length suffix
		{"bytes=1200-", 1200, "bytes=1200-"},
		{"bytes=-0", 1200, "bytes=1200-"},
		{"bytes=-0,-00,1300-1400", 1200, "bytes=1200-"},
		{"bytes=0-9,-0", 1200, "bytes=0-9"},
		{"bytes=0-9,,", 1200, "bytes=0-9"},
		// coalesced: overlapping, touching, in any order
		{"bytes=0-9,5-19", 1200, "bytes=0-19"},
		{"bytes=10-19,0-9", 1200, "bytes=0-19"},
		{"bytes=0-,0-,0-", 1200, "bytes=0-1199"},
		{"bytes=100-100,0-0", 1200, "bytes=0-0,100-100"},
		// several parts only while the multipart answer is no larger than the file
		{"bytes=0-0,100-100", 1200, "bytes=0-0,100-100"},
		{"bytes=0-0,100-100", 300, ""},
		{"bytes=0-598,600-1199", 1200, ""},
		{many, 1 << 30, ""},
		{"bytes=0-9", 0, ""},
		// not a bytes range set: ServeContent's own 416
		{"bytes=5-3", 1200, "bytes=5-3"},
		{"bytes=abc", 1200, "bytes=abc"},
		{"bytes=0-9x", 1200, "bytes=0-9x"},
		{"bytes=--5", 1200, "bytes=--5"},
		{"items=0-9", 1200, "items=0-9"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s of %d", tc.spec, tc.size), func(t *testing.T) {
			if got := limitRange(tc.spec, tc.size, blobType); got != tc.want {
				t.Errorf("limitRange(%q, %d) = %q, want %q", tc.spec, tc.size, got, tc.want)
			}
		})
	}
}

// TestRanges: what a client asking for byte ranges of a blob gets. A
// multi-range answer is never larger than the blob, and its size is the
// one limitRange computed.
func TestRanges(t *testing.T) {
	f := build(t)
	base := start(t, f)
	layer := "/v2/" + f.repo + "/blobs/" + f.layer.d.String()
	data := f.layer.data
	size := len(data)
	total := "/" + strconv.Itoa(size)
	type part struct{ from, to int } // inclusive
	tests := []struct {
		name   string
		spec   string
		status int
		parts  []part // 206: the parts, in order
	}{
		{"one", "bytes=0-9", http.StatusPartialContent, []part{{0, 9}}},
		{"suffix", "bytes=-10", http.StatusPartialContent, []part{{size - 10, size - 1}}},
		{"end past the size", "bytes=1000-99999", http.StatusPartialContent, []part{{1000, size - 1}}},
		{"zero-length suffix", "bytes=-0", http.StatusRequestedRangeNotSatisfiable, nil},
		{"overlapping, coalesced", "bytes=0-9,5-19", http.StatusPartialContent, []part{{0, 19}}},
		{"two", "bytes=100-109,0-0", http.StatusPartialContent, []part{{0, 0}, {100, 109}}},
		{"larger than the file as multipart", "bytes=0-598,600-1199", http.StatusOK, nil},
		{"hundreds, disjoint", everyOther(600), http.StatusOK, nil},
		{"thousands, overlapping", "bytes=" + strings.TrimSuffix(strings.Repeat("0-9,", 2000), ","), http.StatusOK, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, base, http.MethodGet, layer, hdr("Range", tc.spec))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d", r.status, tc.status)
			}
			if cl := r.header.Get("Content-Length"); tc.status != http.StatusRequestedRangeNotSatisfiable && cl != strconv.Itoa(len(r.body)) {
				t.Errorf("Content-Length %s for a body of %d bytes", cl, len(r.body))
			}
			switch {
			case tc.status == http.StatusOK:
				if !bytes.Equal(r.body, data) {
					t.Errorf("200 with %d bytes, want the whole blob", len(r.body))
				}
			case tc.status == http.StatusRequestedRangeNotSatisfiable:
				if got := r.header.Get("Content-Range"); got != "bytes */"+strconv.Itoa(size) {
					t.Errorf("Content-Range %q, want bytes */%d", got, size)
				}
			case len(tc.parts) == 1:
				p := tc.parts[0]
				if got, want := r.header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d", p.from, p.to)+total; got != want {
					t.Errorf("Content-Range %q, want %q", got, want)
				}
				if !bytes.Equal(r.body, data[p.from:p.to+1]) {
					t.Errorf("body %q, want bytes %d-%d", r.body, p.from, p.to)
				}
			default:
				if len(r.body) > size {
					t.Errorf("multipart answer of %d bytes for a blob of %d", len(r.body), size)
				}
				var ranges []byteRange
				for _, p := range tc.parts {
					ranges = append(ranges, byteRange{int64(p.from), int64(p.to)})
				}
				if want := multipartSize(ranges, int64(size), blobType); int64(len(r.body)) != want {
					t.Errorf("multipart answer of %d bytes, limitRange computed %d", len(r.body), want)
				}
				checkParts(t, r, data, func(i int) (int, int) { return tc.parts[i].from, tc.parts[i].to }, len(tc.parts))
			}
		})
	}
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

// checkParts checks a multipart/byteranges body: n parts, part i the
// bytes want(i) of data.
func checkParts(t *testing.T, r result, data []byte, want func(i int) (from, to int), n int) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q, want multipart/byteranges", r.header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			if i != n {
				t.Errorf("%d parts, want %d", i, n)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= n {
			t.Fatalf("more than %d parts", n)
		}
		from, to := want(i)
		got, _ := io.ReadAll(p)
		if cr := p.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", from, to, len(data)) || !bytes.Equal(got, data[from:to+1]) {
			t.Errorf("part %d: %s, %q; want bytes %d-%d", i, cr, got, from, to)
		}
	}
}
