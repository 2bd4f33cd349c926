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
	"os"
	"path/filepath"
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
	// Rootfs is the unpacked root filesystem jobs see read-only.
	Rootfs string
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
	// code, for jobs of the default shape; 0 disables the pool.
	PoolSize int
	// GPUs leases GPUs to jobs that ask for them; nil means the host has none.
	GPUs *gpu.Allocator
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
	initBin   string       // static copy of this binary, the jobs' pid 1
	root      string       // the jobs' root: a read-only overlay of Options.Rootfs
	devDir    string       // the jobs' /dev, read-only
	ioDev     *blockDevice // the disk under the rootfs, which io limits throttle; nil: none
	ioWeight  bool         // whether the host can weigh io (v1 needs BFQ)
	stateRoot string       // libcontainer's state directory
	jobsRoot  string       // per-job storage mounts
	runLock   *os.File     // flock on RunDir: one engine per run dir (see sweep.go)
	// seccompProg is Options.Seccomp compiled once, for the jobs' init to load (nil:
	// libcontainer compiles it in every container, or there is no profile).
	seccompProg *os.File
	// shares is what each job gets of the kernel's per-user counts (ucounts.go).
	shares kernelShares

	reg  registry // jobs holding a slot, for listing and killing
	pool *pool    // warm containers
}

// Request is one job to run.
type Request struct {
	Language string // "python" (the default when empty)
	Code     string
	Stdin    []byte
	Limits   Limits // zero fields take the policy's defaults
	// GPUs selects GPUs for the job (zero value: none). Leases are exclusive; a request
	// that cannot be met fails at once, or after GPUs.Wait if it sets one.
	GPUs gpu.Request
}

func (r Request) wantsGPUs() bool {
	return r.GPUs.Count > 0 || r.GPUs.All || len(r.GPUs.UUIDs) > 0 || len(r.GPUs.Indices) > 0
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
	if fi, err := os.Stat(filepath.Join(opts.Rootfs, "usr/bin/python3")); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s has no usr/bin/python3: %w", opts.Rootfs, err)
	}
	var err error
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
	if e.initBin, e.root, e.devDir, err = hostMounts(opts.RunDir, opts.Rootfs); err != nil {
		return nil, err
	}
	undo.push(func() error { return unmountHostMounts(opts.RunDir) })
	if dev, err := blockDeviceOf(opts.Rootfs, "/sys"); err == nil {
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
	e.pool = newPool(e, opts.PoolSize) // last: nothing can fail after it starts
	return e, nil
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
	if err := e.pool.close(); err != nil {
		e.opts.Logger.Warn("destroy warm containers", "err", err)
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

// Run validates req, waits for a slot (bounded by the queue size and ctx) and runs
// the job. A non-nil error means the job did not run: the request was invalid, the
// daemon is busy or closing, or ctx ended while queued. Failures once a job has
// started are reported in the Result as internal_error.
func (e *Engine) Run(ctx context.Context, req Request) (*Result, error) {
	if req.Language != "" && req.Language != "python" {
		return nil, fmt.Errorf("%w: %q (supported: python)", ErrUnsupportedLanguage, req.Language)
	}
	lim, err := e.Policy().Resolve(req.Limits)
	if err != nil {
		return nil, err
	}
	if err := e.checkIO(lim); err != nil {
		return nil, err
	}
	queued := time.Now()
	if err := e.acquire(ctx); err != nil {
		return nil, err
	}
	wait := time.Since(queued)
	id := newJobID()
	var lease *gpu.Lease
	if req.wantsGPUs() {
		if e.opts.GPUs == nil {
			e.release()
			return nil, fmt.Errorf("%w: this host has no GPUs", gpu.ErrNoGPUs)
		}
		if lease, err = e.opts.GPUs.Acquire(ctx, id, req.GPUs); err != nil {
			e.release()
			return nil, err
		}
	}
	res, teardown := e.runJob(id, lim, req, lease, wait)
	// The job's processes are all gone by now (its pid namespace ended with its init),
	// so the answer need not wait for the container, cgroup and mount to be removed.
	// The slot and the GPUs stay taken until they are; Close and Settle wait for it.
	go func() {
		teardown()
		lease.Release()
		e.release()
	}()
	return res, nil
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

func (e *Engine) acquire(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	select {
	case e.slots <- struct{}{}:
		e.running++
		e.jobs.Add(1)
		e.mu.Unlock()
		return nil
	default:
	}
	if e.queued >= e.opts.MaxQueue {
		e.mu.Unlock()
		return ErrBusy
	}
	e.queued++
	e.jobs.Add(1) // a queued job holds Close too: it will run or give up soon
	e.mu.Unlock()
	select {
	case e.slots <- struct{}{}:
		e.mu.Lock()
		e.queued--
		e.running++
		e.mu.Unlock()
		return nil
	case <-ctx.Done():
		e.mu.Lock()
		e.queued--
		e.mu.Unlock()
		e.jobs.Done()
		return ctx.Err()
	}
}

func (e *Engine) release() {
	<-e.slots
	e.mu.Lock()
	e.running--
	e.mu.Unlock()
	e.jobs.Done()
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

// runJob runs one job and always returns a result; setup failures become internal_error.
// teardown undoes what the job set up; the caller runs it once the result is out.
func (e *Engine) runJob(id string, lim Limits, req Request, lease *gpu.Lease, wait time.Duration) (*Result, func()) {
	res := &Result{ID: id, Limits: lim.View(), ExitCode: -1, GPUs: lease.UUIDs()}
	log := e.opts.Logger.With("job", id)
	job := JobInfo{ID: id, Started: time.Now(), QueueWait: wait, Limits: res.Limits, GPUs: res.GPUs}
	e.reg.add(job)
	var undo cleanup
	if err := e.execute(id, lim, req, lease, res, &undo); err != nil {
		log.Error("job failed to run", "err", err)
		res.Status = StatusInternalError
		res.Error = "the sandbox failed to run the job"
	}
	e.reg.remove(id) // no longer running
	return res, func() {
		err := undo.run()
		if err != nil {
			log.Error("job cleanup failed", "err", err)
		}
		if e.opts.Observer != nil {
			e.opts.Observer.JobDone(job, res, err)
		}
	}
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
