package main

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/rogpeppe/go-internal/testscript"
)

// scriptRegistries are the source registries of the running scripts, one
// per script at most (registry start).
var scriptRegistries sync.Map // *testscript.TestScript -> *httptest.Server

// cmdRegistry is "registry VERB ARGS…", a source registry for sync's
// scripts: go-containerregistry's in-memory registry on 127.0.0.1.
//
//	registry start              run it until the script ends; $REGISTRY is its host:port
//	registry push REPO:TAG…     push a new random image as each
//	registry hello              push $TESTDATA/hello-oci's index as hello:latest
//	registry sign REPO:TAG…     push a cosign-style sha256-<hex>.sig tag for what each names
//	registry delete REPO:TAG…   delete each tag
//	registry stop               stop answering (a listing fails)
//	registry subst FILE         replace $REGISTRY in FILE by the host:port
func cmdRegistry(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("registry: no negation")
	}
	if len(args) == 0 {
		ts.Fatalf("usage: registry start|push|hello|sign|delete|stop|subst ARGS…")
	}
	if args[0] == "start" {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		scriptRegistries.Store(ts, srv)
		ts.Defer(func() { srv.Close(); scriptRegistries.Delete(ts) })
		ts.Setenv("REGISTRY", strings.TrimPrefix(srv.URL, "http://"))
		return
	}
	v, ok := scriptRegistries.Load(ts)
	if !ok {
		ts.Fatalf("registry %s: no registry start before", args[0])
	}
	srv := v.(*httptest.Server)
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(host+"/"+s, name.Insecure)
		ts.Check(err)
		return r
	}
	switch args[0] {
	case "push":
		for _, a := range args[1:] {
			img, err := random.Image(256, 1)
			ts.Check(err)
			ts.Check(remote.Write(ref(a), img))
		}
	case "hello":
		pushHello(ts, host)
	case "sign":
		for _, a := range args[1:] {
			desc, err := remote.Head(ref(a))
			ts.Check(err)
			sig, err := random.Image(64, 1)
			ts.Check(err)
			repo := ref(a).Context()
			ts.Check(remote.Write(repo.Tag("sha256-"+desc.Digest.Hex+".sig"), sig))
		}
	case "delete":
		for _, a := range args[1:] {
			ts.Check(remote.Delete(ref(a)))
		}
	case "stop":
		srv.Close()
	case "subst":
		if len(args) != 2 {
			ts.Fatalf("usage: registry subst FILE")
		}
		p := ts.MkAbs(args[1])
		b, err := os.ReadFile(p)
		ts.Check(err)
		ts.Check(os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "$REGISTRY", host)), 0o644))
	default:
		ts.Fatalf("registry %s: unknown verb", args[0])
	}
}
