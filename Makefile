# sandboxd — one static binary; see README.md.
#   make run    build everything (apt packages, binaries, rootfs) and start the daemon
#   make test   run the whole test suite (as root: it starts real containers)
#   make bench  latency and throughput, side by side with bare python, go-judge and docker
#   make rootfs [RUNTIMES=all|"python c ..."|IMAGES="gcc ..."]  the job images (README, Images)

export CGO_ENABLED := 1
# Static: the daemon binary doubles as each job's pid 1 inside the job's root filesystem.
GOTAGS  := seccomp,netgo,osusergo
GOBUILD := -tags=$(GOTAGS) -ldflags=-extldflags=-static
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
ROOTFS  ?= build/rootfs.tar.zst
IMAGES_DIR ?= build/images
ARGS    ?=
# Job images (images/NAME.packages) are built into build/images/NAME.tar.zst. The default
# set keeps a fresh `make run` to a few minutes: python (runtimes python, bash) and node
# (javascript, typescript). RUNTIMES=all, or a list of runtimes, picks the images they need;
# IMAGES= names images directly. ROOTFS is always the python image.
DEFAULT_IMAGES := python node
RUNTIMES ?=
IMAGES   ?= $(if $(RUNTIMES),$(shell scripts/runtime-images.sh $(RUNTIMES) || echo RUNTIMES-unknown),$(DEFAULT_IMAGES))
IMAGE_JOBS ?= 2

.PHONY: all deps build rootfs rootfs-all check-images run test test-unit test-vm bench clean
all: build rootfs

deps:
	@scripts/deps.sh

build: deps
	go build -tags=$(GOTAGS) -ldflags="-extldflags=-static -X main.version=$(VERSION)" -o bin/sandboxd ./cmd/sandboxd
	go build -ldflags="-X main.version=$(VERSION)" -o bin/sandboxctl ./cmd/sandboxctl

rootfs: deps
	@scripts/mkimages.sh -j $(IMAGE_JOBS) build/images python $(IMAGES)
	@scripts/mkrootfs.sh --image python $(ROOTFS)

rootfs-all:
	@$(MAKE) --no-print-directory rootfs IMAGES=all

# Every runtime of runtimes/*.toml run for real in a chroot of its image (no daemon).
check-images: rootfs-all
	scripts/check-images.sh

# On a cgroup v2 host the daemon needs a cgroup of its own, delegated (as systemd's
# Delegate=yes gives): a terminal's is shared, so it runs in a transient scope.
DELEGATE := $(shell [ -f /sys/fs/cgroup/cgroup.controllers ] && command -v systemd-run >/dev/null && echo systemd-run --scope --quiet -p Delegate=yes)
run: build rootfs
	$(DELEGATE) bin/sandboxd --rootfs $(ROOTFS) --images-dir $(IMAGES_DIR) --state-dir build/state $(ARGS)

# The tests run real jobs: they need root and the rootfs, and every image (CI exercises
# every runtime).
test: build rootfs-all
	@scripts/deps.sh haproxy nats-server # for deploy/, jobs/ and tests/cluster, before they run in parallel
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1; }
	go vet -tags=$(GOTAGS) ./...
	SANDBOXD_ROOTFS=$(CURDIR)/$(ROOTFS) SANDBOXD_IMAGES=$(CURDIR)/$(IMAGES_DIR) SANDBOXD_BIN=$(CURDIR)/bin/sandboxd \
		go test $(GOBUILD) -count=1 -timeout 20m ./...
	# The engine, API and runtime suites again, every job on a warm pooled container when one is ready.
	SANDBOXD_ROOTFS=$(CURDIR)/$(ROOTFS) SANDBOXD_IMAGES=$(CURDIR)/$(IMAGES_DIR) SANDBOXD_TEST_POOL=2 \
		go test $(GOBUILD) -count=1 -timeout 20m ./sandbox/ ./server/ ./tests/runtimes/
	# And with python's pool as fork servers (fork_server), the attack suite included.
	SANDBOXD_ROOTFS=$(CURDIR)/$(ROOTFS) SANDBOXD_IMAGES=$(CURDIR)/$(IMAGES_DIR) SANDBOXD_BIN=$(CURDIR)/bin/sandboxd SANDBOXD_TEST_FORK=1 \
		go test $(GOBUILD) -count=1 -timeout 20m ./sandbox/ ./server/ ./tests/runtimes/ ./tests/attack/

# cgroup v2 and systemd for real, on any Linux host (v1 too): two VMs (scripts/vmtest.sh).
# Stage 1 runs VM_SUITES' real-job tests in a delegated v2 cgroup (tests/vm/cgroup2.sh);
# stage 2 installs sandboxd and drives its unit under systemd (tests/vm/systemd.sh).
VM_SUITES ?= sandbox server internal/daemon cmd/sandboxd cmd/sandboxctl tests/attack
test-vm: build rootfs
	@mkdir -p build/vmtest
	for p in $(VM_SUITES); do go test -c $(GOBUILD) -o build/vmtest/$$(echo $$p | tr / _).test ./$$p || exit 1; done
	scripts/vmtest.sh --prepare
	rc=0; \
	scripts/vmtest.sh --disk 4G --timeout 1800 -- tests/vm/cgroup2.sh build/vmtest $(VM_SUITES) || rc=1; \
	scripts/vmtest.sh --systemd --disk 4G --disk-at /var/lib/sandboxd --timeout 900 -- tests/vm/systemd.sh || rc=1; \
	exit $$rc

bench: build rootfs
	@scripts/deps.sh bubblewrap crun nats-server
	@scripts/go-judge.sh >/dev/null || echo "bench: go-judge not built (it needs the Go module proxy once): its rows are skipped" >&2
	go build -o bin/sbxbench ./bench
	bin/sbxbench -sandboxd bin/sandboxd -rootfs $(ROOTFS) -images $(IMAGES_DIR) -go-judge build/go-judge

clean:
	rm -rf bin build/state
