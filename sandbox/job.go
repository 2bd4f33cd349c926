package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/gpu"
)

// ioGrace bounds how long the daemon waits for a job's output pipes to close after its
// last process is gone (they close at once when the pid namespace dies).
const ioGrace = 2 * time.Second

// jobProc is a started container and the ends of its pipes.
type jobProc struct {
	ctr              *libcontainer.Container // nil for a fork server's job
	proc             *libcontainer.Process
	target           jobTarget         // how the daemon kills it
	paths            map[string]string // the job's cgroup per controller
	stdin            *os.File          // write end; closed once the input is written
	control          *os.File          // write end of the init's control pipe (jobinit.ControlFD)
	clockStarted     bool              // the init has its deadline (cold jobs: from their start)
	stdoutR, stderrR *os.File
	outCap, errCap   *capture
	outDone, errDone chan struct{}
	waited           chan struct{} // closed when the init has been reaped
	state            *os.ProcessState
	// reported is closed when the init has said how the command ended (report), or
	// has died without saying (report.ok false): whichever comes first, the command is
	// over. That is before the init's own exit and its pid namespace's teardown
	// (~2 ms), which the answer need not wait for.
	reported chan struct{}
	report   initReport
	// CPU the cgroup had used when the job's clock started: a warm container's start-up,
	// a cold one's setup by runc's init. It is not the job's: neither charged to its
	// CPU-time limit nor in its figures. Counted from the same moment as the wall clock,
	// a job's CPU at 1 CPU never passes its wall time, so a busy loop with equal limits
	// ends as a timeout, always.
	cpuBase, userBase, sysBase time.Duration
}

// procSpec says what container to start: its id, its storage (made and filled by the
// caller), the command, and for a pooled container that it runs a bootstrap and
// waits for code (warm).
type procSpec struct {
	id      string // container id (and cgroup name)
	storage string // host directory of the job's tmpfs: its /work and /tmp
	root    string // the image's read-only root
	argv    []string
	env     []string
	lim     Limits
	lease   *gpu.Lease
	warm    bool             // a bootstrap: wait for its ready marker
	outBind string           // if set, a host directory bound read-only at OutDir (a test case's compiled artifact)
	mounts  []*configs.Mount // more mounts (a session's kernel directory)
	// longLived is a session's container: its init gets no deadline (the daemon bounds
	// a session's lifetime), and ends it only when the daemon is gone.
	longLived bool
	// zygote is a fork server's container (forkserver.go): its process runs as root of
	// its user namespace with forkServerCaps and no seccomp filter, and gets extra as
	// descriptors after the init's own.
	zygote bool
	extra  []*os.File
}

// startProc makes the job's container and starts its process.
// openPipes makes n pipes, read end then write end each, all closed by undo.
func openPipes(n int, undo *cleanup) ([]*os.File, error) {
	pipes := make([]*os.File, 0, 2*n)
	for range n {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		pipes = append(pipes, r, w)
		undo.push(func() error { r.Close(); w.Close(); return nil })
	}
	return pipes, nil
}

