# image-serve. `make test` is the whole test run, and what CI runs: it
# installs what the tests need (apache2, nginx, skopeo, podman, containerd,
# systemd's unit checker) first.
# Go tools (staticcheck) are pinned in go.mod as tool dependencies and run
# with `go tool`: nothing is fetched that `go mod download` does not fetch.

GO          ?= go
PREFIX      ?= /usr/local
# The commit the binary is built from, for --version, when the toolchain
# does not stamp it itself (GOFLAGS=-buildvcs=false).
GIT_COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)
GIT_TIME    := $(shell git show -s --format=%cI HEAD 2>/dev/null)
GIT_DIRTY   := $(shell test -n "$$(git status --porcelain 2>/dev/null)" && echo true)
LDFLAGS     := -X main.commit=$(GIT_COMMIT) -X main.commitTime=$(GIT_TIME) -X main.dirty=$(GIT_DIRTY)
APT_PKGS    := apache2 nginx skopeo
BIN         := bin/image-serve

.PHONY: all build test test-deps lint unit demo bench clean man install bin/registry bin/cosign bin/oras

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/image-serve

# man writes the manual page; install puts the binary, the page and the
# completions for bash, zsh and fish under $(DESTDIR)$(PREFIX).
man: build
	./$(BIN) man > bin/image-serve.1

install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/image-serve
	install -D -m 0644 bin/image-serve.1 $(DESTDIR)$(PREFIX)/share/man/man1/image-serve.1
	./$(BIN) completion bash > bin/image-serve.bash
	./$(BIN) completion zsh > bin/_image-serve
	./$(BIN) completion fish > bin/image-serve.fish
	install -D -m 0644 bin/image-serve.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/image-serve
	install -D -m 0644 bin/_image-serve $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_image-serve
	install -D -m 0644 bin/image-serve.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/image-serve.fish

# test-deps installs the Debian packages the end-to-end tests drive, only when
# one is missing (apt-get needs root; CI and the dev machines run as root;
# umoci is the unpacker files is cross-checked against; openssh-server the
# sshd replicate's test starts on 127.0.0.1; buildah builds the image the
# containers-storage: test exports; docker.io the Docker Engine the
# docker-daemon: test starts, only where no dockerd is installed and no
# docker-ce-cli package, which docker.io conflicts with: a docker client
# installed outside dpkg is left alone, docker.io's goes to /usr/bin),
# and builds bin/registry, bin/cosign and bin/oras.
test-deps: bin/registry bin/cosign bin/oras
	@missing=""; \
	command -v apache2 >/dev/null || command -v httpd >/dev/null || missing="$$missing apache2"; \
	command -v nginx   >/dev/null || missing="$$missing nginx"; \
	command -v skopeo  >/dev/null || missing="$$missing skopeo"; \
	command -v podman  >/dev/null || missing="$$missing podman"; \
	command -v buildah >/dev/null || missing="$$missing buildah"; \
	command -v dockerd >/dev/null || dpkg -s docker-ce-cli >/dev/null 2>&1 || missing="$$missing docker.io"; \
	{ command -v containerd >/dev/null && command -v ctr >/dev/null; } || missing="$$missing containerd"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v umoci   >/dev/null || missing="$$missing umoci"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# bin/registry is the CNCF distribution registry pinned in bench/tools/go.mod
# (a module of its own, so that its dependencies stay out of ours): the
# source registry of `make bench` and of the sync tests
# (internal/distreg, which fails without it). Phony: go build is the judge
# of whether it is current, and cheap when it is.
bin/registry:
	cd bench/tools && $(GO) build -trimpath -o ../../bin/registry github.com/distribution/distribution/v3/cmd/registry

# bin/cosign and bin/oras are the signing and artifact clients pinned in
# tools/go.mod (a module of its own, apart from bench/tools so that their
# large dependency trees never move the registry's): the signature tests
# (cmd/image-serve/sync_signed_test.go) sign, attach and verify with them,
# and fail without them. Phony for the same reason as bin/registry: the
# first build takes minutes, a second one only checks the build cache.
bin/cosign:
	cd tools && $(GO) build -trimpath -o ../bin/cosign github.com/sigstore/cosign/v2/cmd/cosign

bin/oras:
	cd tools && $(GO) build -trimpath -o ../bin/oras oras.land/oras/cmd/oras

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

test: test-deps lint unit

# demo exports the bundled multi-arch image into a temporary root and
# serves it with the embedded server until interrupted, on DEMO_LISTEN
# (default: a free loopback port, printed), then removes the root.
demo: build
	@root=$$(mktemp -d); log=$$root.log; pid=; \
	trap 'test -n "$$pid" && kill $$pid 2>/dev/null; wait; rm -rf "$$root" "$$log"' EXIT; \
	trap 'exit 130' INT TERM; \
	./$(BIN) --root $$root -q export oci:testdata/hello-oci:latest hello:latest || exit 1; \
	./$(BIN) --root $$root --log-format json serve --listen $${DEMO_LISTEN:-127.0.0.1:0} 2>$$log & pid=$$!; \
	addr=; while [ -z "$$addr" ]; do \
		kill -0 $$pid 2>/dev/null || { cat $$log; exit 1; }; sleep 0.1; \
		addr=$$(sed -n 's/.*"msg":"serving","addr":"\([^"]*\)".*/\1/p' $$log); \
	done; \
	echo "serving $$root on http://$$addr (Ctrl-C stops it and removes the tree)"; \
	echo "pull it with:  podman pull --tls-verify=false $$addr/hello:latest"; \
	echo "               skopeo inspect --tls-verify=false docker://$$addr/hello:latest"; \
	wait $$pid

# bench runs internal/bench/cmd/benchrun: it builds the data sets, starts the
# CNCF distribution registry (pinned in bench/tools/go.mod, a module of its
# own so that its dependencies stay out of ours), nginx and Apache on
# 127.0.0.1, drives bin/image-serve against skopeo, regsync (regclient's,
# pinned there too and built into bin/ beside the registry), crane
# (go-containerregistry's, at the version go.mod pins, installed into bin/
# with its own module's dependencies, so that ours do not grow; the files,
# cat and diff sections' reference), rsync (replicate's, installed with wrk
# when missing), nginx, Apache and Go's sha256 side by side (curl of a blob
# is the loopback bound; strace answers every flush with 0 for the no-fsync
# rows, since eatmydata's preloaded libc does not reach Go's system calls),
# runs the hot functions' go test benchmarks,
# prints one table of medians and ratios and writes it, with the command
# lines and the machine, to bench/RESULTS.md (about 15 minutes; BENCH_QUICK=1 is
# a one-minute smoke run of every row at small sizes).
bench: build test-deps
	@missing=""; \
	command -v wrk    >/dev/null || missing="$$missing wrk"; \
	command -v rsync  >/dev/null || missing="$$missing rsync"; \
	command -v curl   >/dev/null || missing="$$missing curl"; \
	command -v strace >/dev/null || missing="$$missing strace"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	cd bench/tools && $(GO) build -trimpath -o ../../bin/regsync github.com/regclient/regclient/cmd/regsync
	GOBIN=$(CURDIR)/bin $(GO) install -trimpath github.com/google/go-containerregistry/cmd/crane@$$($(GO) list -m -f '{{.Version}}' github.com/google/go-containerregistry)
	$(GO) run ./internal/bench/cmd/benchrun -bin $(BIN) -registry bin/registry -regsync bin/regsync -crane bin/crane -out bench/RESULTS.md $(BENCHFLAGS)

clean:
	rm -rf bin
