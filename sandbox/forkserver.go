package sandbox

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/gpu"
)

// A fork server (zygote) is a long-lived python in a container of its own that never
// runs a job itself: per job it forks a process into fresh mount, pid, ipc, uts, network
// and cgroup namespaces, which the daemon moves into a fresh job cgroup; that process
// mounts the job's own size-capped tmpfs at /work and /tmp, a fresh /proc (runc's masks
// and read-only paths), /dev/shm and /dev/pts, drops every capability, sets no_new_privs,
// loads the job's seccomp program and rlimits, forks the job's python (the warm
// bootstrap) and becomes the job's init (jobinit, adopting it). A job so costs a few
// forks and mounts instead of a container start and python's start-up (~27 ms of CPU).
// A server serves one job at a time (so two jobs never share its user namespace at
// once) and is retired after ForkServerUses jobs. README's "Fork server" says what jobs
// on one server share and why that is acceptable.

//go:embed forkserver.py
var forkServerSource string

// forkServerArgv is a python fork server's command.
var forkServerArgv = []string{"python3", "-c", forkServerSource + pythonBootstrapDefs + "_serve()\n"}

// ForkServerUses is how many jobs one fork server serves before it is retired and
// replaced: its jobs share its address-space layout and interpreter state (see README).
const ForkServerUses = 100

// forkWait is how long a job waits for a busy fork server to come free before it
// starts cold: a fork job's teardown takes a few ms, a cold start ~30 ms of CPU.
const forkWait = 100 * time.Millisecond

// forkServerCaps are the capabilities a fork server holds in its user namespace: to make
// namespaces and mounts (SYS_ADMIN), bring up lo (NET_ADMIN), drop the bounding set
// (SETPCAP) and become the job's user (SETUID, SETGID). Its jobs hold none.
var forkServerCaps = []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETPCAP", "CAP_SETUID", "CAP_SETGID"}

// forkPool keeps a runtime's fork servers.
type forkPool struct {
	e    *Engine
	rt   *Runtime
	size int
	mu   sync.Mutex
	idle []*zygote
	// live counts the servers started or starting and not yet retired, serving those
	// serving a job; busy holds the ids of those serving a job, starting or being torn
	// down, and of their jobs' slots (none are leftovers).
	live    int
	serving int
	busy    map[string]bool
	freed   chan struct{} // closed (and replaced) whenever a server comes free
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// teardowns are retired servers being removed; close waits for them.
	teardowns sync.WaitGroup
}

// zygote is one fork server.
type zygote struct {
	id   string
	pool *forkPool
	proc *jobProc
	sock *os.File // the daemon's end of the server's socket (SOCK_SEQPACKET)
	hard Limits   // its processes' hard rlimits: the most a job on it may have
	uses int
	undo cleanup
	// slots are the next jobs' slots, made ahead (slotsAhead of them, made or being
	// made: preparing counts those being made).
	slots     chan slotMade
	preparing sync.WaitGroup
}

// slotMade is a prepared slot, or why it could not be made.
type slotMade struct {
	s   *forkSlot
	err error
}

// slotsAhead is how many jobs' inits a server keeps made ahead. A slot takes an RCU
// grace period to make when the host is idle (moving a process into a cgroup waits for
// one), longer than a short job: with two ahead, a submission's test cases, one after
// another, find theirs made.
const slotsAhead = 2

