package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/gpu"
)

// ErrNotStarted wraps why a submitted job never ran (its context ended while it
// waited for a slot, or its GPUs could not be had).
var ErrNotStarted = errors.New("the job did not start")

// Job is a job the engine accepted. Its ID exists from the moment Submit returns.
type Job struct {
	ID     string
	engine *Engine
	done   chan struct{}
	res    *Result
	err    error
	cancel context.CancelFunc
}

// Done is closed when the job has a result (or has given up before running).
func (j *Job) Done() <-chan struct{} { return j.done }

// Cancel ends the job: a queued job never runs, a running one is killed and reported
// as cancelled. Cancelling a finished job does nothing.
func (j *Job) Cancel() { j.cancel() }

// Wait returns the job's result once it is done, or ctx's error if ctx ends first
// (which does not cancel the job). A job that never ran returns an error that wraps
// ErrNotStarted and the cause (ctx's error, a gpu error).
func (j *Job) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-j.done:
		return j.res, j.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prepared is a request checked and resolved: everything the job's steps need.
type prepared struct {
	id      string
	req     Request
	rt      *Runtime
	root    string // the image's read-only root
	files   []File
	names   []string // the files' names, main first
	lim     Limits
	clim    Limits // the compile step's, for compiled runtimes
	collect []string
}

// Run submits req and waits for its result: Submit, then Wait. ctx is the job's: when
// it ends, the job is cancelled. An error means the job did not run.
func (e *Engine) Run(ctx context.Context, req Request) (*Result, error) {
	j, err := e.Submit(ctx, req)
	if err != nil {
		return nil, err
	}
	<-j.done
	return j.res, j.err
}

// Submit checks req, takes a job slot or a queue place for it and starts it in the
// background. ctx bounds the job: if it ends first, the job is cancelled. A non-nil
// error means it was not accepted: an invalid request (a *FieldError), ErrBusy, or
// ErrClosed.
func (e *Engine) Submit(ctx context.Context, req Request) (*Job, error) {
	p, err := e.prepare(req)
	if err != nil {
		return nil, err
	}
	slot, err := e.reserve()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	j := &Job{ID: p.id, engine: e, done: make(chan struct{}), cancel: cancel}
	queued := time.Now()
	go func() {
		defer cancel()
		j.res, j.err = e.start(ctx, p, slot, queued)
		close(j.done)
	}()
	return j, nil
}

