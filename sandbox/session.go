package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/cgroups/fscommon"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// A session is a long-lived container of its own, contained exactly as a job (its own
// cgroup, tmpfs, namespaces, seccomp profile, no network; startProc and newStorage make
// it), whose pid 1 is the job init and whose one program is a real IPython kernel. The
// daemon drives the kernel over the Jupyter protocol (kernel.go). Cells run one at a
// time. The session ends at its idle TTL, its lifetime, its CPU time, its memory limit,
// a crash of the kernel, a cell that will not stop, a delete or the daemon's shutdown;
// whatever ends it, its container, cgroup, storage and kernel directory go with it.

// SessionOptions configure an engine's sessions.
type SessionOptions struct {
	Max      int           // sessions alive at once (0: 8; negative: sessions are off)
	IdleTTL  time.Duration // default idle time before a session ends (0: 10 min)
	Lifetime time.Duration // default and maximum lifetime (0: 1 h)
	Pool     int           // kernels kept started for sessions of the default shape
	// StartTimeout bounds a kernel's start (0: 60 s).
	StartTimeout time.Duration
}

func (o *SessionOptions) setDefaults() {
	if o.Max == 0 {
		o.Max = 8
	}
	if o.IdleTTL == 0 {
		o.IdleTTL = 10 * time.Minute
	}
	if o.Lifetime == 0 {
		o.Lifetime = time.Hour
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = time.Minute
	}
}

// Session errors; the server maps them to statuses.
var (
	ErrSessionNotFound = errors.New("no such session")
	ErrSessionLimit    = errors.New("the daemon's session cap is reached")
	ErrSessionEnded    = errors.New("the session has ended")
	ErrSessionBusy     = errors.New("the session is running another cell")
	ErrNoKernel        = errors.New("the python image has no ipykernel: sessions are unavailable")
	ErrFileTooLarge    = errors.New("the file is larger than the download cap")
	ErrNotRegularFile  = errors.New("not a regular file (a symlink, directory or device is never read)")
	// ErrStorageFull is an upload that does not fit the session's storage.
	ErrStorageFull = errStorageFull
)

// SessionStatus says whether a session is alive and, once ended, why.
type SessionStatus string

const (
	SessionIdle     SessionStatus = "idle"
	SessionBusy     SessionStatus = "busy"
	SessionStarting SessionStatus = "starting"
	// Ended: why.
	SessionDeleted         SessionStatus = "deleted"
	SessionIdleExpired     SessionStatus = "idle_expired"
	SessionLifetimeExpired SessionStatus = "lifetime_expired"
	SessionMemoryLimit     SessionStatus = "memory_limit"
	SessionCPULimit        SessionStatus = "cpu_limit"
	SessionKernelDied      SessionStatus = "kernel_died"
	SessionCellTimeout     SessionStatus = "cell_timeout" // a cell did not stop when interrupted
	SessionShutdown        SessionStatus = "shutdown"
	SessionFailed          SessionStatus = "failed"
)

// SessionRequest is what a client asks of a new session.
type SessionRequest struct {
	// Limits bound the whole session (memory, pids, storage, CPUs, CPU time summed over
	// its life); Timeout is each cell's. Zero fields take the defaults; CPUTime's is the
	// policy's maximum, since it is a whole session's.
	Limits   Limits
	IdleTTL  time.Duration // 0: the default; at most Lifetime
	Lifetime time.Duration // 0: the default; at most the engine's
}

// SessionInfo describes a session.
type SessionInfo struct {
	ID             string
	Status         SessionStatus
	Detail         string // why it ended, in words
	Created        time.Time
	LastUsed       time.Time
	Expires        time.Time // when it ends if left idle, or at its lifetime, whichever first
	ExecutionCount int
	Limits         Limits
	IdleTTL        time.Duration
	Lifetime       time.Duration
	CPUMS          float64 // all the session's CPU so far, start-up excluded
	MemoryBytes    int64   // in use now
	MemoryPeak     int64
	Warm           bool // its kernel came from the pool
}