func newForkPool(e *Engine, rt *Runtime, size int) *forkPool {
	p := &forkPool{e: e, rt: rt, size: size, busy: map[string]bool{}, freed: make(chan struct{}),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	go p.fill()
	p.kick()
	return p
}

func (p *forkPool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill starts servers while fewer than size are live, up to two at a time.
func (p *forkPool) fill() {
	defer close(p.done)
	failures := 0
	for range p.wake {
		for {
			p.mu.Lock()
			n := min(p.size-p.live, 2)
			closed := p.closed
			p.live += max(n, 0)
			p.mu.Unlock()
			if closed {
				return
			}
			if n <= 0 {
				break
			}
			errs := make(chan error, n)
			for range n {
				go func() { errs <- p.add() }()
			}
			failed := false
			for range n {
				if err := <-errs; err != nil {
					failed = true
					p.e.opts.Logger.Warn("fork server failed to start", "err", err)
				}
			}
			if failed {
				failures++
				time.Sleep(min(time.Duration(failures)*100*time.Millisecond, 5*time.Second))
			} else {
				failures = 0
			}
		}
	}
}

// add starts one server (counted in live already) and makes it idle.
func (p *forkPool) add() error {
	lim, err := p.e.Policy().ForRuntime(p.rt).Resolve(Limits{})
	if err != nil {
		p.retired()
		return err
	}
	z := &zygote{id: newJobID(), pool: p, slots: make(chan slotMade, slotsAhead)}
	_, z.hard = p.e.initLimits(procSpec{lim: lim, warm: true})
	p.mu.Lock()
	p.busy[z.id] = true
	p.mu.Unlock()
	err = p.e.startZygote(z, lim)
	p.mu.Lock()
	keep := err == nil && !p.closed
	if keep {
		delete(p.busy, z.id)
		p.idle = append(p.idle, z)
		p.signalFreed()
	}
	p.mu.Unlock()
	if keep {
		return nil
	}
	err = errors.Join(err, z.undo.run())
	p.mu.Lock()
	delete(p.busy, z.id)
	p.mu.Unlock()
	p.retired()
	return err
}

// retired counts a server out of live and asks for a replacement.
func (p *forkPool) retired() {
	p.mu.Lock()
	p.live--
	p.mu.Unlock()
	p.kick()
}

func (p *forkPool) signalFreed() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// take hands out an idle server for a job, waiting up to forkWait for a busy one; nil
// when none fits or comes free: the job starts cold.
func (p *forkPool) take(lim Limits, lease *gpu.Lease) *zygote {
	if lease != nil {
		return nil
	}
	deadline := time.Now().Add(forkWait)
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for len(p.idle) > 0 {
			z := p.idle[0]
			p.idle = p.idle[1:]
			select {
			case <-z.proc.waited: // died while idle (killed from outside)
				p.retire(z)
				continue
			default:
			}
			if !z.hard.covers(lim) {
				// Started before the maximums were raised (SIGHUP): replace it.
				p.retire(z)
				continue
			}
			p.busy[z.id] = true
			p.serving++
			return z
		}
		// Wait only for a server that is serving a job: it is free in a few ms. One
		// being started takes longer than a cold start.
		left := time.Until(deadline)
		if p.closed || p.serving == 0 || left <= 0 {
			return nil
		}
		freed := p.freed
		p.mu.Unlock()
		select {
		case <-freed:
		case <-time.After(left):
		}
		p.mu.Lock()
	}
}

// retire tears z down off the caller's path (p.mu held).
func (p *forkPool) retire(z *zygote) {
	p.busy[z.id] = true // until torn down
	p.teardowns.Add(1)
	go func() {
		defer p.teardowns.Done()
		_ = z.undo.run()
		p.mu.Lock()
		delete(p.busy, z.id)
		p.mu.Unlock()
		p.retired()
	}()
}

// put gives a server back once its job's processes are gone, or retires it.
func (p *forkPool) put(z *zygote, healthy bool) {
	z.uses++
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serving--
	dead := false
	select {
	case <-z.proc.waited:
		dead = true
	default:
	}
	if p.closed {
		// close has returned or waits for jobs: tear down here, within the job's
		// teardown, which the engine's Close waits for.
		p.mu.Unlock()
		_ = z.undo.run()
		p.mu.Lock()
		delete(p.busy, z.id)
		return
	}
	if !healthy || dead || z.uses >= ForkServerUses {
		p.retire(z)
		return
	}
	delete(p.busy, z.id)
	p.idle = append(p.idle, z)
	p.signalFreed()
}

func (p *forkPool) ids(out map[string]bool) {
	for _, z := range p.idle {
		out[z.id] = true
	}
	for id := range p.busy {
		out[id] = true
	}
}

func (p *forkPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// close stops refilling, destroys the idle servers and waits for those being torn
// down. Servers still serving a job are retired when it ends.
func (p *forkPool) close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	p.kick()
	<-p.done
	var errs []error
	for _, z := range idle {
		errs = append(errs, z.undo.run())
	}
	p.teardowns.Wait()
	return errors.Join(errs...)
}

// startZygote starts z's container: python running forkServerSource as root of its
// user namespace with forkServerCaps, no seccomp filter of its own (each job loads the
// job's), its socket and the job's seccomp program as descriptors.
func (e *Engine) startZygote(z *zygote, lim Limits) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fork server socket: %w", err)
	}
	z.sock = os.NewFile(uintptr(fds[0]), "forkserver")
	theirs := os.NewFile(uintptr(fds[1]), "forkserver")
	z.undo.push(z.sock.Close)
	defer theirs.Close()
	storage, err := e.newStorage(z.id, Limits{Storage: 1 << 20}, &z.undo)
	if err != nil {
		return err
	}
	extra := []*os.File{theirs}
	if e.seccompProg != nil {
		extra = append(extra, e.seccompProg)
	}
	z.proc, err = e.startProc(procSpec{id: z.id, storage: storage, root: e.roots[z.pool.rt.Image], argv: forkServerArgv,
		env: slices.Concat(jobEnv, z.pool.rt.Env), lim: lim, warm: true, longLived: true, zygote: true, extra: extra}, &z.undo)
	if err != nil {
		return err
	}
	z.undo.push(z.dropSlots)
	for range slotsAhead {
		z.pool.prepare(z)
	}
	return nil
}

