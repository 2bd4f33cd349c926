// Package sandbox runs one untrusted job in a fresh, single-use libcontainer container
// and reports what happened. It is the core every HTTP front calls.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/gpu"
)

// Options configure an Engine. Every host path is injectable.
type Options struct {
	// RunDir holds per-job runtime state: container state and storage mounts.
	// It should be on a tmpfs (/run/sandboxd) so a reboot clears it.
	RunDir string
	// Rootfs is the unpacked root filesystem of runtimes whose Image is "" (the
	// default runtime's); Images are the others', by name. Jobs see them read-only.
	Rootfs string
	Images map[string]string
	// Runtimes are what the engine runs (nil: DefaultRuntime, Python on Rootfs). A
	// runtime whose image is missing, or lacks its commands, is left out with a warning.
	Runtimes []Runtime
	// Caps bound files, args, env, tests and collected files (zero: DefaultRequestCaps).
	Caps RequestCaps
	// Policy is the default and maximum of every limit.
	Policy Policy
	// OutputLimit caps each of stdout and stderr (bytes kept; the rest is dropped).
	OutputLimit int64
	// MaxJobs is how many jobs run at once; MaxQueue how many more may wait for a slot.
	MaxJobs  int
	MaxQueue int
	// HostIDBase is the first host uid/gid of the 65536 ids jobs' user namespaces map.
	HostIDBase uint32
	// Seccomp is the filter every job runs under (nil runs without one: tests only).
	Seccomp *configs.Seccomp
	// PoolSize is how many containers are kept started ahead of time, python waiting for
	// code, for jobs of the default shape; 0 disables the pool. PoolSizes sets it per
	// runtime (by name) for runtimes with a bootstrap, python's included.
	PoolSize  int
	PoolSizes map[string]int
	// ForkServer makes python's pool fork servers instead of single-use warm
	// containers (forkserver.go): each of the pool's PoolSize servers forks one job at a
	// time into fresh namespaces, cgroup and tmpfs, and serves forkServerUses jobs.
	ForkServer bool
	// GPUs leases GPUs to jobs that ask for them; nil means the host has none.
	GPUs *gpu.Allocator
	// Sessions configure long-lived kernels (session.go).
	Sessions SessionOptions
	// Observer, if set, is told about every job that ran (see registry.go).
	Observer Observer
	// CgroupMountpoint is the cgroup2 mount (default /sys/fs/cgroup).
	CgroupMountpoint string
	// CgroupName names the cgroup, below the daemon's own, that holds its jobs
	// (default sandboxd-jobs). Two daemons in one cgroup need different names.
	CgroupName string
	Logger     *slog.Logger
}