func (e *Engine) startProc(s procSpec, undo *cleanup) (*jobProc, error) {
	cfg := e.containerConfig(s.id, s.storage, s.root, s.lim)
	e.configureInit(cfg, s) // rlimits and kernel-count shares (initcmd.go)
	uid, gid := JobUID, JobGID
	if s.zygote {
		cfg.Capabilities = &configs.Capabilities{Bounding: forkServerCaps, Effective: forkServerCaps, Permitted: forkServerCaps}
		cfg.Seccomp = nil // its jobs load theirs
		uid, gid = 0, 0
	}
	if s.outBind != "" {
		cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: s.outBind, Destination: OutDir, Device: "bind",
			Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV})
	}
	cfg.Mounts = append(cfg.Mounts, s.mounts...)
	env := s.env
	args := s.argv
	if s.lease != nil {
		grant, err := s.lease.Grant()
		if err != nil {
			return nil, fmt.Errorf("GPU grant: %w", err)
		}
		gpuDir := s.storage + ".gpu"
		if err := os.Mkdir(gpuDir, 0o711); err != nil {
			return nil, fmt.Errorf("create GPU dir: %w", err)
		}
		undo.push(func() error { return os.RemoveAll(gpuDir) })
		if err := grant.Apply(cfg, gpuDir); err != nil {
			return nil, fmt.Errorf("GPU grant: %w", err)
		}
		// GPU jobs get the device nodes the grant adds (a /dev of their own, not the
		// shared read-only one) and /sys, which CUDA and nvidia-smi read.
		useOwnDev(cfg)
		cfg.Mounts = append(cfg.Mounts, &configs.Mount{Source: "sysfs", Destination: "/sys", Device: "sysfs",
			Flags: unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RDONLY})
		env = grant.Environ(env)
	}
	ctr, err := libcontainer.Create(e.stateRoot, s.id, cfg)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	undo.push(func() error { return destroy(ctr) })

	// Pipes: our ends are closed by the undo stack; the job's ends right after start.
	pipes, err := openPipes(5, undo)
	if err != nil {
		return nil, err
	}
	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW, statusR, statusW := pipes[0], pipes[1], pipes[2], pipes[3], pipes[4], pipes[5], pipes[6], pipes[7]
	controlR, controlW := pipes[8], pipes[9] // the init's clock; only the daemon writes (initcmd.go)
	args, extra := e.initArgs(s, args, statusW, controlR)
	jp := &jobProc{
		ctr: ctr, stdin: stdinW, stdoutR: stdoutR, stderrR: stderrR, control: controlW,
		outCap: &capture{limit: e.opts.OutputLimit}, errCap: &capture{limit: e.opts.OutputLimit},
		outDone: make(chan struct{}), errDone: make(chan struct{}), waited: make(chan struct{}), reported: make(chan struct{}),
		proc: &libcontainer.Process{
			Args:       args,
			ExtraFiles: extra,
			Env:        env,
			UID:        uid,
			GID:        gid,
			Cwd:        WorkDir,
			Stdin:      stdinR,
			Stdout:     stdoutW,
			Stderr:     stderrW,
			Init:       true,
		},
	}
	if !s.warm && !s.longLived {
		// A cold job's command starts with its container: its init has its deadline
		// from the first moment, even if the daemon stops before the job's clock starts.
		// It counts from the init's start, a little before the daemon's clock, which
		// initGrace covers.
		if err := startClock(jp.control, s.lim); err != nil {
			return nil, err
		}
		jp.clockStarted = true
	}
	jp.target = ctrTarget{ctr}
	err = ctr.Run(jp.proc)
	for _, f := range []*os.File{stdinR, stdoutW, stderrW, statusW, controlR} {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	if s.warm {
		// A pooled container is ready once its bootstrap says so; the marker is not output.
		if err := awaitReady(stderrR); err != nil {
			return nil, err
		}
	}
	go func() {
		jp.state, _ = jp.proc.Wait()
		close(jp.waited)
	}()
	go func() {
		jp.report = readInitStatus(statusR)
		close(jp.reported)
	}()
	// A job may be answered before its init is reaped; the container is removed only
	// after (a zombie keeps its cgroup busy). Killing first: on an error path the init
	// may still be running.
	undo.push(func() error {
		_ = signalKill(ctr)
		select {
		case <-jp.waited:
		case <-time.After(ioGrace):
		}
		return nil
	})
	st, err := ctr.State()
	if err != nil {
		return nil, fmt.Errorf("read container state: %w", err)
	}
	jp.paths = st.CgroupPaths
	return jp, nil
}

// awaitReady reads the bootstrap's ready marker from r (its stderr), for at most 30 s.
func awaitReady(r *os.File) error {
	if err := r.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, len(readyMarker))
	_, err := io.ReadFull(r, buf)
	if err == nil && string(buf) != readyMarker {
		err = fmt.Errorf("unexpected output %q", buf)
	}
	if err != nil {
		return fmt.Errorf("warm python did not start: %w", err)
	}
	return r.SetReadDeadline(time.Time{})
}