// forkRequest is what a fork server is told about a job; the job's descriptors come
// with it.
type forkRequest struct {
	UID     int        `json:"uid"`
	GID     int        `json:"gid"`
	Shm     int64      `json:"shm"`
	Rlimits [][3]int64 `json:"rlimits"`
}

// forkTarget is a fork job's init, known by a pidfd: the daemon's way to kill it.
type forkTarget struct {
	mu     sync.Mutex
	pidfd  int // -1 once closed
	pid    int // in the daemon's pid namespace
	killed atomic.Bool
}

func (t *forkTarget) kill() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pidfd < 0 {
		return nil
	}
	t.killed.Store(true)
	if err := unix.PidfdSendSignal(t.pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

func (t *forkTarget) initPID() (int, error) { return t.pid, nil }

func (t *forkTarget) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.pidfd >= 0 {
		unix.Close(t.pidfd)
		t.pidfd = -1
	}
}

// forkSlot is a job made ahead of its job, as a warm container is: forked by a fork
// server into fresh namespaces, in a fresh cgroup of the default limits, with a fresh
// /proc, its storage (a tmpfs of the default size) mounted, its privileges dropped and
// its python (jp) waiting for code, with the policy's maximums as hard rlimits (hard),
// which the job lowers to its own. A slot made for a job that needs another storage
// size stops short of that: its init waits for the job's storage, limits and stdio on
// its socket (jp nil until they come). Its id names its cgroup and the job's storage.
type forkSlot struct {
	id      string
	jsock   *net.UnixConn
	target  *forkTarget
	m       cgroups.Manager
	lim     Limits // the cgroup's
	hard    Limits // the hard rlimits of a slot made ahead
	storage string // the job's storage dir, made with the slot
	paths   map[string]string
	waited  chan struct{} // closed when the init has exited
	jp      *jobProc      // the job's python, waiting for code
	python  int           // its pid
	undo    cleanup
}

// prepare starts making one more slot for z, its job's python and all.
func (p *forkPool) prepare(z *zygote) {
	z.preparing.Add(1)
	go func() {
		defer z.preparing.Done()
		s, err := p.e.newSlot(z)
		if err == nil {
			if err = p.e.readySlot(s, z.hard); err != nil {
				err = errors.Join(err, s.undo.run())
				s = nil
			}
		}
		z.slots <- slotMade{s, err} // never blocks: at most slotsAhead are made or being made
	}()
}

