// Package daemon is sandboxd put together: it imports the root filesystem, starts the
// engine, serves the API on the configured or systemd-passed sockets, tells systemd how
// it is doing, reloads what can change at run time, and drains on the way out.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/sandboxd/sandboxd/fronts/judge0"
	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/rootfs"
	"github.com/sandboxd/sandboxd/runtimes"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/sandbox/seccomp"
	"github.com/sandboxd/sandboxd/server"
)

// Options are what the daemon takes besides its Config.
type Options struct {
	Logger  *slog.Logger
	Level   *slog.LevelVar // the logger's level, for reloads; may be nil
	Version string
	NoGPUs  bool // skip NVML discovery (tests)
}

// Daemon is one run of sandboxd. Run it once.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	ready chan struct{}

	mu  sync.Mutex
	cfg Config // what is in force; Reload replaces its run-time part

	// Set up by start, torn down in reverse by Run.
	engine *sandbox.Engine
	gate   *server.Gate
	auth   server.Auth
	judge0 judge0Token // the Judge0 front's X-Auth-Token; Reload replaces it
}

// New prepares a daemon; cfg must have passed Validate. Nothing slow happens here.
func New(cfg Config, opts Options) *Daemon {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Daemon{opts: opts, log: opts.Logger, cfg: cfg, ready: make(chan struct{})}
}

