package tree

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLayerIndex: an index written is read back; one damaged in place,
// one holding another layer's list, and one over nothing are refused,
// never trusted; gc's sweep drops those whose layer went and the
// temporary files of crashed writers, and keeps the rest.
func TestLayerIndex(t *testing.T) {
	r := newTree(t)
	kept, gone := digest.FromString("kept layer"), digest.FromString("gone layer")
	list := []byte(`[{"path":"etc","type":"dir","seq":0}]`)
	inspect(t, r, func(v *View) {
		if _, ok := v.ReadLayerIndex(kept); ok {
			t.Error("an index never written was read")
		}
		for _, d := range []digest.Digest{kept, gone} {
			if err := v.WriteLayerIndex(d, list); err != nil {
				t.Fatal(err)
			}
		}
		if got, ok := v.ReadLayerIndex(kept); !ok || string(got) != string(list) {
			t.Errorf("read back %q, %v", got, ok)
		}
		if err := v.WriteLayerIndex("sha256:nope", list); err == nil {
			t.Error("an index for no digest was written")
		}
	})
	path := r.layerIndexPath(kept)
	if want := filepath.Join(r.Dir(), ".image-serve", "layers", kept.String()); path != want {
		t.Fatalf("layerIndexPath = %s, want %s", path, want)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := []struct {
		name string
		data []byte
	}{
		{"a byte of the list changed", append(good[:len(good)-2:len(good)-2], 'X', good[len(good)-1])},
		{"truncated", good[:len(good)-5]},
		{"no header", list},
		{"another layer's", mustRead(t, r.layerIndexPath(gone))},
	}
	for _, d := range damaged {
		if err := os.WriteFile(path, d.data, 0o644); err != nil {
			t.Fatal(err)
		}
		inspect(t, r, func(v *View) {
			if got, ok := v.ReadLayerIndex(kept); ok {
				t.Errorf("%s: read as sound: %q", d.name, got)
			}
		})
	}
	tmp := filepath.Join(filepath.Dir(path), "."+kept.String()+"12345")
	if err := os.WriteFile(tmp, good, 0o644); err != nil {
		t.Fatal(err)
	}
	err = r.Maintain(MaintainOptions{}, func(m *Maint) error {
		n, err := m.SweepLayerIndexes(func(d digest.Digest) bool { return d == kept })
		if n != 2 {
			t.Errorf("swept %d files, want 2 (the gone layer's index, a temporary file)", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{r.layerIndexPath(gone), tmp} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", p, err)
		}
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the kept layer's index: %v", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
