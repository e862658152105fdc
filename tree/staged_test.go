package tree

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// stageAll is a Stage hook handing over every blob of images a Stager
// wants and the tree does not hold, as bodies gives it (the blob's bytes
// by default), then waiting for their checks.
func stageAll(images []*testImage, bodies map[digest.Digest]io.Reader) func(context.Context, *Stager) error {
	return func(_ context.Context, s *Stager) error {
		seen := map[digest.Digest]bool{}
		for _, ti := range images {
			for _, b := range ti.Blobs {
				if seen[b.Digest] || !s.Wants(b.Digest) || s.Holds(b.Digest, b.Size) {
					continue
				}
				seen[b.Digest] = true
				body, ok := bodies[b.Digest]
				if !ok {
					rc, err := b.Fetch(context.Background())
					if err != nil {
						return err
					}
					body = rc
				}
				if _, err := s.Stage(b.Digest, b.Size, body); err != nil {
					return err
				}
			}
		}
		return s.Wait()
	}
}

// incomingFiles lists what the incoming directory holds.
func incomingFiles(t *testing.T, r *Root) []string {
	t.Helper()
	entries, err := os.ReadDir(r.incomingDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestPublishStaged: blobs staged before the transfers are renamed into
// their repository, never fetched; a staged blob two images share is
// moved into the first and linked into the second; a blob the tree holds
// is not staged; nothing is left in the incoming directory.
func TestPublishStaged(t *testing.T) {
	r := newTree(t)
	held := []byte("held layer")
	first := newTestImage("base/os", "v1", held)
	if _, err := r.Publish(context.Background(), []Image{first.Image}, PublishOptions{}); err != nil {
		t.Fatal(err)
	}
	shared := bytes.Repeat([]byte("shared layer "), 100_000) // several chunks
	a, b := newTestImage("a", "v1", held, shared, []byte("a's own")), newTestImage("ns/b", "v1", shared)
	images := []*testImage{a, b}
	var staged []digest.Digest
	stage := func(ctx context.Context, s *Stager) error {
		for _, ti := range images {
			for _, bl := range ti.Blobs {
				if s.Wants(bl.Digest) && !s.Holds(bl.Digest, bl.Size) && !contains(staged, bl.Digest) {
					staged = append(staged, bl.Digest)
				}
			}
		}
		return stageAll(images, nil)(ctx, s)
	}
	rep, err := r.Publish(context.Background(), []Image{a.Image, b.Image}, PublishOptions{Jobs: 1, AllOrNothing: true, Stage: stage})
	if err != nil {
		t.Fatal(err)
	}
	if want := []digest.Digest{digest.FromBytes(shared), digest.FromBytes([]byte("a's own"))}; fmt.Sprint(staged) != fmt.Sprint(want) {
		t.Errorf("staged %v, want %v (not the held layer)", staged, want)
	}
	// Stage called each Fetch once, for its bytes; Publish none.
	if n := a.fetches.Load(); n != 2 {
		t.Errorf("a's blobs fetched %d times, want 2 (by the stage, not Publish)", n)
	}
	if n := b.fetches.Load(); n != 0 {
		t.Errorf("b's blob fetched %d times, want 0", n)
	}
	wantOutcomes := [][]BlobOutcome{{BlobLinked, BlobFetched, BlobFetched}, {BlobLinked}}
	for i, ti := range images {
		res := rep.Images[i]
		if res.Err != nil {
			t.Fatalf("%s: %v", ti.Repo, res.Err)
		}
		for j, br := range res.Blobs {
			if br.Outcome != wantOutcomes[i][j] {
				t.Errorf("%s blob %d: outcome %v, want %v", ti.Repo, j, br.Outcome, wantOutcomes[i][j])
			}
			if br.Size != ti.Blobs[j].Size {
				t.Errorf("%s blob %d: size %d, want %d", ti.Repo, j, br.Size, ti.Blobs[j].Size)
			}
			got, err := os.ReadFile(r.blobPath(ti.Repo, br.Digest))
			if err != nil || digest.FromBytes(got) != br.Digest {
				t.Errorf("%s blob %s: %v, %d bytes", ti.Repo, br.Digest, err, len(got))
			}
		}
		if d, ok := tagged(t, r, ti.Repo, ti.Tag); !ok || d != ti.Manifests[0].Digest {
			t.Errorf("%s:%s names %s", ti.Repo, ti.Tag, d)
		}
	}
	if left := incomingFiles(t, r); len(left) > 0 {
		t.Errorf("the incoming directory holds %v", left)
	}
}

func contains(ds []digest.Digest, d digest.Digest) bool {
	for _, x := range ds {
		if x == d {
			return true
		}
	}
	return false
}

// failingReader hands out some bytes, then fails.
type failingReader struct {
	b   []byte
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.b) == 0 {
		return 0, f.err
	}
	n := copy(p, f.b)
	f.b = f.b[n:]
	return n, nil
}

// TestPublishStagedRefused: a staged blob that is not its digest's bytes
// — other bytes, fewer, more, a source that fails — fails every image of
// the publication with the stage's error: no blob reaches a repository,
// no tag moves, and the incoming directory is left empty. So does a
// hook that fails after staging a sound blob.
func TestPublishStagedRefused(t *testing.T) {
	layer := bytes.Repeat([]byte("layer "), 300_000)
	other := []byte("other layer")
	d := digest.FromBytes(layer)
	readErr := errors.New("the stream broke")
	hookErr := errors.New("the bundle is cut short")
	for _, tc := range []struct {
		name string
		body io.Reader
		hook error  // returned by the hook after staging every blob
		want string // in the error of every image
	}{
		{"other bytes", bytes.NewReader(bytes.Repeat([]byte("LAYER "), 300_000)), nil, "content does not match its digest"},
		{"fewer bytes", bytes.NewReader(layer[:len(layer)-1]), nil, "stream truncated after"},
		{"more bytes", io.MultiReader(bytes.NewReader(layer), strings.NewReader("more")), nil, "more than its declared"},
		{"a read error", &failingReader{b: layer[:1000], err: readErr}, nil, readErr.Error()},
		{"the hook fails", nil, hookErr, hookErr.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTree(t)
			a, b := newTestImage("a", "v1", other, layer), newTestImage("b", "v1", layer)
			bodies := map[digest.Digest]io.Reader{}
			if tc.body != nil {
				bodies[d] = tc.body
			}
			stage := stageAll([]*testImage{a, b}, bodies)
			hook := func(ctx context.Context, s *Stager) error {
				if err := stage(ctx, s); err != nil {
					return err
				}
				return tc.hook
			}
			rep, err := r.Publish(context.Background(), []Image{a.Image, b.Image}, PublishOptions{Jobs: 1, AllOrNothing: true, Stage: hook})
			if err != nil {
				t.Fatal(err)
			}
			for i, res := range rep.Images {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) {
					t.Errorf("image %d: %v, want %q", i, res.Err, tc.want)
				}
			}
			for _, ti := range []*testImage{a, b} {
				if _, ok := tagged(t, r, ti.Repo, ti.Tag); ok {
					t.Errorf("%s:%s tagged", ti.Repo, ti.Tag)
				}
				for _, bl := range ti.Blobs {
					if _, err := os.Lstat(r.blobPath(ti.Repo, bl.Digest)); err == nil {
						t.Errorf("%s holds blob %s", ti.Repo, bl.Digest)
					}
				}
				if n := ti.fetches.Load(); n != 0 && tc.body == nil && ti == b {
					t.Errorf("%s fetched by Publish", ti.Repo)
				}
			}
			if left := incomingFiles(t, r); len(left) > 0 {
				t.Errorf("the incoming directory holds %v", left)
			}
		})
	}
}

