package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/image-serve/image-serve/imagefs"
	"github.com/image-serve/image-serve/tree"
)

// maxDiffCells bounds the work of one line diff: the product of the two
// files' line counts.
const maxDiffCells = 16 << 20

var errTooBig = errors.New("over the limit")

// readFile returns the bytes of node n of img, at most limit of them
// (errTooBig past it).
func readFile(v *tree.View, img *ImageLayers, n *imagefs.Node, limit int64, o LayerOptions) ([]byte, error) {
	if n.DataLayer < 0 {
		return nil, ErrNotRegular
	}
	if n.Size > limit {
		return nil, errTooBig
	}
	l := img.Layers[n.DataLayer]
	rc, err := openLayer(v, img.Repository, l, o)
	if err != nil {
		return nil, &LayerError{l, err}
	}
	defer rc.Close()
	var b bytes.Buffer
	if err := imagefs.Extract(rc, n.DataSeq, &b); err != nil {
		return nil, &LayerError{l, err}
	}
	return b.Bytes(), nil
}

// ContentDiff is the unified diff of a changed path whose content
// changed, from image a to image b, when both are text files of at most
// limit bytes; "" otherwise (a note when they are too large to compare).
func ContentDiff(v *tree.View, a, b *ImageLayers, ch imagefs.Change, limit int64, o LayerOptions) (string, error) {
	if !slices.Contains(ch.What, imagefs.ChangedContent) || ch.Old.DataLayer < 0 || ch.New.DataLayer < 0 {
		return "", nil
	}
	x, err := readFile(v, a, ch.Old, limit, o)
	if errors.Is(err, errTooBig) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	y, err := readFile(v, b, ch.New, limit, o)
	if errors.Is(err, errTooBig) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if !isText(x) || !isText(y) {
		return "", nil
	}
	return unified("a/"+ch.Path, "b/"+ch.Path, x, y), nil
}

func isText(b []byte) bool { return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 }

func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := strings.SplitAfter(string(b), "\n")
	if s[len(s)-1] == "" {
		s = s[:len(s)-1]
	}
	return s
}

// unified is the unified diff (three lines of context) from x to y.
func unified(nameX, nameY string, x, y []byte) string {
	a, b := lines(x), lines(y)
	if len(a)*len(b) > maxDiffCells {
		return fmt.Sprintf("(%s: too many lines to compare)\n", nameY)
	}
	// The longest common subsequence, by dynamic programming from the end.
	n, m := len(a), len(b)
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte // ' ', '-', '+'
		text string
		i, j int // line numbers before the op, from 0
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, op{' ', a[i], i, j})
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i], i, j})
			i++
		default:
			ops = append(ops, op{'+', b[j], i, j})
			j++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameX, nameY)
	const context = 3
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		start := max(k-context, 0)
		end := k
		for end < len(ops) {
			if ops[end].kind != ' ' {
				end++
				continue
			}
			run := end
			for run < len(ops) && ops[run].kind == ' ' {
				run++
			}
			if run == len(ops) || run-end > 2*context {
				end = min(end+context, len(ops))
				break
			}
			end = run
		}
		var ca, cb int
		for _, o := range ops[start:end] {
			if o.kind != '+' {
				ca++
			}
			if o.kind != '-' {
				cb++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(ops[start].i, ca), hunkRange(ops[start].j, cb))
		for _, o := range ops[start:end] {
			out.WriteByte(o.kind)
			out.WriteString(o.text)
			if !strings.HasSuffix(o.text, "\n") {
				out.WriteString("\n\\ No newline at end of file\n")
			}
		}
		k = end
	}
	return out.String()
}

func hunkRange(from, count int) string {
	if count == 0 {
		return fmt.Sprintf("%d,0", from)
	}
	if count == 1 {
		return fmt.Sprint(from + 1)
	}
	return fmt.Sprintf("%d,%d", from+1, count)
}