// Ready is closed once the daemon serves (when systemd is told READY=1).
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Run starts the daemon, serves until ctx ends, then drains: new jobs get 503, running
// ones have shutdown_grace to finish before they are killed, every job's client gets
// its result, and Run returns nil. A failure to start or to serve is returned.
func (d *Daemon) Run(ctx context.Context) error {
	if err := sandbox.Supported(); err != nil {
		return fmt.Errorf("this sandboxd cannot run jobs: %w", err)
	}
	cfg := d.config()
	// The watchdog outlives ctx: systemd must hear from a daemon that drains, too.
	wdCtx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	go Watchdog(wdCtx, d.log, d.healthy)

	var undo cleanup
	defer undo.run()
	img, store, err := d.importRootfs(ctx, cfg)
	if err != nil {
		return err
	}
	var gpus *gpu.Manager
	var leases *gpu.Allocator
	var gpuSrc server.GPUSource
	if !d.opts.NoGPUs {
		// NVML is dlopened; without the driver this reports zero GPUs.
		gpus = gpu.New(nvml.New(), gpu.WithLogger(d.log))
		undo.push(func() { gpus.Close() })
		if err := gpus.Err(); err != nil {
			d.log.Info("no GPUs", "reason", err)
		}
		leases = gpu.NewAllocator(gpus)
		gpuSrc = server.GPUInfo(gpus, leases)
	}
	filter, err := seccomp.Profile()
	if err != nil {
		return fmt.Errorf("seccomp profile: %w", err)
	}

	var engine *sandbox.Engine // the metrics' gauges read it once it exists
	var mgr *jobs.Manager      // and the job manager's
	gauges := server.Gauges{Load: func() (int, int) { return engine.Load() }, Pool: func() int { return engine.PoolIdle() },
		Async: func() (int, int) {
			if mgr == nil {
				return 0, 0
			}
			return mgr.Load()
		},
		Digest: img.Digest, Ver: d.opts.Version}
	if gpuSrc != nil {
		gauges.GPUs = gpuSrc.List
	}
	metrics := server.NewMetrics(gauges)
	rts, images, err := d.runtimes(ctx, cfg, store, img)
	if err != nil {
		return err
	}
	engine, err = sandbox.New(sandbox.Options{
		RunDir:      cfg.RunDir,
		Images:      images,
		Runtimes:    rts,
		PoolSizes:   cfg.PoolSizes,
		Policy:      cfg.Policy(),
		OutputLimit: int64(cfg.OutputLimit),
		MaxJobs:     cfg.MaxJobs,
		MaxQueue:    cfg.MaxQueue,
		PoolSize:    cfg.PoolSize,
		ForkServer:  cfg.ForkServer,
		Seccomp:     filter,
		GPUs:        leases,
		CgroupName:  cfg.CgroupName,
		Observer:    metrics,
		Sessions:    sessionOptions(cfg),
		Logger:      d.log,
	})
	if err != nil {
		return err
	}
	undo.push(func() { _ = engine.Close(context.Background()) }) // no job ran if start fails
	gate := server.NewGate(engine, d.log)
	gate.SetLogCode(cfg.LogCode)
	api, admin, err := cfg.Tokens()
	if err != nil {
		return err
	}
	d.auth.SetTokens(api, admin)
	d.mu.Lock()
	d.engine, d.gate = engine, gate
	d.mu.Unlock()

	srv := server.New(gate, server.Options{
		MaxBodyBytes: int64(cfg.MaxBody), MaxCodeBytes: int64(cfg.MaxCode), GPUs: gpuSrc, Logger: d.log,
		Runtimes: engine.Runtimes, Sessions: engine, Jupyter: engine, E2B: engine,
	})
	// Async jobs: their store is opened after the engine and closed before it (the
	// manager's workers hand jobs to the engine until it drains).
	mgr, err = jobs.New(jobs.Options{
		Dir: cfg.JobsDir(), Engine: engine, Slots: cfg.MaxJobs, MaxQueue: cfg.MaxAsyncQueue,
		Retention: time.Duration(cfg.JobRetention), RetentionCount: cfg.JobRetentionCount, MaxStoreBytes: int64(cfg.JobStoreMax),
		CallbacksOffHost: cfg.CallbacksOffHost, Callbacks: map[string]jobs.CallbackEncoder{"": server.JobCallback, judge0.CallbackKind: judge0.Callback},
		Draining: gate.Draining, Cluster: cfg.Cluster.options(), Observer: metrics, Logger: d.log,
	})
	if err != nil {
		return err
	}
	undo.push(func() { _ = mgr.Close(context.Background()) })
	(&server.Jobs{Manager: mgr, Signal: engine.Signal, BatchParallel: cfg.MaxJobs}).Register(srv)
	(&server.Admin{
		Engine: engine, Gate: gate, Store: store, GPUs: gpuSrc, Rootfs: img.Digest,
		Version: d.opts.Version, Started: time.Now(), MaxJobs: cfg.MaxJobs, MaxQueue: cfg.MaxQueue,
		UploadDir: filepath.Join(cfg.StateDir, "rootfs"),
	}).Register(srv)
	(&server.Readiness{
		Engine: engine, Gate: gate, MaxJobs: cfg.MaxJobs, MaxQueue: cfg.MaxQueue, PoolTarget: engine.PoolSize(),
	}).Register(srv)
	srv.Handle("GET /metrics", metrics.Handler())
	if err := d.mountFronts(srv, cfg, gate, engine, mgr); err != nil {
		return err
	}
	handler := metrics.Wrap(d.auth.Wrap(srv))

	lns, err := d.listen(cfg)
	if err != nil {
		return err
	}
	var servers []*http.Server
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		hs := srv.HTTPServer()
		hs.Handler = handler
		hs.ErrorLog = slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(ln) }()
		d.log.Info("listening", "addr", ln.name, "network", ln.Addr().Network())
	}
	d.log.Info("sandboxd ready", "version", d.opts.Version, "cgroup", engine.CgroupMode(), "rootfs", img.Digest,
		"max_jobs", cfg.MaxJobs, "max_queue", cfg.MaxQueue)
	notify(d.log, sd.SdNotifyReady+"\nSTATUS=serving")
	close(d.ready)

	var serveErr error
	select {
	case <-ctx.Done():
		d.log.Info("stopping: draining jobs", "grace", cfg.ShutdownGrace)
	case serveErr = <-errc:
		d.log.Error("listener failed; stopping", "err", serveErr)
	}
	// Refuse new jobs before telling systemd (or anyone watching) that we stop.
	gate.Drain()
	notify(d.log, sd.SdNotifyStopping+"\nSTATUS=draining")
	// Async jobs: none is handed to the engine any more; those queued stay queued in the
	// store (the next start reports them lost, or runs those marked retry).
	mgr.Drain()
	d.drain(engine, gate, time.Duration(d.config().ShutdownGrace))
	// The engine is empty: the running async jobs' results are being stored.
	storeCtx, cancelStore := context.WithTimeout(context.Background(), 10*time.Second)
	if err := mgr.Close(storeCtx); err != nil {
		d.log.Warn("close job store", "err", err)
	}
	cancelStore()
	// Every job's handler has its result now: let them write it, then close.
	shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, hs := range servers {
		if err := hs.Shutdown(shut); err != nil {
			d.log.Warn("close connections", "err", err)
		}
	}
	d.log.Info("stopped")
	return serveErr
}

