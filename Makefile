# sandboxd — one static binary; see README.md.
#   make run    build everything (apt packages, binaries, rootfs) and start the daemon
#   make test   run the whole test suite (as root: it starts real containers)
#   make bench  latency and throughput, side by side with bare python

export CGO_ENABLED := 1
# Static: the daemon binary doubles as each job's pid 1 inside the job's root filesystem.
GOTAGS  := seccomp,netgo,osusergo
GOBUILD := -tags=$(GOTAGS) -ldflags=-extldflags=-static
ROOTFS  ?= build/rootfs.tar.zst
ARGS    ?=

.PHONY: all deps build rootfs run test test-unit bench clean
all: build rootfs

deps:
	@scripts/deps.sh

build: deps
	go build $(GOBUILD) -o bin/sandboxd ./cmd/sandboxd
	go build -o bin/sandboxctl ./cmd/sandboxctl

rootfs: deps
	@scripts/mkrootfs.sh $(ROOTFS)

run: build rootfs
	bin/sandboxd --rootfs $(ROOTFS) --state-dir build/state $(ARGS)

# The tests run real jobs: they need root and the rootfs.
test: build rootfs
	go vet -tags=$(GOTAGS) ./...
	SANDBOXD_ROOTFS=$(CURDIR)/$(ROOTFS) SANDBOXD_BIN=$(CURDIR)/bin/sandboxd \
		go test $(GOBUILD) -count=1 -timeout 20m ./...

bench: build rootfs
	@scripts/deps.sh bubblewrap crun
	go build -o bin/sbxbench ./bench
	bin/sbxbench -sandboxd bin/sandboxd -rootfs $(ROOTFS)

clean:
	rm -rf bin build/state