// TestStageMany: more blobs than may be in flight at once, and more bytes
// than the hashing may lag behind the writing, each hashed behind its
// writing, all verified and moved in; a mismatch among them is the one
// Wait reports, by its digest.
func TestStageMany(t *testing.T) {
	lead, active := stagedLead, stagedActive
	stagedLead, stagedActive = 3*streamChunk/2, 4
	t.Cleanup(func() { stagedLead, stagedActive = lead, active })
	r := newTree(t)
	var layers [][]byte
	for i := range 3 * stagedActive {
		layers = append(layers, bytes.Repeat([]byte(fmt.Sprintf("layer %d ", i)), 1000*(i%7+1)))
	}
	for i := range 3 {
		layers = append(layers, bytes.Repeat([]byte(fmt.Sprintf("big layer %d ", i)), 200_000)) // over 2 MiB
	}
	im := newTestImage("many/app", "v1", layers...)
	rep, err := r.Publish(context.Background(), []Image{im.Image}, PublishOptions{Stage: stageAll([]*testImage{im}, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if res := rep.Images[0]; res.Err != nil {
		t.Fatal(res.Err)
	}
	for _, l := range layers {
		got, err := os.ReadFile(r.blobPath("many/app", digest.FromBytes(l)))
		if err != nil || !bytes.Equal(got, l) {
			t.Errorf("blob %s: %v", digest.FromBytes(l), err)
		}
	}

	bad := newTestImage("many/bad", "v1", append(layers[:0:0], []byte("sound 1"), []byte("unsound"), []byte("sound 2"))...)
	bd := bad.Blobs[1].Digest
	bodies := map[digest.Digest]io.Reader{bd: strings.NewReader("UNSOUND")}
	rep, err = r.Publish(context.Background(), []Image{bad.Image}, PublishOptions{Stage: stageAll([]*testImage{bad}, bodies)})
	if err != nil {
		t.Fatal(err)
	}
	var mis *MismatchError
	if err := rep.Images[0].Err; !errors.As(err, &mis) || mis.Digest != bd || mis.GotDigest != digest.FromString("UNSOUND") {
		t.Errorf("got %v, want the mismatch of %s", err, bd)
	}
	if entries, _ := os.ReadDir(filepath.Join(r.repoDir("many/bad"), blobsDir)); len(entries) > 0 {
		t.Errorf("many/bad holds %d blobs", len(entries))
	}
	if left := incomingFiles(t, r); len(left) > 0 {
		t.Errorf("the incoming directory holds %v", left)
	}
}

// TestStageRefusesTwiceAndLate: a blob staged twice is refused without
// reading it, and so is one staged after the hook returned.
func TestStageRefusesTwiceAndLate(t *testing.T) {
	r := newTree(t)
	im := newTestImage("a", "v1", []byte("layer"))
	var kept *Stager
	hook := func(_ context.Context, s *Stager) error {
		kept = s
		b := im.Blobs[0]
		if _, err := s.Stage(b.Digest, b.Size, strings.NewReader("layer")); err != nil {
			return err
		}
		body := strings.NewReader("layer")
		if _, err := s.Stage(b.Digest, b.Size, body); err == nil || !strings.Contains(err.Error(), "staged twice") || body.Len() != 5 {
			t.Errorf("staged twice: %v, %d bytes left unread", err, body.Len())
		}
		return s.Wait()
	}
	rep, err := r.Publish(context.Background(), []Image{im.Image}, PublishOptions{Stage: hook})
	if err != nil || rep.Images[0].Err != nil {
		t.Fatal(err, rep.Images[0].Err)
	}
	d := digest.FromString("late")
	if _, err := kept.Stage(d, 4, strings.NewReader("late")); err == nil || !strings.Contains(err.Error(), "after the publication's stage ended") {
		t.Errorf("staged late: %v", err)
	}
	if left := incomingFiles(t, r); len(left) > 0 {
		t.Errorf("the incoming directory holds %v", left)
	}
}