// drain refuses new jobs, waits for running and queued ones for grace, then kills
// what is left (and whatever a queue still lets in) until the engine is empty.
func (d *Daemon) drain(engine *sandbox.Engine, gate *server.Gate, grace time.Duration) {
	gate.Drain()
	closed := make(chan error, 1)
	go func() { closed <- engine.Close(context.Background()) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for {
		select {
		case err := <-closed:
			if err != nil {
				d.log.Warn("close engine", "err", err)
			}
			return
		case <-timer.C:
			if n := engine.KillAll(); n > 0 {
				d.log.Warn("shutdown grace over: killed running jobs", "jobs", n)
			}
			timer.Reset(time.Second)
		}
	}
}

// importRootfs makes sure the store holds the configured image and returns it.
func (d *Daemon) importRootfs(ctx context.Context, cfg Config) (rootfs.Image, *rootfs.Store, error) {
	// 0711: jobs' user-namespaced root must be able to reach the rootfs below it.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return rootfs.Image{}, nil, fmt.Errorf("state_dir: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return rootfs.Image{}, nil, fmt.Errorf("state_dir: %w", err)
	}
	store, err := rootfs.NewStore(filepath.Join(cfg.StateDir, "rootfs"), rootfs.Options{})
	if err != nil {
		return rootfs.Image{}, nil, err
	}
	if err := store.Sweep(); err != nil {
		return rootfs.Image{}, nil, err
	}
	start := time.Now()
	var img rootfs.Image
	if strings.HasPrefix(cfg.Rootfs, "sha256:") {
		img, err = store.Get(cfg.Rootfs)
	} else {
		notify(d.log, "STATUS=unpacking the root filesystem")
		img, err = store.Import(ctx, cfg.Rootfs)
	}
	if err != nil {
		return rootfs.Image{}, nil, fmt.Errorf("rootfs: %w", err)
	}
	d.log.Info("rootfs ready", "digest", img.Digest, "took", time.Since(start).Round(time.Millisecond))
	return img, store, nil
}

// runtimes loads the runtime definitions and imports the images they run on: python's
// is the rootfs setting (sandboxctl rootfs import can replace it), the others
// images_dir/<image>.tar.zst. A runtime whose image is not there is not offered.
func (d *Daemon) runtimes(ctx context.Context, cfg Config, store *rootfs.Store, python rootfs.Image) ([]sandbox.Runtime, map[string]string, error) {
	rts, err := runtimes.Load(cfg.RuntimesDir)
	if err != nil {
		return nil, nil, err
	}
	images := map[string]string{"python": python.Path}
	for _, rt := range rts {
		if _, done := images[rt.Image]; done {
			continue
		}
		tarball := filepath.Join(cfg.ImagesDir, rt.Image+".tar.zst")
		if cfg.ImagesDir == "" {
			continue
		}
		if _, err := os.Stat(tarball); err != nil {
			d.log.Info("image not installed; its runtimes are not offered", "image", rt.Image, "path", tarball)
			images[rt.Image] = ""
			continue
		}
		notify(d.log, "STATUS=unpacking image "+rt.Image)
		start := time.Now()
		img, err := store.Import(ctx, tarball)
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", rt.Image, err)
		}
		d.log.Info("image ready", "image", rt.Image, "digest", img.Digest, "took", time.Since(start).Round(time.Millisecond))
		images[rt.Image] = img.Path
	}
	for k, v := range images {
		if v == "" {
			delete(images, k)
		}
	}
	return rts, images, nil
}