// start waits (queued) for the job's GPUs, then its slot, and runs it.
func (e *Engine) start(ctx context.Context, p *prepared, slot bool, queued time.Time) (*Result, error) {
	// GPUs first, holding only a queue place: GPU waiters never sit on CPU jobs' slots.
	var lease *gpu.Lease
	if p.req.GPUs.Wanted() {
		var err error
		if e.opts.GPUs == nil {
			err = fmt.Errorf("%w: this host has no GPUs", gpu.ErrNoGPUs)
		} else {
			lease, err = e.opts.GPUs.Acquire(ctx, p.id, p.req.GPUs)
		}
		if err != nil {
			e.unreserve(slot)
			return nil, fmt.Errorf("%w: %w", ErrNotStarted, err)
		}
	}
	if !slot {
		if err := e.waitSlot(ctx); err != nil {
			lease.Release()
			return nil, fmt.Errorf("%w: %w", ErrNotStarted, err)
		}
	}
	res, teardown := e.runJob(ctx, p, lease, time.Since(queued))
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

// prepare checks a request and resolves its runtime, limits and files.
func (e *Engine) prepare(req Request) (*prepared, error) {
	lang := req.Language
	if lang == "" {
		lang = "python"
	}
	rt, err := e.runtimes.lookup(lang, req.Version)
	if err != nil {
		return nil, err
	}
	root, ok := e.roots[rt.Image]
	if !ok {
		return nil, fieldErr("language", "%s's image %q is not installed on this host", rt.Name, rt.Image)
	}
	p := &prepared{id: req.ID, req: req, rt: rt, root: root}
	if p.id == "" {
		p.id = newJobID()
	} else if !validID(p.id) {
		return nil, fieldErr("id", "%q is not a valid job id (sbx-, then 1 to 40 of [a-z0-9-])", p.id)
	}
	pol := e.Policy()
	if p.lim, err = pol.ForRuntime(rt).Resolve(req.Limits); err != nil {
		return nil, err
	}
	if err := e.checkIO(p.lim); err != nil {
		return nil, err
	}
	if rt.Compiled() {
		if p.clim, err = pol.compileLimits(rt, p.lim, req.CompileLimits); err != nil {
			return nil, err
		}
	} else if req.CompileLimits != (Limits{}) {
		return nil, fieldErr("limits.compile_timeout", "%s has no compile step", rt.Name)
	}
	caps := e.opts.Caps
	if p.files, err = jobFiles(rt, req, caps); err != nil {
		return nil, err
	}
	var size int64
	for _, f := range p.files {
		p.names = append(p.names, f.Name)
		size += int64(len(f.Content))
	}
	if size > p.lim.Storage {
		return nil, fieldErr("files", "%d bytes of files do not fit in limits.storage (%d bytes)", size, p.lim.Storage)
	}
	if err := checkArgs("args", req.Args, caps); err != nil {
		return nil, err
	}
	if err := checkEnv(rt, req.Env, caps); err != nil {
		return nil, err
	}
	if err := checkCollect(req.Collect, caps); err != nil {
		return nil, err
	}
	for _, g := range req.Collect {
		p.collect = append(p.collect, strings.TrimPrefix(g, WorkDir+"/"))
	}
	if len(req.Tests) > caps.MaxTests {
		return nil, fieldErr("tests", "has %d test cases, more than %d", len(req.Tests), caps.MaxTests)
	}
	for i, t := range req.Tests {
		if err := checkArgs(fmt.Sprintf("tests[%d].args", i), t.Args, caps); err != nil {
			return nil, err
		}
	}
	switch req.Compare {
	case "", CompareTrim, CompareExact:
	default:
		return nil, fieldErr("compare", "%q is not a comparison (trim, exact)", req.Compare)
	}
	if len(req.Tests) > 0 && len(req.Collect) > 0 {
		return nil, fieldErr("collect", "collects from a single run, not from test cases")
	}
	return p, nil
}

func validID(id string) bool {
	rest, ok := strings.CutPrefix(id, "sbx-")
	if !ok || len(rest) == 0 || len(rest) > 40 {
		return false
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// reserve takes a slot at once if one is free (slot true), else a queue place.
func (e *Engine) reserve() (slot bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false, ErrClosed
	}
	select {
	case e.slots <- struct{}{}:
		e.running++
		e.jobs.Add(1)
		return true, nil
	default:
	}
	if e.queued >= e.opts.MaxQueue {
		return false, ErrBusy
	}
	e.queued++
	e.jobs.Add(1) // a queued job holds Close too: it will run or give up soon
	return false, nil
}

// waitSlot turns a queue place into a slot, or gives the place up when ctx ends.
func (e *Engine) waitSlot(ctx context.Context) error {
	select {
	case e.slots <- struct{}{}:
		e.mu.Lock()
		e.queued--
		e.running++
		e.mu.Unlock()
		return nil
	case <-ctx.Done():
		e.unreserve(false)
		return ctx.Err()
	}
}

// unreserve gives back what reserve took, for a job that will not run.
func (e *Engine) unreserve(slot bool) {
	if slot {
		e.release()
		return
	}
	e.mu.Lock()
	e.queued--
	e.mu.Unlock()
	e.jobs.Done()
}

func (e *Engine) release() {
	<-e.slots
	e.mu.Lock()
	e.running--
	e.mu.Unlock()
	e.jobs.Done()
}

// runJob runs one job and always returns a result; setup failures become internal_error.
// teardown undoes what the job set up; the caller runs it once the result is out.
func (e *Engine) runJob(ctx context.Context, p *prepared, lease *gpu.Lease, wait time.Duration) (*Result, func()) {
	res := &Result{ID: p.id, Runtime: p.rt.Name, Version: p.rt.Version, Limits: p.lim.View(), GPUs: lease.UUIDs()}
	res.ExitCode = -1
	if p.rt.Compiled() {
		v := p.clim.View()
		res.CompileLimits = &v
	}
	log := e.opts.Logger.With("job", p.id)
	job := JobInfo{ID: p.id, Runtime: p.rt.Name, Started: time.Now(), QueueWait: wait, Limits: res.Limits, GPUs: res.GPUs}
	e.reg.add(job)
	var undo cleanup
	if err := e.execute(ctx, p, lease, res, &undo); err != nil {
		log.Error("job failed to run", "err", err)
		res.Status = StatusInternalError
		res.Error = "the sandbox failed to run the job"
	}
	e.reg.remove(p.id) // no longer running
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
