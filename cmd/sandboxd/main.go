// Command sandboxd is the daemon: it unpacks the jobs' root filesystem once, then runs
// each request's code in a fresh container and answers over HTTP. main only wires.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/rootfs"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen      listFlag
		rootfsPath  = flag.String("rootfs", "", "root filesystem tarball (tar, tar.gz or tar.zst) jobs run on")
		stateDir    = flag.String("state-dir", "/var/lib/sandboxd", "persistent state: the unpacked root filesystems")
		runDir      = flag.String("run-dir", "/run/sandboxd", "runtime state: containers and job storage (a tmpfs)")
		maxJobs     = flag.Int("max-jobs", 4, "jobs run at once")
		maxQueue    = flag.Int("max-queue", 64, "requests that may wait for a job slot; more get 429")
		outputLimit = flag.Int64("output-limit", 1<<20, "bytes kept of each of stdout and stderr")
		maxBody     = flag.Int64("max-body", 2<<20, "bytes of a request body; more get 413")
		socketGroup = flag.String("socket-group", "", "group owning the unix socket (mode 0660)")
		logFormat   = flag.String("log-format", "text", "log format: text or json")
	)
	policy := sandbox.DefaultPolicy()
	flag.Var(&listen, "listen", "address to serve: host:port or unix:/path (repeatable; default unix:/run/sandboxd/sandboxd.sock and 127.0.0.1:8000)")
	flag.Parse()
	for _, d := range []*string{stateDir, runDir} {
		abs, err := filepath.Abs(*d)
		if err != nil {
			return err
		}
		*d = abs
	}
	if len(listen) == 0 {
		listen = listFlag{"unix:" + filepath.Join(*runDir, "sandboxd.sock"), "127.0.0.1:8000"}
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logFormat == "json" {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(handler)

	// Signals first: a SIGTERM during the slow start-up still shuts down cleanly.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *rootfsPath == "" {
		return errors.New("--rootfs is required (build one with scripts/mkrootfs.sh)")
	}
	// 0711: jobs' user-namespaced root must be able to reach the rootfs below it.
	if err := os.MkdirAll(*stateDir, 0o711); err != nil {
		return err
	}
	if err := os.Chmod(*stateDir, 0o711); err != nil {
		return err
	}
	store, err := rootfs.NewStore(filepath.Join(*stateDir, "rootfs"), rootfs.Options{})
	if err != nil {
		return err
	}
	if err := store.Sweep(); err != nil {
		return err
	}
	start := time.Now()
	img, err := store.Import(ctx, *rootfsPath)
	if err != nil {
		return fmt.Errorf("import rootfs: %w", err)
	}
	log.Info("rootfs ready", "digest", img.Digest, "took", time.Since(start).Round(time.Millisecond))

	// GPUs: NVML is dlopened; without the driver this reports zero GPUs and never calls
	// NVML again.
	gpus := gpu.New(nvml.New(), gpu.WithLogger(log))
	defer gpus.Close()
	if err := gpus.Err(); err != nil {
		log.Info("no GPUs", "reason", err)
	}
	leases := gpu.NewAllocator(gpus)

	filter, err := jobSeccomp()
	if err != nil {
		return err
	}
	engine, err := sandbox.New(sandbox.Options{
		RunDir:      *runDir,
		Rootfs:      img.Path,
		Policy:      policy,
		OutputLimit: *outputLimit,
		MaxJobs:     *maxJobs,
		MaxQueue:    *maxQueue,
		Seccomp:     filter,
		GPUs:        leases,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	api := server.New(engine, server.Options{MaxBodyBytes: *maxBody, Logger: log, GPUs: server.GPUInfo(gpus, leases)})

	var servers []*http.Server
	errc := make(chan error, len(listen))
	for _, addr := range listen {
		ln, err := server.Listen(server.ListenConfig{Addr: addr, SocketGroup: *socketGroup})
		if err != nil {
			return err
		}
		srv := api.HTTPServer()
		servers = append(servers, srv)
		go func(ln net.Listener) { errc <- srv.Serve(ln) }(ln)
		log.Info("listening", "addr", addr, "cgroup", engine.CgroupMode())
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-errc:
		log.Error("listener failed", "err", err)
	}
	// Reverse order of start: stop taking requests, let running jobs finish, then go.
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdown)
	}
	return engine.Close(shutdown)
}