// Session is one live kernel.
type Session struct {
	e        *Engine
	id       string
	lim      Limits
	idleTTL  time.Duration
	lifetime time.Duration
	created  time.Time
	warm     bool
	storage  string
	kdir     string
	jp       *jobProc
	kc       *kernelClient
	pid      int // the kernel's host pid
	// kernelBusy is the kernel's own execution state, from its iopub status messages:
	// a cell run through a relay (the Jupyter front) keeps the session from idling too.
	kernelBusy atomic.Bool
	undo       cleanup

	cell  chan struct{} // held while a cell runs
	touch chan struct{} // resets the idle timer
	end   chan SessionStatus
	ended chan struct{} // closed once torn down

	mu        sync.Mutex
	status    SessionStatus
	detail    string
	lastUsed  time.Time
	execCount int
	final     SessionInfo // figures at the end
}

type sessionSet struct {
	mu     sync.Mutex
	live   map[string]*Session
	closed bool
	pool   *sessionPool
}

// sessionOpts is the engine's session options with defaults.
func (e *Engine) sessionOpts() SessionOptions {
	o := e.opts.Sessions
	o.setDefaults()
	return o
}

// sessionPolicy is the python runtime's policy, with a session's CPU-time default.
func (e *Engine) sessionPolicy() (Policy, *Runtime, error) {
	rt, ok := e.runtimes.byName["python"]
	if !ok {
		return Policy{}, nil, fmt.Errorf("%w: no python runtime", ErrNoKernel)
	}
	pol := e.Policy().ForRuntime(rt)
	pol.Default.CPUTime = pol.Max.CPUTime
	return pol, rt, nil
}

