package exporter

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/image-serve/image-serve/internal/testregistry"
	"github.com/opencontainers/go-digest"
)

func TestParsePushTarget(t *testing.T) {
	for _, tc := range []struct {
		in, registry, prefix, err string
	}{
		{in: "docker://reg.example:5000", registry: "reg.example:5000"},
		{in: "docker://reg.example/", registry: "reg.example"},
		{in: "docker://harbor.site/mirror/team", registry: "harbor.site", prefix: "mirror/team"},
		{in: "docker://harbor.site/mirror/", registry: "harbor.site", prefix: "mirror"},
		{in: "harbor.site/mirror", err: "want docker://HOST[/PREFIX]"},
		{in: "docker://", err: "no registry host"},
		{in: "docker://Harbor Site", err: "no registry host"},
		{in: "docker://harbor.site/Mirror", err: "prefix"},
	} {
		got, err := ParsePushTarget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePushTarget(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.Registry != tc.registry || got.Prefix != tc.prefix {
			t.Errorf("ParsePushTarget(%q) = %+v, %v; want %s and prefix %q", tc.in, got, err, tc.registry, tc.prefix)
		}
	}
	if got := (PushTarget{Registry: "r", Prefix: "p/q"}).Repo("site/app"); got != "p/q/site/app" {
		t.Errorf("Repo under a prefix: %s", got)
	}
	if got := (PushTarget{Registry: "r"}).Repo("site/app"); got != "site/app" {
		t.Errorf("Repo without a prefix: %s", got)
	}
}

// TestDestFlagsError: the source machinery's hints name the
// destination's flags in a load into a registry, and the cause stays in
// the chain.
func TestDestFlagsError(t *testing.T) {
	cause := errors.New("x509: unknown authority")
	err := destFlagsError(registryError("reg/app@sha256:00", &plainHTTPError{url: "http://reg/v2/"}))
	if strings.Contains(err.Error(), "--src-") || !strings.Contains(err.Error(), "--dest-tls-verify=false") {
		t.Errorf("destFlagsError: %v", err)
	}
	var pe *plainHTTPError
	if !errors.As(err, &pe) {
		t.Errorf("destFlagsError lost the cause: %#v", err)
	}
	if got := destFlagsError(cause); got != cause {
		t.Errorf("destFlagsError changed an error naming no flag: %v", got)
	}
}

// TestPushBundleDeclinedMount loads a bundle into go-containerregistry's
// registry, which does no cross-repository mount (it answers a mount
// request by starting an upload): the needed blob is copied through from
// the --mount-from repository instead. Its blobs are global, so HEAD in
// the target repository is made to answer 404 until the load wrote the
// blob there, as a registry with repository-scoped blobs answers. A load
// without --mount-from is refused, listing the needed blob, before any
// write.
func TestPushBundleDeclinedMount(t *testing.T) {
	reg := testregistry.Start(t)
	b := newTestBundle()
	b.image("app", "v2", []string{"base layer", "app layer"}, map[string]bool{"base layer": true})
	raw := b.bytes(t)
	baseLayer := digest.FromString("base layer")
	baseRepo, err := name.NewRepository(reg.Ref("dst/base/os"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(baseRepo, static.NewLayer([]byte("base layer"), types.OCILayer)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	written := map[string]bool{}
	reg.Intercept = func(w http.ResponseWriter, r *http.Request) bool {
		mu.Lock()
		defer mu.Unlock()
		const blobs = "/v2/dst/app/blobs/"
		switch {
		case r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, blobs+"sha256:") && !written[strings.TrimPrefix(r.URL.Path, blobs)]:
			w.WriteHeader(http.StatusNotFound)
			return true
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, blobs+"uploads/"):
			written[r.URL.Query().Get("digest")] = true
		}
		return false
	}
	target := PushTarget{Registry: reg.Host, Prefix: "dst"}
	o := PushOptions{Registry: RegistryOptions{Insecure: true}}

	reg.ResetRequests()
	_, err = PushBundle(context.Background(), target, openTestBundle(t, raw), "test", o)
	var missing *RegistryMissingError
	if !errors.As(err, &missing) || len(missing.Missing) != 1 || missing.Missing[0].Digest != baseLayer {
		t.Fatalf("without --mount-from: %v, want the base layer %s missing", err, baseLayer)
	}
	for req, n := range reg.Requests() {
		if !strings.HasPrefix(req, "HEAD ") && !strings.HasPrefix(req, "GET ") {
			t.Errorf("a refused load sent %d %s", n, req)
		}
	}

	o.MountFrom = []string{"base/os"}
	rep, err := PushBundle(context.Background(), target, openTestBundle(t, raw), "test", o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copied != 1 || rep.CopiedBytes != int64(len("base layer")) || rep.Mounted != 0 || rep.Uploaded != 2 || rep.Manifests != 1 || len(rep.Tags) != 1 || rep.Tags[0] != "dst/app:v2" {
		t.Errorf("report %+v: want the base layer copied, the config and the app layer uploaded, 1 manifest, tag dst/app:v2", rep)
	}
	if !written[baseLayer.String()] {
		t.Errorf("the base layer was not put into dst/app")
	}
	ref, err := name.ParseReference(reg.Ref("dst/app:v2"))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil || desc.Digest.String() != b.desc.Tags[0].Digest.String() {
		t.Errorf("dst/app:v2: %v %v, want %s", desc, err, b.desc.Tags[0].Digest)
	}
}