// listen opens the sockets systemd passed or, when it passed none, the configured ones.
func (d *Daemon) listen(cfg Config) ([]namedListener, error) {
	lns := systemdListeners()
	if len(lns) > 0 {
		// Passed sockets obey the configured ones' rule: TCP off loopback needs a token.
		for _, ln := range lns {
			if err := server.CheckListener(ln, d.auth.HasAPIToken()); err != nil {
				for _, l := range lns {
					l.Close()
				}
				return nil, fmt.Errorf("socket %q passed by systemd: %w; bind it to 127.0.0.1 or ::1 (ListenStream=127.0.0.1:PORT) or set api_token_file", ln.name, err)
			}
		}
		d.log.Info("serving the sockets systemd passed; listen is ignored", "sockets", len(lns))
		return lns, nil
	}
	for _, addr := range cfg.ListenAddrs() {
		ln, err := server.Listen(server.ListenConfig{Addr: addr, SocketGroup: cfg.SocketGroup, HaveToken: d.auth.HasAPIToken()})
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, namedListener{Listener: ln, name: addr})
	}
	return lns, nil
}

func (d *Daemon) config() Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// healthy returns once the engine answers; a deadlocked engine keeps the watchdog quiet.
func (d *Daemon) healthy() {
	d.mu.Lock()
	e := d.engine
	d.mu.Unlock()
	if e != nil {
		e.Load()
	}
}

// Reload applies what can change at run time: the limits' defaults and maximums, the
// tokens, the log level, log_code and shutdown_grace. Jobs running keep the limits they started with.
// Settings that need a restart are named in a warning. cfg must have passed Validate.
func (d *Daemon) Reload(cfg Config) error {
	notifyReloading(d.log)
	defer notify(d.log, sd.SdNotifyReady+"\nSTATUS=serving")
	api, admin, err := cfg.Tokens()
	if err != nil {
		return err
	}
	j0, err := cfg.Judge0Token()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.engine == nil {
		return errors.New("reload: the daemon is still starting")
	}
	if err := d.engine.SetPolicy(cfg.Policy()); err != nil {
		return fmt.Errorf("reload limits: %w", err)
	}
	d.auth.SetTokens(api, admin)
	d.judge0.set(j0)
	d.gate.SetLogCode(cfg.LogCode)
	if d.opts.Level != nil {
		cfg.SetLevel(d.opts.Level)
	}
	if changed := restartOnly(d.cfg, cfg); len(changed) > 0 {
		d.log.Warn("reload: these settings take effect at the next restart", "settings", strings.Join(changed, ","))
	}
	d.cfg.Limits, d.cfg.APITokenFile, d.cfg.AdminTokenFile = cfg.Limits, cfg.APITokenFile, cfg.AdminTokenFile
	d.cfg.LogLevel, d.cfg.LogCode, d.cfg.ShutdownGrace = cfg.LogLevel, cfg.LogCode, cfg.ShutdownGrace
	d.log.Info("reloaded", "default_limits", cfg.Limits.Default, "max_limits", cfg.Limits.Max)
	return nil
}

// restartOnly names the settings that differ between a and b but only apply at start.
func restartOnly(a, b Config) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		switch key := strings.Split(f.Tag.Get("toml"), ",")[0]; key {
		case "limits", "api_token_file", "admin_token_file", "judge0_auth_token_file", "log_level", "log_code", "shutdown_grace":
		default:
			if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
				out = append(out, key)
			}
		}
	}
	return out
}

// cleanup undoes a half-finished start in reverse order.
type cleanup []func()

func (c *cleanup) push(f func()) { *c = append(*c, f) }

func (c *cleanup) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
}

// sessionOptions are the engine's session settings from the config (session_max 0
// turns sessions off).
func sessionOptions(cfg Config) sandbox.SessionOptions {
	o := sandbox.SessionOptions{Max: cfg.SessionMax, IdleTTL: time.Duration(cfg.SessionTTL),
		Lifetime: time.Duration(cfg.SessionLifetime), Pool: cfg.SessionPool}
	if o.Max == 0 {
		o.Max = -1
	}
	return o
}