// CreateSession starts a session (from the pool when one of its shape is ready).
func (e *Engine) CreateSession(ctx context.Context, req SessionRequest) (*Session, error) {
	o := e.sessionOpts()
	if o.Max < 0 {
		return nil, ErrNoKernel
	}
	pol, rt, err := e.sessionPolicy()
	if err != nil {
		return nil, err
	}
	lim, err := pol.Resolve(req.Limits)
	if err != nil {
		return nil, err
	}
	if err := e.checkIO(lim); err != nil {
		return nil, err
	}
	lifetime, idle := req.Lifetime, req.IdleTTL
	switch {
	case lifetime < 0 || lifetime > o.Lifetime:
		return nil, fieldErr("lifetime", "%s is outside (0, %s]", lifetime, o.Lifetime)
	case lifetime == 0:
		lifetime = o.Lifetime
	}
	switch {
	case idle < 0 || idle > lifetime:
		return nil, fieldErr("ttl", "%s is outside (0, %s] (the lifetime)", idle, lifetime)
	case idle == 0:
		idle = min(o.IdleTTL, lifetime)
	}
	ss := &e.sessions
	ss.mu.Lock()
	if e.isClosed() || ss.closed {
		ss.mu.Unlock()
		return nil, ErrClosed
	}
	if len(ss.live) >= o.Max {
		ss.mu.Unlock()
		return nil, ErrSessionLimit
	}
	if ss.live == nil {
		ss.live = map[string]*Session{}
	}
	// A placeholder holds the slot while the kernel starts.
	slot := "pending-" + randomHex(8)
	ss.live[slot] = nil
	pool := ss.pool
	ss.mu.Unlock()
	release := func() {
		ss.mu.Lock()
		delete(ss.live, slot)
		ss.mu.Unlock()
	}

	var s *Session
	if pool != nil && lim == pool.lim {
		s = pool.take()
	}
	if s == nil {
		s, err = e.startSession(ctx, newJobID(), rt, lim)
		if err != nil {
			release()
			return nil, err
		}
	}
	s.idleTTL, s.lifetime = idle, lifetime
	s.created = time.Now()
	s.lastUsed = s.created
	s.status = SessionIdle
	ss.mu.Lock()
	delete(ss.live, slot)
	closed := ss.closed
	if !closed {
		ss.live[s.id] = s
	}
	ss.mu.Unlock()
	if closed {
		s.teardown(SessionShutdown, "the daemon is shutting down")
		return nil, ErrClosed
	}
	go s.watch()
	if pool != nil {
		pool.kick()
	}
	return s, nil
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// startSession starts a container running a kernel and connects to it.
func (e *Engine) startSession(ctx context.Context, id string, rt *Runtime, lim Limits) (_ *Session, retErr error) {
	s := &Session{e: e, id: id, lim: lim, cell: make(chan struct{}, 1), touch: make(chan struct{}, 1),
		end: make(chan SessionStatus, 1), ended: make(chan struct{}), status: SessionStarting}
	defer func() {
		if retErr != nil {
			_ = s.undo.run()
		}
	}()
	var err error
	if s.storage, err = e.newStorage(s.id, lim, &s.undo); err != nil {
		return nil, err
	}
	// The kernel's sockets live in a directory of their own, bound at /run: not in
	// /work, where the session's code could swap a socket for a link to a host socket.
	s.kdir = s.storage + ".kernel"
	if err := os.Mkdir(s.kdir, 0o700); err != nil {
		return nil, fmt.Errorf("create kernel dir: %w", err)
	}
	s.undo.push(func() error { return os.RemoveAll(s.kdir) })
	if err := os.Chown(s.kdir, e.jobUID(), e.jobUID()); err != nil {
		return nil, err
	}
	info := newConnectionInfo("/run/k")
	cf, _ := json.Marshal(info)
	if err := os.WriteFile(filepath.Join(s.kdir, "kernel.json"), cf, 0o600); err != nil {
		return nil, err
	}
	if err := os.Chown(filepath.Join(s.kdir, "kernel.json"), e.jobUID(), e.jobUID()); err != nil {
		return nil, err
	}
	own := []string{
		// ipython's and matplotlib's caches go to the session's /dev/shm, not /work.
		"IPYTHONDIR=/dev/shm/ipython", "MPLCONFIGDIR=/dev/shm/matplotlib", "PYDEVD_DISABLE_FILE_VALIDATION=1",
		// A job's matplotlib backend (Agg: files only) is not a kernel's: figures become
		// display_data PNGs through IPython's inline backend.
		"MPLBACKEND=module://matplotlib_inline.backend_inline",
	}
	// The runtime's settings of these go (python keeps the first of a duplicate).
	rtEnv := slices.DeleteFunc(slices.Clone(rt.Env), func(kv string) bool {
		return slices.ContainsFunc(own, func(o string) bool { return strings.HasPrefix(kv, o[:strings.IndexByte(o, '=')+1]) })
	})
	env := slices.Concat(jobEnv, rtEnv, own)
	argv := []string{"python3", "-m", "ipykernel_launcher", "-f", "/run/kernel.json",
		"--InteractiveShell.colors=NoColor", "--HistoryManager.enabled=False", "--IPKernelApp.parent_handle=0",
		// Imported ahead, so a session's first "import pandas" does not wait for them.
		// And the kernel exits when its stdin (a pipe the daemon holds open) ends: a
		// daemon that dies (SIGKILL) takes its kernels with it, even without a restart.
		`--IPKernelApp.exec_lines=["import numpy, pandas, matplotlib.pyplot; del numpy, pandas, matplotlib", ` +
			`"(lambda os, th: th.Thread(target=lambda: (os.read(0, 1), os._exit(0)), daemon=True).start())(__import__('os'), __import__('threading'))"]`,
	}
	jp, err := e.startProc(procSpec{id: s.id, storage: s.storage, root: e.roots[rt.Image], argv: argv, env: env, lim: lim, longLived: true,
		mounts: []*configs.Mount{{Source: s.kdir, Destination: "/run", Device: "bind",
			Flags: unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC}}}, &s.undo)
	if err != nil {
		return nil, err
	}
	s.jp = jp
	go jp.outCap.drain(jp.stdoutR, jp.outDone)
	go jp.errCap.drain(jp.stderrR, jp.errDone)

	o := e.sessionOpts()
	sctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	if err := s.awaitSockets(sctx); err != nil {
		return nil, err
	}
	if s.kc, err = dialKernel(filepath.Join(s.kdir, "k"), info.Key); err != nil {
		return nil, err
	}
	s.undo.push(func() error { s.kc.close(); return nil })
	s.kc.addTap(func(m *kernelMsg) {
		if m.Channel == "iopub" && m.Header.MsgType == "status" {
			var st struct {
				ExecutionState string `json:"execution_state"`
			}
			if json.Unmarshal(m.Content, &st) == nil && st.ExecutionState != "" {
				s.kernelBusy.Store(st.ExecutionState == "busy")
			}
		}
	})
	// Connected: the directory becomes the host's, so nothing in the session can add,
	// remove or replace a socket (the kernel keeps the ones it has bound).
	if err := os.Chown(s.kdir, 0, 0); err != nil {
		return nil, err
	}
	if err := os.Chmod(s.kdir, 0o755); err != nil {
		return nil, err
	}
	if err := s.kc.awaitKernel(sctx); err != nil {
		return nil, s.startError(err)
	}
	st, err := jp.ctr.State()
	if err != nil {
		return nil, err
	}
	if s.pid, err = firstChild(st.InitProcessPid); err != nil {
		return nil, fmt.Errorf("find the kernel: %w", err)
	}
	// Start-up is not the session's: neither in its figures nor its CPU time.
	if jp.cpuBase, jp.userBase, jp.sysBase, err = cpuTimes(e.place.mode, jp.paths); err != nil {
		return nil, err
	}
	return s, nil
}

// awaitSockets waits for the kernel to bind its sockets, or to die trying.
func (s *Session) awaitSockets(ctx context.Context) error {
	for {
		all := true
		for _, port := range kernelPorts {
			if _, err := os.Lstat(filepath.Join(s.kdir, "k-"+strconv.Itoa(port))); err != nil {
				all = false
				break
			}
		}
		if all {
			return nil
		}
		select {
		case <-s.jp.reported:
			return s.startError(errors.New("the kernel exited"))
		case <-ctx.Done():
			return s.startError(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// startError says why a kernel did not start, with the end of its stderr. A kernel whose
// connection broke is usually dying: its init's report comes a moment later.
func (s *Session) startError(err error) error {
	select {
	case <-s.jp.reported:
	case <-time.After(500 * time.Millisecond):
	}
	select {
	case <-s.jp.reported:
		select {
		case <-s.jp.errDone:
		case <-time.After(time.Second):
		}
		msg := s.jp.errCap.buf.String()
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		if s.jp.report.ok && s.jp.report.code == 1 && containsAny(msg, "No module named ipykernel") {
			return ErrNoKernel
		}
		return fmt.Errorf("start kernel: %w: %s", err, msg)
	default:
		return fmt.Errorf("start kernel: %w", err)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if len(sub) > 0 && len(s) >= len(sub) {
			for i := 0; i+len(sub) <= len(s); i++ {
				if s[i:i+len(sub)] == sub {
					return true
				}
			}
		}
	}
	return false
}

// watch ends the session at whatever comes first.
func (s *Session) watch() {
	lifetime := time.NewTimer(s.lifetime)
	defer lifetime.Stop()
	idle := time.NewTimer(s.idleTTL)
	defer idle.Stop()
	done, cpuOver := make(chan struct{}), make(chan struct{})
	defer close(done)
	go watchCPU(s.e.place.mode, s.jp.paths, s.lim, s.jp.cpuBase, done, cpuOver)
	var why SessionStatus
	var detail string
	for why == "" {
		select {
		case <-s.touch:
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(s.idleTTL)
		case <-idle.C:
			if len(s.cell) > 0 || s.kernelBusy.Load() { // a cell is running: not idle
				idle.Reset(s.idleTTL)
				continue
			}
			why, detail = SessionIdleExpired, fmt.Sprintf("idle for %s", s.idleTTL)
		case <-lifetime.C:
			why, detail = SessionLifetimeExpired, fmt.Sprintf("reached its lifetime of %s", s.lifetime)
		case <-cpuOver:
			why, detail = SessionCPULimit, fmt.Sprintf("used its CPU time of %s", s.lim.CPUTime)
		case <-s.jp.reported:
			why, detail = s.deathCause()
		case <-s.kc.dead:
			<-time.After(100 * time.Millisecond) // the kernel's exit is reported just after
			select {
			case <-s.jp.reported:
				why, detail = s.deathCause()
			default:
				why, detail = SessionKernelDied, "lost the connection to the kernel"
			}
		case why = <-s.end:
			switch why {
			case SessionDeleted:
				detail = "deleted"
			case SessionShutdown:
				detail = "the daemon shut down"
			case SessionCellTimeout:
				detail = fmt.Sprintf("a cell ran past its timeout of %s and did not stop when interrupted", s.lim.Timeout)
			}
		}
	}
	s.teardown(why, detail)
}

// deathCause explains a kernel that exited on its own.
func (s *Session) deathCause() (SessionStatus, string) {
	var out Outcome
	if err := s.e.account(s.jp, &out); err == nil && out.OOMKilled {
		return SessionMemoryLimit, fmt.Sprintf("the kernel was killed at the memory limit of %d bytes", s.lim.Memory)
	}
	r := s.jp.report
	switch {
	case r.ok && r.signal != "":
		return SessionKernelDied, "the kernel was killed by " + r.signal
	case r.ok:
		return SessionKernelDied, fmt.Sprintf("the kernel exited with code %d", r.code)
	}
	return SessionKernelDied, "the kernel died"
}

// teardown records the session's end and figures and removes everything of it.
func (s *Session) teardown(why SessionStatus, detail string) {
	s.mu.Lock()
	if s.status.ended() {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	info := s.Info()
	s.mu.Lock()
	s.status, s.detail = why, detail
	info.Status, info.Detail = why, detail
	s.final = info
	s.mu.Unlock()
	if err := s.undo.run(); err != nil {
		s.e.opts.Logger.Warn("tear down session", "session", s.id, "err", err)
	}
	ss := &s.e.sessions
	ss.mu.Lock()
	if ss.live[s.id] == s {
		delete(ss.live, s.id)
	}
	ss.mu.Unlock()
	close(s.ended)
	s.e.opts.Logger.Info("session ended", "session", s.id, "status", string(why), "detail", detail)
}

func (st SessionStatus) ended() bool {
	return st != "" && st != SessionIdle && st != SessionBusy && st != SessionStarting
}

// ID is the session's id.
func (s *Session) ID() string { return s.id }

// Ended is closed once the session is over and torn down.
func (s *Session) Ended() <-chan struct{} { return s.ended }

// Info describes the session now (or as it was when it ended).
func (s *Session) Info() SessionInfo {
	s.mu.Lock()
	if s.status.ended() {
		defer s.mu.Unlock()
		return s.final
	}
	status := s.status
	if status == SessionIdle && s.kernelBusy.Load() {
		status = SessionBusy
	}
	info := SessionInfo{ID: s.id, Status: status, Created: s.created, LastUsed: s.lastUsed, ExecutionCount: s.execCount,
		Limits: s.lim, IdleTTL: s.idleTTL, Lifetime: s.lifetime, Warm: s.warm}
	s.mu.Unlock()
	info.Expires = minTime(info.LastUsed.Add(s.idleTTL), info.Created.Add(s.lifetime))
	if f, err := readFigures(s.e.place.mode, s.jp.paths); err == nil {
		info.CPUMS = ms(f.cpu - s.jp.cpuBase)
		info.MemoryPeak = int64(f.memoryPeak)
	}
	info.MemoryBytes = memoryCurrent(s.e.place.mode, s.jp.paths)
	return info
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// memoryCurrent is the memory the cgroup holds now.
func memoryCurrent(mode CgroupMode, paths map[string]string) int64 {
	var v uint64
	if mode == CgroupV2 {
		v, _ = fscommon.GetCgroupParamUint(paths[""], "memory.current")
	} else {
		v, _ = fscommon.GetCgroupParamUint(paths["memory"], "memory.usage_in_bytes")
	}
	return int64(v)
}

// resetMemoryPeak starts a new peak for the next cell where the kernel lets it (v1's
// max_usage_in_bytes; v2's memory.peak resets only per open file, so v2 reports the
// session's peak).
func resetMemoryPeak(mode CgroupMode, paths map[string]string) bool {
	if mode == CgroupV2 {
		return false
	}
	return os.WriteFile(filepath.Join(paths["memory"], "memory.max_usage_in_bytes"), []byte("0"), 0) == nil
}

// Session finds a live session.
func (e *Engine) Session(id string) (*Session, error) {
	ss := &e.sessions
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s := ss.live[id]; s != nil {
		return s, nil
	}
	return nil, ErrSessionNotFound
}

// Sessions lists the live sessions, by creation.
func (e *Engine) Sessions() []*Session {
	ss := &e.sessions
	ss.mu.Lock()
	out := make([]*Session, 0, len(ss.live))
	for _, s := range ss.live {
		if s != nil {
			out = append(out, s)
		}
	}
	ss.mu.Unlock()
	slices.SortFunc(out, func(a, b *Session) int { return a.created.Compare(b.created) })
	return out
}

// DeleteSession ends a session and waits until it is torn down.
func (e *Engine) DeleteSession(id string) (SessionInfo, error) {
	s, err := e.Session(id)
	if err != nil {
		return SessionInfo{}, err
	}
	s.stop(SessionDeleted)
	return s.Info(), nil
}

// stop asks the session to end and waits until it has.
func (s *Session) stop(why SessionStatus) {
	select {
	case s.end <- why:
	default:
	}
	<-s.ended
}

// closeSessions ends every session and the pool (the engine's Close).
func (e *Engine) closeSessions() {
	ss := &e.sessions
	ss.mu.Lock()
	ss.closed = true
	live := slices.Collect(maps.Values(ss.live))
	pool := ss.pool
	ss.pool = nil
	ss.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range live {
		if s != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.stop(SessionShutdown) }()
		}
	}
	if pool != nil {
		pool.close()
	}
	wg.Wait()
}

// sessionIDs are the ids of live and pooled sessions, which are not leftovers.
func (e *Engine) sessionIDs(into map[string]bool) {
	ss := &e.sessions
	ss.mu.Lock()
	for _, s := range ss.live {
		if s != nil {
			into[s.id], into[s.id+".kernel"] = true, true
		}
	}
	pool := ss.pool
	ss.mu.Unlock()
	if pool != nil {
		pool.ids(into)
	}
}

// sessionPool keeps kernels started for sessions of the default shape.
type sessionPool struct {
	e       *Engine
	rt      *Runtime
	lim     Limits
	size    int
	mu      sync.Mutex
	ready   []*Session
	pending map[string]bool
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// ctx bounds the kernel being started: close cancels it rather than wait for a
	// kernel's start-up (python importing numpy, pandas, matplotlib: seconds on a slow host).
	ctx    context.Context
	cancel context.CancelFunc
}

func (e *Engine) startSessionPool() {
	o := e.sessionOpts()
	if o.Pool <= 0 || o.Max < 0 {
		return
	}
	pol, rt, err := e.sessionPolicy()
	if err != nil {
		return
	}
	lim, err := pol.Resolve(Limits{})
	if err != nil {
		return
	}
	p := &sessionPool{e: e, rt: rt, lim: lim, size: o.Pool, pending: map[string]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	e.sessions.mu.Lock()
	e.sessions.pool = p
	e.sessions.mu.Unlock()
	go p.fill()
	p.kick()
}

func (p *sessionPool) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *sessionPool) fill() {
	defer close(p.done)
	failures := 0
	for range p.wake {
		for {
			p.mu.Lock()
			short := !p.closed && len(p.ready) < p.size
			p.mu.Unlock()
			if !short {
				break
			}
			id := newJobID()
			p.mu.Lock()
			p.pending[id] = true
			p.mu.Unlock()
			s, err := p.e.startSession(p.ctx, id, p.rt, p.lim)
			if err != nil {
				p.mu.Lock()
				delete(p.pending, id)
				p.mu.Unlock()
				if p.ctx.Err() != nil {
					return // closing: the kernel was stopped starting, and is gone
				}
				if errors.Is(err, ErrNoKernel) {
					p.e.opts.Logger.Warn("session pool off", "err", err)
					return
				}
				failures++
				p.e.opts.Logger.Warn("warm kernel failed to start", "err", err)
				time.Sleep(min(time.Duration(failures)*200*time.Millisecond, 5*time.Second))
				continue
			}
			failures = 0
			s.warm = true
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				_ = s.undo.run()
				p.mu.Lock()
				delete(p.pending, id)
				p.mu.Unlock()
				return
			}
			p.ready = append(p.ready, s)
			delete(p.pending, id)
			p.mu.Unlock()
		}
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if closed {
			return
		}
	}
}

// take hands out a warm kernel that is still alive, or nil.
func (p *sessionPool) take() *Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) > 0 {
		s := p.ready[0]
		p.ready = p.ready[1:]
		select {
		case <-s.jp.reported:
		case <-s.kc.dead:
		default:
			// Start-up figures are not the session's; nor is the wait in the pool.
			s.jp.cpuBase, s.jp.userBase, s.jp.sysBase, _ = cpuTimes(p.e.place.mode, s.jp.paths)
			return s
		}
		go func() { _ = s.undo.run() }()
	}
	return nil
}

func (p *sessionPool) ids(into map[string]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.ready {
		into[s.id], into[s.id+".kernel"] = true, true
	}
	for id := range p.pending {
		into[id], into[id+".kernel"] = true, true
	}
}

func (p *sessionPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.ready
	p.ready = nil
	p.mu.Unlock()
	p.cancel()
	p.kick()
	<-p.done
	for _, s := range idle {
		_ = s.undo.run()
	}
}