func (o *Options) setDefaults() {
	if o.OutputLimit == 0 {
		o.OutputLimit = 1 << 20
	}
	if o.MaxJobs == 0 {
		o.MaxJobs = 8
	}
	if o.HostIDBase == 0 {
		o.HostIDBase = 100000
	}
	if o.CgroupName == "" {
		o.CgroupName = DefaultCgroupName
	}
	if o.CgroupMountpoint == "" {
		o.CgroupMountpoint = "/sys/fs/cgroup"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Policy == (Policy{}) {
		o.Policy = DefaultPolicy()
	}
	if o.Caps == (RequestCaps{}) {
		o.Caps = DefaultRequestCaps
	}
	if o.Runtimes == nil {
		o.Runtimes = []Runtime{DefaultRuntime()}
	}
}

// Engine runs jobs. It is safe for concurrent use; all per-job state lives in Run.
type Engine struct {
	opts      Options
	place     placement
	slots     chan struct{}
	mu        sync.Mutex
	queued    int
	running   int
	closed    bool
	jobs      sync.WaitGroup
	policy    Policy
	initBin   string            // static copy of this binary, the jobs' pid 1
	roots     map[string]string // the jobs' roots by image name: read-only overlays of the images
	devDir    string            // the jobs' /dev, read-only
	ioDev     *blockDevice      // the disk under the rootfs, which io limits throttle; nil: none
	ioWeight  bool              // whether the host can weigh io (v1 needs BFQ)
	stateRoot string            // libcontainer's state directory
	jobsRoot  string            // per-job storage mounts
	runLock   *os.File          // flock on RunDir: one engine per run dir (see sweep.go)
	// seccompProg is Options.Seccomp compiled once, for the jobs' init to load (nil:
	// libcontainer compiles it in every container, or there is no profile).
	seccompProg *os.File
	// shares is what each job gets of the kernel's per-user counts (ucounts.go).
	shares kernelShares

	runtimes runtimeSet
	reg      registry             // jobs holding a slot, for listing and killing
	pools    map[string]*pool     // warm containers, by runtime name
	forks    map[string]*forkPool // fork servers, by runtime name (forkserver.go)
	sessions sessionSet           // live sessions and their pool (session.go)
}

// New prepares an engine: it checks the rootfs, places job cgroups below the daemon's
// own, and removes whatever a previous, killed daemon left in RunDir. If it fails, it
// undoes what it did: no mount is left and the run dir is unlocked.
func New(opts Options) (_ *Engine, retErr error) {
	opts.setDefaults()
	var lowered []string
	if opts.Policy, lowered = fitOwnRlimits(opts.Policy, ownRlimit); len(lowered) > 0 {
		opts.Logger.Warn("maximums lowered to the daemon's own hard rlimits, which no job can exceed", "limits", lowered, "max", opts.Policy.Max.View())
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	images := maps.Clone(opts.Images)
	if images == nil {
		images = map[string]string{}
	}
	if opts.Rootfs != "" {
		images[""] = opts.Rootfs
	}
	rts, err := usableRuntimes(opts.Runtimes, images, opts.Logger)
	if err != nil {
		return nil, err
	}
	for _, rt := range rts.list {
		if err := opts.Policy.ForRuntime(rt).Validate(); err != nil {
			return nil, fmt.Errorf("runtime %s: %w", rt.Name, err)
		}
	}
	e := &Engine{
		opts:      opts,
		policy:    opts.Policy,
		slots:     make(chan struct{}, opts.MaxJobs),
		stateRoot: filepath.Join(opts.RunDir, "containers"),
		jobsRoot:  filepath.Join(opts.RunDir, "jobs"),
	}
	if e.shares, err = kernelSharesFor(userCountsDir, opts.MaxJobs, ownRlimit); err != nil {
		return nil, err
	}
	var undo cleanup
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, undo.run())
		}
	}()
	for _, d := range []string{opts.RunDir, e.stateRoot, e.jobsRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("create run dir: %w", err)
		}
	}
	if err := searchable(opts.RunDir); err != nil {
		return nil, err
	}
	// Before anything in RunDir changes: a second daemon must not touch a live one's jobs.
	if e.runLock, err = lockRunDir(opts.RunDir); err != nil {
		return nil, err
	}
	undo.push(e.runLock.Close)
	e.runtimes = rts
	if e.initBin, e.roots, e.devDir, err = hostMounts(opts.RunDir, usedImages(rts, images)); err != nil {
		return nil, err
	}
	undo.push(func() error { return unmountHostMounts(opts.RunDir) })
	if dev, err := blockDeviceOf(e.anyImage(images), "/sys"); err == nil {
		e.ioDev = &dev
	} else {
		opts.Logger.Info("io limits unavailable", "reason", err)
	}
	mode := hostCgroupMode()
	e.ioWeight = ioWeightSupported(mode, opts.CgroupMountpoint)
	self, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	// On v2 this moves the daemon into a leaf of its own cgroup, where it stays: a
	// restart finds it there (setupPlacement), so there is nothing to undo.
	e.place, err = setupPlacement(mode, opts.CgroupMountpoint, opts.CgroupName, self, os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("cgroup setup (%s): %w", mode, err)
	}
	if err := e.sweep(); err != nil {
		return nil, fmt.Errorf("remove leftovers of a previous run: %w", err)
	}
	if opts.Seccomp != nil {
		prog, n, err := compileSeccomp(opts.Seccomp)
		if err != nil {
			opts.Logger.Warn("seccomp profile not compiled ahead; libcontainer compiles it in each container (~4 ms more per start)", "err", err)
		} else {
			e.seccompProg = prog
			undo.push(prog.Close)
			opts.Logger.Debug("seccomp profile compiled", "instructions", n)
		}
	}
	opts.Logger.Debug("per-job shares of the per-user kernel counts", "sysctl", e.shares.sysctl, "rlimits", e.shares.rlimits)
	// Last: nothing can fail after the pools start.
	e.pools = map[string]*pool{}
	e.forks = map[string]*forkPool{}
	fork := opts.ForkServer
	if fork && opts.Seccomp != nil && e.seccompProg == nil {
		opts.Logger.Warn("fork servers off: they need the seccomp profile compiled ahead, for their jobs to load")
		fork = false
	}
	for _, rt := range rts.list {
		size, ok := opts.PoolSizes[rt.Name]
		if !ok && rt.Name == "python" {
			size = opts.PoolSize
		}
		switch {
		case rt.Bootstrap == "python" && fork && size > 0:
			e.forks[rt.Name] = newForkPool(e, rt, size)
		case rt.Bootstrap != "" && size > 0:
			e.pools[rt.Name] = newPool(e, rt, size)
		}
	}
	e.startSessionPool()
	return e, nil
}

// usableRuntimes is the runtimes whose image is there and holds their commands.
func usableRuntimes(all []Runtime, images map[string]string, log *slog.Logger) (runtimeSet, error) {
	var ok []Runtime
	for _, rt := range all {
		tree, have := images[rt.Image]
		if !have {
			log.Warn("runtime left out: its image is not installed", "runtime", rt.Name, "image", rt.Image)
			continue
		}
		if missing := missingCommand(tree, rt, jobEnv); missing != "" {
			log.Warn("runtime left out: its image lacks a command", "runtime", rt.Name, "image", rt.Image, "command", missing)
			continue
		}
		ok = append(ok, rt)
	}
	if len(ok) == 0 {
		return runtimeSet{}, errors.New("no runtime can run: no image holds the commands of any (is the rootfs or images dir right?)")
	}
	return newRuntimeSet(ok)
}

