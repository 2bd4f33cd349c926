package sandbox

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/gpu"
)

// pool keeps containers of one runtime started ahead of time, each with its
// interpreter already running the runtime's bootstrap and waiting for code. A container
// serves exactly one job and is destroyed after it, like any other; a new one is started
// off the request path. Only jobs of the pooled shape (the runtime's default storage
// size, no GPUs, no client environment) take one; when the pool is empty, jobs start
// cold rather than wait for a refill.
type pool struct {
	e       *Engine
	rt      *Runtime
	size    int
	mu      sync.Mutex
	ready   []*warmProc
	pending map[string]bool // ids being started
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// teardowns are discarded containers being removed; close waits for them.
	teardowns sync.WaitGroup
}

// warmProc is a pooled container; undo tears it down.
type warmProc struct {
	id      string
	pool    *pool
	storage string // host directory of its tmpfs (/work)
	shape   int64  // its shape: the tmpfs size
	lim     Limits // what it was started with
	hard    Limits // its processes' hard rlimits: the most a job on it may have
	proc    *jobProc
	python  int // the waiting interpreter's pid (the init's child), for its rlimits
	undo    cleanup
}

func newPool(e *Engine, rt *Runtime, size int) *pool {
	p := &pool{e: e, rt: rt, size: size, pending: map[string]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if size <= 0 {
		close(p.done)
		return p
	}
	go p.fill()
	p.kick()
	return p
}

func (p *pool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill starts containers whenever the pool is below its size: as many at once as the
// host has cores that no job is using (at least one), so an emptied pool refills at the
// rate the host sustains without competing with the jobs that emptied it.
func (p *pool) fill() {
	defer close(p.done)
	failures := 0
	for range p.wake {
		for n := p.short(); n > 0; n = p.short() {
			running, _ := p.e.Load()
			n = min(n, max(runtime.NumCPU()-running, 1))
			errs := make(chan error, n)
			for range n {
				go func() { errs <- p.add() }()
			}
			failed := 0
			for range n {
				if err := <-errs; err != nil {
					failed++
					p.e.opts.Logger.Warn("warm container failed to start", "err", err)
				}
			}
			if failed > 0 {
				failures++
				time.Sleep(min(time.Duration(failures)*100*time.Millisecond, 5*time.Second))
				continue
			}
			failures = 0
		}
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
	}
}

// short is how many containers the pool lacks.
func (p *pool) short() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0
	}
	return p.size - len(p.ready)
}

// add starts one warm container with the policy's default limits and puts it in the
// pool. While it starts its id is pending, so it is never taken for a leftover.
func (p *pool) add() error {
	lim, err := p.e.Policy().ForRuntime(p.rt).Resolve(Limits{})
	if err != nil {
		return err
	}
	w := &warmProc{id: newJobID(), pool: p, shape: lim.Storage, lim: lim}
	_, w.hard = p.e.initLimits(procSpec{lim: lim, warm: true})
	p.mu.Lock()
	p.pending[w.id] = true
	p.mu.Unlock()
	w.storage, err = p.e.newStorage(w.id, lim, &w.undo)
	if err == nil {
		w.proc, err = p.e.startProc(procSpec{id: w.id, storage: w.storage, root: p.e.roots[p.rt.Image],
			argv: bootstraps[p.rt.Bootstrap], env: slices.Concat(jobEnv, p.rt.Env), lim: lim, warm: true}, &w.undo)
	}
	if err == nil {
		var init int
		if init, err = w.proc.proc.Pid(); err == nil {
			w.python, err = firstChild(init)
		}
	}
	p.mu.Lock()
	keep := err == nil && !p.closed
	if keep {
		p.ready = append(p.ready, w)
		delete(p.pending, w.id)
	}
	p.mu.Unlock()
	if keep {
		return nil
	}
	// Pending until torn down: its directories are never seen as a leftover.
	err = errors.Join(err, w.undo.run())
	p.mu.Lock()
	delete(p.pending, w.id)
	p.mu.Unlock()
	return err
}

