package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/image-serve/image-serve/internal/bench"
)

// tierClients is how many clients pull at once, each one image of the
// set, as a rack of nodes does at a rollout.
const tierClients = 50

// tierImages is how many images the clients pull between them; they share
// a base layer, as a release's images do.
const tierImages = 5

// tiers measures what caching tiers save the origin: 50 clients pull at
// once straight from an origin (the tree's nginx, whose access log says
// what it sent), then through two stacked caching tiers (config nginx
// --cache-for, cold caches) in front of the same origin. It reports the
// bytes the origin sent over the bytes the clients received, and the
// clients' wall time, each way; then once more through the tiers, warm,
// as a preheat leaves them.
func (e *env) tiers() error {
	var specs []bench.ImageSpec
	for i := range tierImages {
		specs = append(specs, bench.ImageSpec{Ref: fmt.Sprintf("app%d", i), Platforms: []bench.PlatformImage{{Arch: "amd64",
			Layers: []bench.LayerSpec{{Seed: 21, Size: e.sz.middleLayer}, {Seed: 22 + uint64(i), Size: e.sz.topLayer}}}}})
	}
	imgs, err := bench.WriteImages(e.path("tiers-oci"), specs)
	if err != nil {
		return err
	}
	tree := e.path("tiers-tree")
	var lines []string
	for _, s := range specs {
		lines = append(lines, imgs.Source(s.Ref)+" fleet/"+s.Ref+":"+tag)
	}
	list := e.path("tiers.list")
	if err := os.WriteFile(list, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	args := []string{"--root", tree, "--quiet", "export", "--from-file", list}
	e.rep.cmd("tiers: the images (set-up)", shellLine(e.bin, args))
	if _, err := command(e.bin, args...); err != nil {
		return err
	}

	var daemons []*daemon
	defer func() {
		for _, d := range daemons {
			d.stop()
		}
	}()
	start := func(name string, cargs []string) (string, string, error) {
		port, err := freePort()
		if err != nil {
			return "", "", err
		}
		listen := addr(port)
		runDir := e.path("tiers-" + name)
		if err := os.MkdirAll(runDir, 0o755); err != nil {
			return "", "", err
		}
		conf, err := e.writeConfig(runDir, "nginx.conf", append(cargs, "--standalone", "--listen", listen, "--run-dir", runDir))
		if err != nil {
			return "", "", err
		}
		nargs := []string{"-c", conf, "-p", runDir, "-e", filepath.Join(runDir, "error.log"), "-g", "daemon off;"}
		e.rep.cmd("tiers: "+name, shellLine(e.nginx, nargs))
		cmd := exec.Command(e.nginx, nargs...)
		cmd.Env = serverEnv
		d, err := startDaemon(name, cmd, filepath.Join(runDir, "output.log"), "http://"+listen+"/v2/")
		if err != nil {
			return "", "", err
		}
		daemons = append(daemons, d)
		return "http://" + listen, filepath.Join(runDir, "access.log"), nil
	}
	origin, originLog, err := start("origin", []string{"--root", tree, "config", "nginx"})
	if err != nil {
		return err
	}
	cache := func(name string) string { return e.path("tiers-" + name + "-cache") }
	site, _, err := start("site", []string{"config", "nginx", "--cache-for", origin, "--cache-dir", cache("site")})
	if err != nil {
		return err
	}
	rack, _, err := start("rack", []string{"config", "nginx", "--cache-for", site, "--cache-dir", cache("rack")})
	if err != nil {
		return err
	}

	type result struct {
		sent, received int64
		wall           time.Duration
	}
	measure := func(base string) (result, error) {
		before, err := logBytes(originLog)
		if err != nil {
			return result{}, err
		}
		t := time.Now()
		received, err := pullAll(base, specs)
		wall := time.Since(t)
		if err != nil {
			return result{}, err
		}
		// nginx writes a request's log line when it ends: all have
		// ended, and the log is written by then.
		after, err := logBytes(originLog)
		return result{after - before, received, wall}, err
	}
	logf("tiers: %d clients straight from the origin", tierClients)
	straight, err := measure(origin)
	if err != nil {
		return fmt.Errorf("straight: %w", err)
	}
	logf("tiers: %d clients through two tiers, cold", tierClients)
	through, err := measure(rack)
	if err != nil {
		return fmt.Errorf("through the tiers: %w", err)
	}
	logf("tiers: %d clients through the same tiers, warm", tierClients)
	warm, err := measure(rack)
	if err != nil {
		return fmt.Errorf("through warm tiers: %w", err)
	}
	ratio := func(r result) float64 { return float64(r.sent) / float64(r.received) }
	what := fmt.Sprintf("%d clients pulling %d images (a %s base shared, %s each of their own)", tierClients, tierImages, mib(e.sz.middleLayer), mib(e.sz.topLayer))
	e.rep.add(row{what: what + ": bytes the origin sent / bytes the clients received",
		ours: "two tiers", oursVal: fmt.Sprintf("%s / %s = 1/%.0f", mib(through.sent), mib(through.received), 1/ratio(through)),
		ref: "straight", refVal: fmt.Sprintf("%s / %s = %.2f", mib(straight.sent), mib(straight.received), ratio(straight)),
		ratio:  fmt.Sprintf("1/%.0f", 1/ratio(through)),
		target: "≤ 1/40 with the tiers", met: met(ratio(through), 1.0/40, false)})
	e.rep.add(row{what: what + ": the clients' wall time",
		ours: "two tiers, cold", oursVal: ms(through.wall), ref: "straight", refVal: ms(straight.wall),
		ratio: fmt.Sprintf("%.2f× straight's", float64(through.wall)/float64(straight.wall))})
	e.rep.add(row{what: what + ", again: the clients' wall time",
		ours: "two tiers, warm", oursVal: ms(warm.wall), ref: "straight", refVal: ms(straight.wall),
		ratio: fmt.Sprintf("%.2f× straight's", float64(warm.wall)/float64(straight.wall)),
		notes: fmt.Sprintf("the origin sent %.0f KiB (the tags' manifests)", float64(warm.sent)/1024)})
	return nil
}

// logLine reads the status and body bytes of an image_serve access log
// line (the standalone nginx's log_format).
var logLine = regexp.MustCompile(`" (\d{3}) (\d+) "`)

// logBytes sums the body bytes an nginx access log records.
func logBytes(path string) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := logLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseInt(m[2], 10, 64)
			n += v
		}
	}
	return n, sc.Err()
}

// pullAll runs tierClients pulls at once through base, client i pulling
// image i mod len(specs) as a client does: its manifest by tag, then its
// config and layers by digest. It returns the body bytes they received.
func pullAll(base string, specs []bench.ImageSpec) (int64, error) {
	var mu sync.Mutex
	var total int64
	var firstErr error
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: tierClients, DisableCompression: true}}
	for i := range tierClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := pullOne(client, base, "fleet/"+specs[i%len(specs)].Ref)
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return total, firstErr
}

func pullOne(c *http.Client, base, repo string) (int64, error) {
	fetch := func(path, accept string, keep bool) ([]byte, int64, error) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			return nil, 0, err
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, 0, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
		}
		if keep {
			b, err := io.ReadAll(resp.Body)
			return b, int64(len(b)), err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		return nil, n, err
	}
	body, total, err := fetch("/v2/"+repo+"/manifests/"+tag, manifestAccept, true)
	if err != nil {
		return total, err
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return total, err
	}
	digests := []string{m.Config.Digest}
	for _, l := range m.Layers {
		digests = append(digests, l.Digest)
	}
	for _, d := range digests {
		_, n, err := fetch("/v2/"+repo+"/blobs/"+d, "", false)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