// usedImages are the images some runtime runs on.
func usedImages(rts runtimeSet, images map[string]string) map[string]string {
	out := map[string]string{}
	for _, rt := range rts.list {
		out[rt.Image] = images[rt.Image]
	}
	return out
}

// anyImage is an image's tree on the disk that io limits throttle: the default
// image's, else the first by name.
func (e *Engine) anyImage(images map[string]string) string {
	if t, ok := images[""]; ok {
		return t
	}
	return images[slices.Sorted(maps.Keys(images))[0]]
}

// Runtimes lists what the engine runs, by name, with each one's limits in force.
func (e *Engine) Runtimes() []RuntimeInfo {
	pol := e.Policy()
	out := make([]RuntimeInfo, 0, len(e.runtimes.list))
	for _, rt := range e.runtimes.list {
		rp := pol.ForRuntime(rt)
		info := RuntimeInfo{Name: rt.Name, Version: rt.Version, Aliases: rt.Aliases, Compiled: rt.Compiled(),
			Warm: e.pools[rt.Name] != nil || e.forks[rt.Name] != nil, Limits: rp.Default, MaxLimits: rp.Max}
		if rt.Compiled() {
			info.CompileLimits, _ = pol.compileLimits(rt, rp.Default, Limits{})
		}
		out = append(out, info)
	}
	return out
}

// CgroupMode reports the cgroup hierarchy jobs are placed in.
func (e *Engine) CgroupMode() CgroupMode { return e.place.mode }

// Policy returns the limits' defaults and maximums in force.
func (e *Engine) Policy() Policy {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.policy
}

// SetPolicy replaces the defaults and maximums for jobs not yet started.
func (e *Engine) SetPolicy(p Policy) error {
	p, _ = fitOwnRlimits(p, ownRlimit) // as in New
	if err := p.Validate(); err != nil {
		return err
	}
	e.mu.Lock()
	e.policy = p
	e.mu.Unlock()
	return nil
}

// Load reports running and queued jobs.
func (e *Engine) Load() (running, queued int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running, e.queued
}

// Close refuses new jobs and waits for running ones (bounded by ctx).
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.closeSessions()
	for _, p := range e.pools {
		if err := p.close(); err != nil {
			e.opts.Logger.Warn("destroy warm containers", "runtime", p.rt.Name, "err", err)
		}
	}
	for _, p := range e.forks {
		if err := p.close(); err != nil {
			e.opts.Logger.Warn("destroy fork servers", "runtime", p.rt.Name, "err", err)
		}
	}
	done := make(chan struct{})
	go func() { e.jobs.Wait(); close(done) }()
	select {
	case <-done:
		if e.seccompProg != nil {
			e.seccompProg.Close()
		}
		e.removeJobsCgroups()
		if err := unmountHostMounts(e.opts.RunDir); err != nil {
			e.opts.Logger.Warn("unmount the jobs' root and init", "err", err)
		}
		// Last: from here another engine may take the run dir.
		e.runLock.Close()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// removeJobsCgroups removes the (now empty) cgroups that held this engine's jobs.
func (e *Engine) removeJobsCgroups() {
	dirs, err := e.jobCgroupDirs()
	if err != nil {
		return
	}
	for _, d := range dirs {
		err := os.Remove(d)
		// A child cgroup removed a moment ago may keep its parent busy briefly.
		for i := 0; errors.Is(err, unix.EBUSY) && i < 50; i++ {
			time.Sleep(2 * time.Millisecond)
			err = os.Remove(d)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.opts.Logger.Warn("remove jobs cgroup", "dir", d, "err", err)
		}
	}
}

// Settle waits until every finished job's container, cgroup and storage are removed
// (teardown runs just after a job's result is returned).
func (e *Engine) Settle() {
	for {
		e.mu.Lock()
		busy := e.running + e.queued
		e.mu.Unlock()
		if busy == 0 {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkIO refuses io limits the host cannot apply, rather than ignoring them.
func (e *Engine) checkIO(l Limits) error {
	for _, f := range []struct {
		name string
		v    int64
	}{{"limits.io_read_bps", l.IOReadBPS}, {"limits.io_write_bps", l.IOWriteBPS},
		{"limits.io_read_iops", l.IOReadIOPS}, {"limits.io_write_iops", l.IOWriteIOPS}, {"limits.io_weight", l.IOWeight}} {
		if f.v != 0 && e.ioDev == nil {
			return fieldErr(f.name, "%v", ErrNoBlockDevice)
		}
	}
	if l.IOWeight != 0 && !e.ioWeight {
		return fieldErr("limits.io_weight", "this host's io scheduler has no weights (cgroup v1 needs BFQ)")
	}
	return nil
}

func newJobID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "sbx-" + hex.EncodeToString(b[:])
}

// cleanup is a stack of undo steps, run in reverse order; it keeps going past failures.
type cleanup []func() error

func (c *cleanup) push(f func() error) { *c = append(*c, f) }

func (c *cleanup) run() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		errs = append(errs, (*c)[i]())
	}
	*c = nil
	return errors.Join(errs...)
}