// containerConfig is the libcontainer configuration of a job with limits lim.
func (e *Engine) containerConfig(id, storage, root string, lim Limits) *configs.Config {
	cfg := configFor(jobSpec{
		id: id, rootfs: root, storageDir: storage, cgroupPath: e.place.jobPath(id),
		hostIDBase: e.opts.HostIDBase, limits: lim, seccomp: e.opts.Seccomp, initBinary: e.initBin, devDir: e.devDir,
	})
	if e.seccompProg != nil {
		cfg.Seccomp = nil // the job's init loads the compiled program instead
	}
	applyIO(cfg.Cgroups.Resources, lim, e.ioDev)
	return cfg
}

// runProc hands the job its input, watches it until it ends, hits a limit or ctx ends,
// and fills out. The clock starts here: for a warm container, when the code is handed
// over. sink, if set, is told of output as it is read.
func (e *Engine) runProc(ctx context.Context, id string, jp *jobProc, lim Limits, input []byte, stream io.Reader, sink func(EventType, []byte, bool), out *Outcome) (Status, error) {
	start := time.Now()
	var err error
	if jp.cpuBase, jp.userBase, jp.sysBase, err = cpuTimes(e.place.mode, jp.paths); err != nil {
		return "", fmt.Errorf("read the container's CPU: %w", err)
	}
	if !jp.clockStarted { // a warm job's clock starts now: the init's own bound
		if err := startClock(jp.control, lim); err != nil {
			return "", err
		}
	}
	if sink != nil {
		jp.outCap.sink = func(b []byte, trunc bool) { sink(EventStdout, b, trunc) }
		jp.errCap.sink = func(b []byte, trunc bool) { sink(EventStderr, b, trunc) }
	}
	go jp.outCap.drain(jp.stdoutR, jp.outDone)
	go jp.errCap.drain(jp.stderrR, jp.errDone)
	e.reg.started(id, jp.target) // from here an admin's kill reaches it
	go func() {
		// A job that never reads its stdin ends with the write failing (EPIPE).
		_, err := jp.stdin.Write(input)
		if err == nil && stream != nil {
			_, _ = io.Copy(jp.stdin, stream)
		}
		jp.stdin.Close()
	}()

	// The daemon, not the job, owns the clock and the CPU-time budget: at either limit
	// the whole container is killed. Killing its init ends the pid namespace, so every
	// process goes with it.
	watchDone, cpuOver := make(chan struct{}), make(chan struct{})
	defer close(watchDone)
	go watchCPU(e.place.mode, jp.paths, lim, jp.cpuBase, watchDone, cpuOver)
	timer := time.NewTimer(lim.Timeout)
	defer timer.Stop()
	stop := stopNone
	select {
	case <-jp.reported:
	case <-timer.C:
		stop = stopTimeout
	case <-cpuOver:
		stop = stopCPUTime
		if time.Since(start) >= lim.Timeout {
			stop = stopTimeout // both limits passed: the wall clock's came first
		}
	case <-ctx.Done():
		stop = stopCancelled
	}
	if stop != stopNone {
		if err := jp.target.kill(); err != nil {
			return "", fmt.Errorf("kill job at its limit: %w", err)
		}
		<-jp.waited
	}
	out.Wall = time.Since(start)
	out.WallMS = float64(out.Wall.Microseconds()) / 1000

	// Output pipes close as soon as the last process of the job is gone.
	grace := time.NewTimer(ioGrace)
	defer grace.Stop()
	for _, ch := range []chan struct{}{jp.outDone, jp.errDone} {
		select {
		case <-ch:
		case <-grace.C:
			jp.stdoutR.Close()
			jp.stderrR.Close()
			<-ch
		}
	}
	out.Stdout, out.StdoutTruncated = jp.outCap.buf.String(), jp.outCap.truncated
	out.Stderr, out.StderrTruncated = jp.errCap.buf.String(), jp.errCap.truncated

	// Figures come from the job's cgroup, read before the cgroup is removed.
	if err := e.account(jp, out); err != nil {
		return "", err
	}
	// How the command ended is what the job init reported; if the init itself was
	// killed (timeout, an admin's kill), what killed it.
	<-jp.reported // at once: the init reported, or is dead
	switch r := jp.report; {
	case r.err != nil:
		return "", r.err
	case r.ok:
		out.ExitCode, out.Signal = r.code, r.signal
	default:
		<-jp.waited // the init died without a report: it is reaped in a moment
		if ft, ok := jp.target.(*forkTarget); ok && ft.killed.Load() {
			out.Signal = "SIGKILL" // a fork job's init is not the daemon's child: its killer says
		}
		if jp.state == nil {
			break
		}
		if ws, ok := jp.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			out.Signal = unix.SignalName(ws.Signal())
		}
	}
	return classify(stop, out), nil
}