// take hands out a warm container for a job of the pooled shape, or nil.
func (p *pool) take(lim Limits, lease *gpu.Lease) *warmProc {
	shape := p.e.Policy().ForRuntime(p.rt).Default.Storage
	if p.size <= 0 || lease != nil || lim.Storage != shape {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) > 0 {
		w := p.ready[0]
		if !w.hard.covers(lim) {
			// Started before the maximums were raised (SIGHUP): it cannot give this
			// job its rlimits, but may serve the next. This one starts cold.
			return nil
		}
		p.ready = p.ready[1:]
		stale := w.shape != shape // the default changed (SIGHUP) since it started
		select {
		case <-w.proc.waited: // died while idle (killed from outside): discard
			stale = true
		default:
		}
		if stale {
			p.pending[w.id] = true // until torn down
			p.teardowns.Add(1)
			go func() {
				defer p.teardowns.Done()
				_ = w.undo.run()
				p.mu.Lock()
				delete(p.pending, w.id)
				p.mu.Unlock()
			}()
			p.kick()
			continue
		}
		// The replacement starts once this job is over (see runWarm): a container
		// start is ~30 ms of CPU, which would otherwise compete with the job itself.
		return w
	}
	p.kick() // empty: the job starts cold; refill in the background
	return nil
}

// scanPools calls f with the ids of every pool's idle containers and of those being
// started or torn down, which are not leftovers. The set holds still while f runs: no
// container joins or leaves a pool, so f can list directories without racing a refill.
func (e *Engine) scanPools(f func(ids map[string]bool) error) error {
	out := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(e.pools)) { // one lock order
		p := e.pools[name]
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, w := range p.ready {
			out[w.id] = true
		}
		for id := range p.pending {
			out[id] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.forks)) {
		p := e.forks[name]
		p.mu.Lock()
		defer p.mu.Unlock()
		p.ids(out)
	}
	return f(out)
}

// close stops refilling, destroys the idle containers and waits for those being torn
// down.
func (p *pool) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	idle := p.ready
	p.ready = nil
	p.mu.Unlock()
	p.kick()
	<-p.done
	var errs []error
	for _, w := range idle {
		errs = append(errs, w.undo.run())
	}
	p.teardowns.Wait()
	return errors.Join(errs...)
}

// dispatch gives a warm container the job's limits before the code is handed over: the
// cgroup's resources, and the rlimits of the waiting python process. The rlimits are set
// always: the container started with the policy's maximums as hard limits (see
// initLimits), which only lowering, never raising, needs no CAP_SYS_RESOURCE for.
func (e *Engine) dispatch(w *warmProc, lim Limits) error {
	if lim != w.lim { // else it has the default resources already
		if err := e.applyResources(w, lim); err != nil {
			return err
		}
	}
	return setRlimits(w.python, lim)
}

// setRlimits gives a waiting interpreter (pid) the job's rlimits.
func setRlimits(pid int, lim Limits) error {
	for _, rl := range rlimits(lim) {
		r := unix.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := unix.Prlimit(pid, rl.Type, &r, nil); err != nil {
			return fmt.Errorf("set rlimit %d of the waiting python: %w", rl.Type, err)
		}
	}
	return nil
}

// applyResources gives a warm container's cgroup the job's limits.
func (e *Engine) applyResources(w *warmProc, lim Limits) error {
	cfg := w.proc.ctr.Config()
	want := e.containerConfig(w.id, "", "", lim)
	cg := *cfg.Cgroups
	cg.Resources = want.Cgroups.Resources
	cfg.Cgroups = &cg
	if err := w.proc.ctr.Set(cfg); err != nil {
		return fmt.Errorf("apply limits to warm container: %w", err)
	}
	return nil
}

// firstChild is the process the job init forked: python. It is forked right after the
// init starts, so it is there by the time python says it is ready; a short retry covers
// a race.
func firstChild(pid int) (int, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children"
	for range 100 {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		time.Sleep(time.Millisecond)
	}
	return 0, errors.New("the job init has no child")
}

// idle is how many warm containers wait for a job.
func (p *pool) idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready)
}

// PoolIdle reports how many warm containers are ready for jobs, of every runtime.
func (e *Engine) PoolIdle() int {
	n := 0
	for _, p := range e.pools {
		n += p.idle()
	}
	for _, p := range e.forks {
		n += p.idleCount()
	}
	return n
}

// takeWarm hands out a warm container for the job, or nil when none fits.
func (e *Engine) takeWarm(p *prepared, lease *gpu.Lease) *warmProc {
	pl := e.pools[p.rt.Name]
	if pl == nil || len(p.req.Env) > 0 {
		return nil // a client environment must be there when the interpreter starts
	}
	return pl.take(p.lim, lease)
}
