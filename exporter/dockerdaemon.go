package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// The docker-daemon: source asks a Docker Engine for the image over its
// API socket, as `docker save` does — GET /images/get?names=REF answers
// a docker save stream — with net/http and a unix dialer: no Docker
// client library. readDockerSave reads the stream in one pass.

// defaultDockerSocket is where a Docker Engine listens when DOCKER_HOST
// says nothing.
const defaultDockerSocket = "/var/run/docker.sock"

// dockerSocket is the Docker Engine's socket path: o's DockerHost, else
// DOCKER_HOST, else the default. Only unix:// hosts are read.
func dockerSocket(o LocalOptions) (string, error) {
	host := o.DockerHost
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		return defaultDockerSocket, nil
	}
	path, ok := strings.CutPrefix(host, "unix://")
	if !ok || path == "" {
		return "", fmt.Errorf("DOCKER_HOST %q: only a unix:///PATH socket is supported", host)
	}
	return path, nil
}

// maxDaemonError bounds the error body read from the engine.
const maxDaemonError = 64 << 10

// openDockerDaemon streams the image src names out of the Docker Engine.
func openDockerDaemon(ctx context.Context, src SourceRef, o Options) (*streamedArchive, error) {
	what := src.String()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := dockerGet(cctx, what, "/images/get?"+url.Values{"names": {src.Image}}.Encode(), o)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body := &idleBody{rc: resp.Body, idle: sourceTimeout(o), cancel: cancel}
	return readDockerSave(ctx, what, body, streamLimits{maxLayer: o.MaxBlobSize})
}

// dockerGet sends GET path to the Docker Engine's socket and returns its
// answer when it is 200 OK; any other is the error, one line naming
// what the request was for. The engine must answer within the source
// timeout; the body's reader bounds its own reads.
func dockerGet(ctx context.Context, what, path string, o Options) (*http.Response, error) {
	sock, err := dockerSocket(o.Local)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	fi, err := os.Stat(sock)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: no Docker Engine socket at %s (is dockerd running? DOCKER_HOST names another)", what, sock)
	case err != nil:
		return nil, fmt.Errorf("%s: Docker Engine socket: %w", what, err)
	case fi.Mode()&os.ModeSocket == 0:
		return nil, fmt.Errorf("%s: %s is not a socket", what, sock)
	}
	timeout := sourceTimeout(o)
	dialer := &net.Dialer{Timeout: timeout}
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", sock)
		},
		ResponseHeaderTimeout: timeout,
		DisableCompression:    true,
		DisableKeepAlives:     true, // one request per client: nothing to keep
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
		return nil, fmt.Errorf("%s: the Docker Engine at %s does not answer: %v", what, sock, unwrapURLError(err))
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, fmt.Errorf("%s: the Docker Engine at %s answers %s: %s", what, sock, resp.Status, daemonMessage(resp.Body))
	}
	return resp, nil
}

// daemonMessage is the message of a Docker Engine error body
// ({"message": "..."}), or the body itself, on one line.
func daemonMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxDaemonError))
	var e struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	msg = strings.Join(strings.Fields(msg), " ")
	if msg == "" {
		return "no message"
	}
	return msg
}

// unwrapURLError drops net/http's "Get "http://docker/…": " prefix, which
// names a host that does not exist.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