// takeSlot returns one of z's prepared slots for a job of limits lim (waiting for one
// being made), and whether another is made already (spare); the caller has its
// replacement made (prepare) in any case. When that one failed, died while idle, or was
// made for another storage size or lower maximums (a SIGHUP since), it is torn down and
// a slot made now, for the job to finish.
func (z *zygote) takeSlot(lim Limits) (s *forkSlot, spare bool, err error) {
	m := <-z.slots
	spare = len(z.slots) > 0
	s, err = z.slot(m, lim)
	return s, spare, err
}

// slot is the slot m, or, where it cannot serve a job of limits lim, one made now.
func (z *zygote) slot(m slotMade, lim Limits) (*forkSlot, error) {
	if m.err != nil {
		z.pool.e.opts.Logger.Warn("fork server: preparing a job failed; trying again", "err", m.err)
		return z.pool.e.newSlot(z)
	}
	s := m.s
	select {
	case <-s.waited:
	default:
		if s.lim.Storage == lim.Storage && s.hard.covers(lim) {
			return s, nil
		}
	}
	if err := s.undo.run(); err != nil {
		return nil, err
	}
	return z.pool.e.newSlot(z)
}

// readySlot makes s's job ahead: its storage mounted with s's limits and its python
// waiting for code, with hard rlimits hard.
func (e *Engine) readySlot(s *forkSlot, hard Limits) error {
	if err := e.mountStorage(s.storage, s.lim, &s.undo); err != nil {
		return err
	}
	jp, err := e.fork(s, s.storage, s.lim, hard, &s.undo)
	if err != nil {
		return err
	}
	if s.python, err = firstChild(s.target.pid); err != nil {
		return fmt.Errorf("find the fork job's python: %w", err)
	}
	s.jp, s.hard = jp, hard
	return nil
}

// dropSlots tears down z's unused slots, once those being made are.
func (z *zygote) dropSlots() error {
	z.preparing.Wait()
	var errs []error
	for {
		select {
		case m := <-z.slots:
			if m.s != nil {
				errs = append(errs, m.s.undo.run())
			}
		default:
			return errors.Join(errs...)
		}
	}
}

// newSlot asks z for a job's init and moves it into a new cgroup.
func (e *Engine) newSlot(z *zygote) (_ *forkSlot, retErr error) {
	s := &forkSlot{id: newJobID(), waited: make(chan struct{})}
	p := z.pool
	p.mu.Lock()
	p.busy[s.id] = true // until its job's storage and cgroup are gone
	p.mu.Unlock()
	s.undo.push(func() error {
		p.mu.Lock()
		delete(p.busy, s.id)
		p.mu.Unlock()
		return nil
	})
	defer func() {
		if retErr != nil {
			retErr = errors.Join(retErr, s.undo.run())
		}
	}()
	lim, err := e.Policy().ForRuntime(p.rt).Resolve(Limits{})
	if err != nil {
		return nil, err
	}
	s.lim = lim
	// Its storage dir comes first, as a job's does: what a restart sweeps by.
	s.storage = filepath.Join(e.jobsRoot, s.id)
	if err := os.Mkdir(s.storage, 0o700); err != nil {
		return nil, fmt.Errorf("create job dir: %w", err)
	}
	s.undo.push(func() error { return os.Remove(s.storage) })
	cg := e.containerConfig(s.id, "", "", lim).Cgroups
	if s.m, err = manager.New(cg); err != nil {
		return nil, fmt.Errorf("job cgroup: %w", err)
	}
	s.undo.push(s.m.Destroy)
	if err := s.m.Apply(-1); err != nil {
		return nil, fmt.Errorf("create job cgroup: %w", err)
	}
	if err := s.m.Set(cg.Resources); err != nil {
		return nil, fmt.Errorf("set job cgroup: %w", err)
	}
	s.paths = s.m.GetPaths()

	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("job socket: %w", err)
	}
	theirs := os.NewFile(uintptr(sp[1]), "job")
	defer theirs.Close()
	if err := unix.SetsockoptInt(sp[0], unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(sp[0])
		return nil, err
	}
	ours := os.NewFile(uintptr(sp[0]), "job")
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	s.jsock = conn.(*net.UnixConn)
	s.undo.push(s.jsock.Close)
	body, err := json.Marshal(map[string][]string{"masked": maskedPaths, "readonly": readonlyPaths})
	if err != nil {
		return nil, err
	}
	if err := unix.Sendmsg(int(z.sock.Fd()), body, unix.UnixRights(int(theirs.Fd())), nil, 0); err != nil {
		return nil, fmt.Errorf("ask the fork server: %w", err)
	}
	theirs.Close()
	_ = s.jsock.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, pid, err := readForkMsg(s.jsock)
	if err != nil {
		return nil, err
	}
	if msg != "pid" || pid <= 0 {
		return nil, fmt.Errorf("fork server: %q", msg)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd of the job's init: %w", err)
	}
	s.target = &forkTarget{pidfd: pidfd, pid: pid}
	go func() {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err == nil || !errors.Is(err, unix.EINTR) {
				break
			}
		}
		close(s.waited)
	}()
	// Kill first: the init ends its pid namespace, and every process of the job.
	s.undo.push(func() error {
		_ = s.target.kill()
		<-s.waited
		s.target.close()
		return nil
	})
	for _, path := range s.paths {
		if err := cgroups.WriteCgroupProc(path, pid); err != nil {
			return nil, fmt.Errorf("move the job's init into its cgroup: %w", err)
		}
	}
	if _, err := s.jsock.Write([]byte("go")); err != nil {
		return nil, fmt.Errorf("fork server: %w", err)
	}
	if msg, _, err = readForkMsg(s.jsock); err != nil {
		return nil, err
	}
	if msg != "prepared" {
		return nil, fmt.Errorf("fork server: %q", msg)
	}
	_ = s.jsock.SetReadDeadline(time.Time{})
	return s, nil
}