// initReport is what the job init said about how the command ended.
type initReport struct {
	code   int
	signal string
	ok     bool  // a report was read
	err    error // the init could not set the job up and ran nothing
}

// readInitStatus reads the job init's one-line report, "exit N" or "signal N", or "fail
// ERRNO" when it could not set up the job (its seccomp filter) and ran nothing. It
// returns when the line is read or the init is gone.
func readInitStatus(r io.Reader) initReport {
	var kind string
	var n int
	if _, err := fmt.Fscanf(r, "%s %d\n", &kind, &n); err != nil {
		return initReport{code: -1}
	}
	switch kind {
	case "exit":
		return initReport{code: n, ok: true}
	case "signal":
		return initReport{code: -1, signal: unix.SignalName(syscall.Signal(n)), ok: true}
	case "fail":
		return initReport{code: -1, err: fmt.Errorf("the job's init could not load its seccomp filter: %w", unix.Errno(n))}
	}
	return initReport{code: -1}
}

// stopReason says why the daemon killed a job, if it did.
type stopReason int

const (
	stopNone stopReason = iota
	stopTimeout
	stopCPUTime
	stopCancelled
)

// classify picks the one status that explains how the job ended.
func classify(stop stopReason, res *Outcome) Status {
	switch {
	case stop == stopCancelled:
		return StatusCancelled
	case stop == stopTimeout:
		return StatusTimeout
	case stop == stopCPUTime:
		return StatusCPULimit
	case res.OOMKilled:
		return StatusMemoryLimit
	case res.Signal != "":
		return StatusSignaled
	case res.ExitCode != 0:
		return StatusError
	}
	return StatusOK
}

// account fills the result's figures from the job's cgroup.
func (e *Engine) account(jp *jobProc, res *Outcome) error {
	f, err := readFigures(e.place.mode, jp.paths)
	if err != nil {
		return fmt.Errorf("read the job's cgroup figures: %w", err)
	}
	f.cpu, f.user, f.system = f.cpu-jp.cpuBase, max(f.user-jp.userBase, 0), max(f.system-jp.sysBase, 0)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.CPUMS, res.CPUUserMS, res.CPUSystemMS = ms(f.cpu), ms(f.user), ms(f.system)
	res.MemoryPeak = int64(f.memoryPeak)
	res.OOMKilled = f.oomKills > 0
	res.PidsPeak, res.PidsLimitHit = int64(f.pidsPeak), f.pidsLimitHits > 0
	res.IOReadBytes, res.IOWriteBytes = int64(f.ioRead), int64(f.ioWrite)
	return nil
}

// watchCPU closes over when the job's CPU time, summed over its processes, reaches its
// limit. It sleeps for as long as the job could not possibly reach it at its CPU
// bandwidth, then looks again, so the kill lands within a few ms of CPU of the limit
// while a sleeping job costs almost nothing to watch.
func watchCPU(mode CgroupMode, paths map[string]string, lim Limits, base time.Duration, done <-chan struct{}, over chan<- struct{}) {
	rate := min(lim.CPUs, float64(runtime.NumCPU()))
	var used time.Duration // none yet: the job's clock has just started
	for {
		wait := time.Duration(float64(lim.CPUTime-used) / rate)
		wait = min(max(wait, 2*time.Millisecond), 250*time.Millisecond)
		select {
		case <-done:
			return
		case <-time.After(wait):
		}
		total, err := cpuUsage(mode, paths)
		if err != nil {
			return // the cgroup is gone: the job has ended
		}
		if used = total - base; used >= lim.CPUTime {
			close(over)
			return
		}
	}
}

// destroy kills whatever is left of a container and removes its cgroup and state.
func destroy(ctr *libcontainer.Container) error {
	_ = signalKill(ctr) // whatever it says, Destroy kills what is left in the cgroup
	return ctr.Destroy()
}

func unmount(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	return nil
}
