package sandbox

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// JobInfo describes a job that holds a slot: what the admin's job list shows and what
// an Observer is told when it ends.
type JobInfo struct {
	ID        string        `json:"id"`
	Runtime   string        `json:"runtime"`
	Started   time.Time     `json:"started"`
	QueueWait time.Duration `json:"-"` // how long it waited for a slot
	Limits    LimitsView    `json:"limits"`
	GPUs      []string      `json:"gpus,omitempty"`
}

// Observer is told about every job that ran, once its cleanup is done; metrics hang off
// it. cleanupErr is what undoing the job's setup failed at (cgroups, mounts), or nil.
// It is called on the job's goroutine, so it must be quick.
type Observer interface {
	JobDone(job JobInfo, res *Result, cleanupErr error)
}

// registry tracks the jobs that hold a slot, so an admin can list and kill them.
type registry struct {
	mu   sync.Mutex
	jobs map[string]*entry
}

type entry struct {
	info   JobInfo
	target jobTarget // nil until the job's process runs
	killed bool      // a kill came before the job's process ran
}

// jobTarget is a running step's init: a container's, or a fork server's job's.
type jobTarget interface {
	kill() error           // SIGKILL to the init, which ends its pid namespace
	initPID() (int, error) // the init's pid in the daemon's pid namespace
}

// ctrTarget is a libcontainer container's init.
type ctrTarget struct{ ctr *libcontainer.Container }

func (t ctrTarget) kill() error { return signalKill(t.ctr) }

func (t ctrTarget) initPID() (int, error) {
	st, err := t.ctr.State()
	if err != nil {
		return 0, err
	}
	return st.InitProcessPid, nil
}

func (r *registry) add(info JobInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.jobs == nil {
		r.jobs = map[string]*entry{}
	}
	r.jobs[info.ID] = &entry{info: info}
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.jobs, id)
}

// started records a job's running container; a kill that came earlier is delivered now.
func (r *registry) started(id string, t jobTarget) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.jobs[id]; e != nil {
		e.target = t
		if e.killed {
			_ = t.kill()
		}
	}
}

// wasKilled says whether an admin killed the job (its later steps do not run).
func (r *registry) wasKilled(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.jobs[id]
	return e != nil && e.killed
}

// Jobs lists the jobs running now, oldest first.
func (e *Engine) Jobs() []JobInfo {
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	out := make([]JobInfo, 0, len(e.reg.jobs))
	for _, j := range e.reg.jobs {
		out = append(out, j.info)
	}
	slices.SortFunc(out, func(a, b JobInfo) int { return cmp.Compare(a.Started.UnixNano(), b.Started.UnixNano()) })
	return out
}

// Kill ends a running job at once. Its result, returned to its own client as usual,
// says "signaled" with SIGKILL. A job that is ending anyway is not an error.
func (e *Engine) Kill(id string) error {
	e.reg.mu.Lock()
	defer e.reg.mu.Unlock()
	j := e.reg.jobs[id]
	if j == nil {
		return fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	j.killed = true
	if j.target == nil {
		return nil // registry.started delivers it
	}
	if err := j.target.kill(); err != nil {
		return fmt.Errorf("kill job %s: %w", id, err)
	}
	return nil
}

// Signal sends sig to a running job's command (the process its init started, which
// passes it on or not as any program would). A job between steps, or whose command has
// ended, is not an error.
func (e *Engine) Signal(id string, sig unix.Signal) error {
	e.reg.mu.Lock()
	j := e.reg.jobs[id]
	var t jobTarget
	if j != nil {
		t = j.target
	}
	e.reg.mu.Unlock()
	if j == nil {
		return fmt.Errorf("%w: %q", ErrJobNotFound, id)
	}
	if t == nil {
		return nil
	}
	init, err := t.initPID()
	if err != nil {
		return nil // the container is gone: the step ended
	}
	pid, err := firstChild(init)
	if err != nil {
		return nil
	}
	if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("signal job %s: %w", id, err)
	}
	return nil
}

// Signal sends sig to the job's command (see Engine.Signal).
func (j *Job) Signal(sig unix.Signal) error {
	if j.engine == nil {
		return nil
	}
	return j.engine.Signal(j.ID, sig)
}

// KillAll kills every running job (shutdown after the grace period) and says how many.
func (e *Engine) KillAll() int {
	jobs := e.Jobs()
	n := 0
	for _, j := range jobs {
		if e.Kill(j.ID) == nil {
			n++
		}
	}
	return n
}

func signalKill(ctr *libcontainer.Container) error {
	if err := ctr.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return err
	}
	return nil
}
