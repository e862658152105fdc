// Command headfloor is the floor of a no-op mirror check: one HEAD per
// tag over plain HTTP keep-alive connections, a few at a time, and
// nothing else — no file to parse, no destination to read, no
// authentication, no process start beyond a small Go program's. make
// bench times it beside the sync reruns so that a target set against
// another tool can be judged against what any one-request-per-tag
// check costs on the same machine.
//
// Usage: headfloor HOST[:PORT] REPO:TAG...
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// jobs matches image-serve sync's and regsync's default parallelism.
const jobs = 4

// accept is what a client that takes any manifest asks for.
const accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, " +
	"application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: headfloor HOST[:PORT] REPO:TAG...")
		os.Exit(2)
	}
	host, refs := os.Args[1], os.Args[2:]
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: jobs}}
	work := make(chan string)
	errs := make(chan error, len(refs))
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			for ref := range work {
				errs <- head(client, host, ref)
			}
		})
	}
	for _, r := range refs {
		work <- r
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			fmt.Fprintln(os.Stderr, "headfloor:", err)
			os.Exit(1)
		}
	}
}

func head(client *http.Client, host, ref string) error {
	i := strings.LastIndex(ref, ":")
	if i < 0 {
		return fmt.Errorf("%s: want REPO:TAG", ref)
	}
	req, err := http.NewRequest(http.MethodHead, "http://"+host+"/v2/"+ref[:i]+"/manifests/"+ref[i+1:], nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") == "" {
		return fmt.Errorf("HEAD %s: %s, digest %q", ref, resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
	return nil
}
