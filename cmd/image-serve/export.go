package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/image-serve/image-serve/exporter"
	"github.com/urfave/cli/v2"
)

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "copy an image into the tree",
		ArgsUsage: "SOURCE [DEST] | --from-file FILE",
		Description: `SOURCE is a skopeo-style reference:
  docker://HOST[:PORT]/REPO[:TAG|@DIGEST]   a registry
  oci:DIR[:REF]                             an OCI image layout
  oci-archive:FILE[:REF]                    a tar of an OCI image layout
  docker-archive:FILE[:REPO:TAG|:@N]        docker save output
  containers-storage:[[STORE-SPEC]]REF      podman's, buildah's or CRI-O's local store, read through podman
                                            (STORE-SPEC: [DRIVER@]GRAPHROOT[+RUNROOT][:OPTIONS])
  docker-daemon:NAME[:TAG]|sha256:ID        a Docker Engine's images, through its socket (DOCKER_HOST)
DEST is REPO[:TAG]; by default the source's repository without its registry host, and its tag.
--from-file FILE (- for stdin) exports many images in one run: one "SOURCE [DEST]" per line (blank
lines and # comments skipped). Every image is resolved first, the blobs of all of them share --jobs
and a blob shared by several is fetched once; a failed image leaves the others alone, unless
--atomic: then every tag moves or none does (a crash while they move is finished by the next
export or gc).`,
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "platform", Usage: "OS/ARCH[/VARIANT] of an index to export (repeatable; default: all)"},
			&cli.BoolFlag{Name: "src-tls-verify", Value: true, Usage: "require HTTPS and a valid certificate for every source registry, loopback and private addresses included (false: allow plain HTTP and self-signed certificates)"},
			&cli.StringFlag{Name: "src-creds", Usage: "USER[:PASS] for the source registry"},
			&cli.StringFlag{Name: "src-authfile", Usage: "auth file for the source registry (default: docker config.json, containers auth.json)"},
			&cli.StringFlag{Name: "src-cert-dir", Usage: "certs.d directory for the source registry: *.crt CAs, *.cert/*.key client pairs"},
			&cli.IntFlag{Name: "jobs", Value: 4, Usage: "parallel blob and manifest transfers, and repositories published at once"},
			srcMaxRequestsFlag(),
			srcRateFlag(),
			&cli.DurationFlag{Name: "src-timeout", Value: exporter.DefaultSourceTimeout, Usage: "give up on a source request that sends nothing for this long"},
			&cli.BoolFlag{Name: "json", Usage: "print the summary as JSON on stdout (an array with --from-file)"},
			&cli.StringFlag{Name: "from-file", Usage: "export every \"SOURCE [DEST]\" line of this file (- for stdin) in one run"},
			&cli.BoolFlag{Name: "verify-existing", Usage: "re-hash blobs already in the tree before reusing them (a corrupt one is fetched again)"},
			&cli.BoolFlag{Name: "atomic", Usage: "with --from-file: tag every image or, if one fails, none"},
			&cli.Int64Flag{Name: "max-blob-size", Value: exporter.DefaultMaxBlobSize, Usage: "refuse an image with a blob declared larger than this many bytes"},
			&cli.BoolFlag{Name: "preserve-digests", Usage: "refuse a source whose layers would be rewritten (docker save's plain tar layers, compressed on export) instead of exporting them under new digests"},
		},
		Action: runExport,
	}
}

func runExport(c *cli.Context) error {
	jobs, err := exportJobs(c)
	if err != nil {
		return err
	}
	if c.Bool("atomic") && c.String("from-file") == "" {
		return usageError(c, "--atomic needs --from-file: one image moves all or nothing already")
	}
	if _, err := exporter.ParsePlatforms(c.StringSlice("platform")); err != nil {
		return usageError(c, "%v", err)
	}
	if err := checkTransferFlags(c); err != nil {
		return err
	}
	root, err := openRoot(c)
	if err != nil {
		return err
	}
	log := logger(c)
	o := exportOptions(c, log)
	o.Platforms = c.StringSlice("platform")
	o.PreserveDigests = c.Bool("preserve-digests")
	var tty *ttyProgress
	if !quiet(c) && c.String("log-format") == "text" && isTerminal(os.Stderr) {
		tty = newTTYProgress(os.Stderr)
		o.Progress = tty
	}
	sums, errs := exporter.ExportEach(c.Context, root, jobs, o)
	err = exporter.JoinFailures(errs)
	if tty != nil {
		tty.Close()
	}
	var reports []any
	for i, sum := range sums {
		if sum == nil {
			reports = append(reports, exportFailure{jobs[i].Source, jobs[i].Dest, errs[i].Error()})
			continue
		}
		reports = append(reports, exportReport{sum, sum.Elapsed.Seconds()})
		switch {
		case c.Bool("json"):
		case c.String("log-format") == "json":
			log.Info("exported",
				"source", sum.Source, "dest", sum.Dest, "digest", sum.Digest, "media_type", sum.MediaType,
				"manifests", sum.Manifests, "blobs_fetched", sum.BlobsFetched, "bytes_fetched", sum.BytesFetched,
				"blobs_reused", sum.BlobsReused, "bytes_reused", sum.BytesReused, "elapsed", sum.Elapsed)
		case !quiet(c):
			fmt.Fprintf(os.Stderr, "%s -> %s (%s): fetched %s in %s, reused %s in %s, %s, %s\n",
				sum.Source, sum.Dest, sum.Digest, humanBytes(sum.BytesFetched), plural(sum.BlobsFetched, "blob", "blobs"),
				humanBytes(sum.BytesReused), plural(sum.BlobsReused, "blob", "blobs"), plural(sum.Manifests, "manifest", "manifests"), sum.Elapsed.Round(1e6))
		}
	}
	if c.Bool("json") {
		var v any = reports
		if c.String("from-file") == "" {
			if sums[0] == nil {
				return err // one image: its error is the whole report
			}
			v = reports[0]
		}
		if perr := printJSON(c.App.Writer, v); perr != nil && err == nil {
			err = perr
		}
	}
	return lastError(err)
}