// runForked runs one step of a job on fork server z, in the slot it prepared: the job's
// storage (a fresh tmpfs), its limits and stdio handed over, then the job as on a warm
// container. It returns the step's storage, which holds the job's files until undo runs.
// z goes back to its pool when the caller's undo runs (pushed by the caller, before this).
func (e *Engine) runForked(ctx context.Context, p *prepared, z *zygote, args []string, stdin []byte, stream io.Reader, sink func(EventType, []byte, bool), out *Outcome, undo *cleanup) (Status, string, error) {
	out.ExitCode = -1
	s, spare, err := z.takeSlot(p.lim)
	if running, _ := e.Load(); spare && running <= 1 {
		// Last, once the step's processes are gone: on an otherwise idle host the
		// replacement, made during the step, would only compete with it for the CPU (a
		// fork, a cgroup, mounts); the next job on this server finds the spare slot.
		undo.push(func() error { z.pool.prepare(z); return nil })
	} else {
		// Under load, or when jobs come faster than slots are made, the replacement
		// cannot wait for the end of this one.
		z.pool.prepare(z)
	}
	if err != nil {
		return "", "", err
	}
	*undo = append(*undo, s.undo...)
	if s.jp != nil {
		// Made ahead: as on a warm container, the files, then the job's limits.
		if err := e.writeFiles(s.storage, p.files); err != nil {
			return "", "", err
		}
		if err := e.dispatchSlot(s, p.lim); err != nil {
			return "", "", err
		}
	} else {
		if err := e.mountStorage(s.storage, p.lim, undo); err != nil {
			return "", "", err
		}
		if err := e.writeFiles(s.storage, p.files); err != nil {
			return "", "", err
		}
		if s.jp, err = e.fork(s, s.storage, p.lim, p.lim, undo); err != nil {
			return "", "", err
		}
	}
	st, err := e.runProc(ctx, p.id, s.jp, p.lim, bootstrapInput(p.names[0], args, stdin), stream, sink, out)
	return st, s.storage, err
}

// dispatchSlot gives a slot made ahead the job's limits: its cgroup's resources (unless
// they are the defaults it has) and its python's rlimits.
func (e *Engine) dispatchSlot(s *forkSlot, lim Limits) error {
	if lim != s.lim {
		cg := e.containerConfig(s.id, "", "", lim).Cgroups
		if err := s.m.Set(cg.Resources); err != nil {
			return fmt.Errorf("set job cgroup: %w", err)
		}
	}
	return setRlimits(s.python, lim)
}