// exportJobs reads what to export: SOURCE [DEST] from the arguments, or
// one such line per image from --from-file.
func exportJobs(c *cli.Context) ([]exporter.Job, error) {
	file := c.String("from-file")
	if file == "" {
		if c.NArg() < 1 || c.NArg() > 2 {
			return nil, usageError(c, "want SOURCE [DEST], got %d arguments", c.NArg())
		}
		j := exporter.Job{Source: c.Args().Get(0), Dest: c.Args().Get(1)}
		if err := exporter.CheckJob(j); err != nil {
			return nil, usageError(c, "%v", err)
		}
		return []exporter.Job{j}, nil
	}
	if c.NArg() > 0 {
		return nil, usageError(c, "--from-file takes no SOURCE argument, got %d arguments", c.NArg())
	}
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--from-file: %w", err)
		}
		defer f.Close()
		r = f
	}
	var jobs []exporter.Job
	sc := bufio.NewScanner(io.LimitReader(r, 16<<20))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) > 2 {
			return nil, usageError(c, "--from-file %s line %d: want SOURCE [DEST], got %d fields", file, n, len(f))
		}
		j := exporter.Job{Source: f[0]}
		if len(f) == 2 {
			j.Dest = f[1]
		}
		if err := exporter.CheckJob(j); err != nil {
			return nil, usageError(c, "--from-file %s line %d: %v", file, n, err)
		}
		jobs = append(jobs, j)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--from-file %s: %w", file, err)
	}
	if len(jobs) == 0 {
		return nil, usageError(c, "--from-file %s: no image to export", file)
	}
	return jobs, nil
}

// exportFailure is export --from-file --json's record of an image that
// failed: the job as given, and the one line its error says.
type exportFailure struct {
	Source string `json:"source"`
	Dest   string `json:"dest,omitempty"`
	Error  string `json:"error"`
}

// exportReport is export's --json summary: the exporter's, with the
// elapsed time in seconds as every JSON output has it.
type exportReport struct {
	*exporter.Summary
	ElapsedSeconds float64 `json:"elapsed"`
}

// printJSON writes v as indented JSON: a command's --json report.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exportOptions are the options export and sync share, from the flags
// both take: the transfer's bounds and the source registries' access.
func exportOptions(c *cli.Context, log *slog.Logger) exporter.Options {
	return exporter.Options{
		Jobs:           c.Int("jobs"),
		MaxBlobSize:    c.Int64("max-blob-size"),
		VerifyExisting: c.Bool("verify-existing"),
		AllOrNothing:   c.Bool("atomic"),
		Registry: exporter.RegistryOptions{
			Insecure:  !c.Bool("src-tls-verify"),
			Creds:     c.String("src-creds"),
			AuthFile:  c.String("src-authfile"),
			CertDir:   c.String("src-cert-dir"),
			UserAgent: "image-serve/" + version,
			Timeout:   c.Duration("src-timeout"),
			Limits:    srcLimits(c),
		},
		// A container store's lock is waited for as the tree's are: said
		// once, bounded by --lock-timeout.
		Local: exporter.LocalOptions{
			LockTimeout: c.Duration("lock-timeout"),
			Notify:      func(msg string) { log.Info(msg) },
		},
		Log: log,
	}
}

// srcMaxRequestsFlag and srcRateFlag bound the load on each source
// registry, for export and sync alike (sync's file may set its own per
// registry, which win). Each call makes a new flag: a flag holds what was
// parsed into it, and every command has its own.
func srcMaxRequestsFlag() cli.Flag {
	return &cli.IntFlag{Name: "src-max-requests", Usage: "requests in flight to each source registry at once, pings, tokens and retries included (0: no cap beyond --jobs; a registry's max-requests: in a sync file wins)"}
}

func srcRateFlag() cli.Flag {
	return &cli.Float64Flag{Name: "src-rate", Usage: "requests per second to each source registry, with a burst of one second's worth (0: no limit; a registry's requests-per-second: in a sync file wins); a 429 halves it, or starts one at half the rate sent, for the rest of the run"}
}

// srcLimits are the limits --src-max-requests and --src-rate set.
func srcLimits(c *cli.Context) exporter.RegistryLimits {
	return exporter.RegistryLimits{MaxRequests: c.Int("src-max-requests"), RequestsPerSecond: c.Float64("src-rate")}
}

// checkTransferFlags refuses the values of the flags exportOptions reads
// that no transfer can run with: a usage error naming the flag.
func checkTransferFlags(c *cli.Context) error {
	if c.Int("jobs") < 1 {
		return usageError(c, "--jobs %d: want 1 or more", c.Int("jobs"))
	}
	if c.Duration("src-timeout") <= 0 {
		return usageError(c, "--src-timeout %v: want more than 0", c.Duration("src-timeout"))
	}
	if c.Int64("max-blob-size") <= 0 {
		return usageError(c, "--max-blob-size %d: want more than 0", c.Int64("max-blob-size"))
	}
	limits := srcLimits(c)
	if limits.MaxRequests < 0 {
		return usageError(c, "--src-max-requests %d: want 0 (no cap) or more", limits.MaxRequests)
	}
	if err := limits.Validate(); err != nil {
		return usageError(c, "--src-rate %v: want 0 (no limit) or a rate above 0", limits.RequestsPerSecond)
	}
	return nil
}