// fork hands slot s its job: storage, limits (hard rlimits from hard) and stdio; it
// returns once the job's python waits for its code.
func (e *Engine) fork(s *forkSlot, storage string, lim, hard Limits, undo *cleanup) (*jobProc, error) {
	if lim != s.lim {
		cg := e.containerConfig(s.id, "", "", lim).Cgroups
		if err := s.m.Set(cg.Resources); err != nil {
			return nil, fmt.Errorf("set job cgroup: %w", err)
		}
	}
	mnt, err := unix.OpenTree(unix.AT_FDCWD, storage, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone the job's storage mount: %w", err)
	}
	mntFile := os.NewFile(uintptr(mnt), "storage")
	defer mntFile.Close()
	pipes, err := openPipes(5, undo)
	if err != nil {
		return nil, err
	}
	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW, statusR, statusW, controlR, controlW := pipes[0], pipes[1], pipes[2], pipes[3], pipes[4], pipes[5], pipes[6], pipes[7], pipes[8], pipes[9]
	req := forkRequest{UID: JobUID, GID: JobGID, Shm: lim.Storage}
	for _, rl := range allRlimits(lim, hard) {
		req.Rlimits = append(req.Rlimits, [3]int64{int64(rl.Type), int64(rl.Soft), int64(rl.Hard)})
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	files := []*os.File{stdinR, stdoutW, stderrW, statusW, controlR, mntFile}
	fdn := make([]int, len(files))
	for i, f := range files {
		fdn[i] = int(f.Fd())
	}
	raw, err := s.jsock.File() // a dup, for sendmsg with descriptors
	if err != nil {
		return nil, err
	}
	err = unix.Sendmsg(int(raw.Fd()), body, unix.UnixRights(fdn...), nil, 0)
	raw.Close()
	if err != nil {
		return nil, fmt.Errorf("hand the job to its init: %w", err)
	}
	for _, f := range files[:5] {
		f.Close()
	}
	jp := &jobProc{
		target: s.target, paths: s.paths, stdin: stdinW, stdoutR: stdoutR, stderrR: stderrR, control: controlW,
		outCap: &capture{limit: e.opts.OutputLimit}, errCap: &capture{limit: e.opts.OutputLimit},
		outDone: make(chan struct{}), errDone: make(chan struct{}), waited: s.waited, reported: make(chan struct{}),
	}
	go func() {
		jp.report = readInitStatus(statusR)
		close(jp.reported)
	}()
	_ = s.jsock.SetReadDeadline(time.Now().Add(10 * time.Second))
	msg, _, err := readForkMsg(s.jsock)
	if err != nil {
		return nil, err
	}
	if msg != "ready" {
		return nil, fmt.Errorf("fork server: %q", msg)
	}
	return jp, nil
}

// readForkMsg reads one message from a job's socket, and the sender's pid (in the
// daemon's pid namespace) if the kernel attached its credentials.
func readForkMsg(c *net.UnixConn) (string, int, error) {
	buf := make([]byte, 1024)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return "", 0, fmt.Errorf("fork server: %w", err)
	}
	if n == 0 {
		return "", 0, errors.New("fork server: the job's process ended before it was ready")
	}
	pid := 0
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if cred, err := unix.ParseUnixCredentials(&m); err == nil {
				pid = int(cred.Pid)
			}
		}
	}
	msg := string(buf[:n])
	if strings.HasPrefix(msg, "fail ") {
		return "", 0, fmt.Errorf("fork server could not set the job up: %s", strings.TrimPrefix(msg, "fail "))
	}
	return msg, pid, nil
}

// takeFork hands out a fork server for the job, or nil when none fits.
func (e *Engine) takeFork(p *prepared, lease *gpu.Lease) *zygote {
	fp := e.forks[p.rt.Name]
	if fp == nil || len(p.req.Env) > 0 {
		return nil // a client environment must be there when the interpreter starts
	}
	return fp.take(p.lim, lease)
}
