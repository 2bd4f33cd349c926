package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox/jobinit"
)

// initGrace is how long after a job's deadline its init ends the job on its own. While
// the daemon is there it kills the job at the deadline itself, so the init's clock only
// matters when the daemon is stuck; a daemon that is gone ends the job at once.
const initGrace = 2 * time.Second

// initLimits are the soft and hard rlimits a job's processes start with.
func (e *Engine) initLimits(s procSpec) (soft, hard Limits) {
	soft, hard = s.lim, s.lim
	if s.warm {
		// A warm container learns its job's limits at dispatch, and raising a hard
		// limit of another process takes CAP_SYS_RESOURCE in the host's user namespace,
		// which the daemon need not have (capable(), not ns_capable()). So it starts
		// with the policy's maximums as hard limits, which dispatch lowers to the job's.
		hard = e.Policy().Max
	}
	return soft, hard
}

// configureInit gives cfg, before the container is created, the rlimits its processes
// start with and the job's shares of the per-user kernel counts (ucounts.go).
func (e *Engine) configureInit(cfg *configs.Config, s procSpec) {
	cfg.Rlimits = containerRlimits(e.initLimits(s))
	e.shares.apply(cfg)
}

// initArgs returns the job's pid 1's command line, running cmd, and its files: status
// (jobinit.StatusFD), the read end of the control pipe (jobinit.ControlFD; the daemon
// alone holds the write end) and the compiled seccomp program (jobinit.SeccompFD), if
// there is one.
func (e *Engine) initArgs(s procSpec, cmd []string, status, control *os.File) ([]string, []*os.File) {
	soft, hard := e.initLimits(s)
	args := []string{jobinit.InitPath, jobinit.ControlArg,
		jobinit.NofileArg, strconv.FormatInt(soft.OpenFiles, 10) + ":" + strconv.FormatInt(hard.OpenFiles, 10)}
	extra := []*os.File{status, control}
	if s.zygote {
		return append(args, cmd...), append(extra, s.extra...)
	}
	if e.seccompProg != nil {
		// The init loads the compiled program first (the config then has none for
		// libcontainer to compile).
		args = append(args, jobinit.SeccompArg)
		extra = append(extra, e.seccompProg)
	}
	return append(args, cmd...), extra
}

// startClock tells a job's init that the job's clock starts now: it ends the job
// initGrace after lim.Timeout even if nobody else does.
func startClock(control *os.File, lim Limits) error {
	_, err := fmt.Fprintf(control, "%d\n", (lim.Timeout + initGrace).Milliseconds())
	if errors.Is(err, syscall.EPIPE) {
		// A cold job's command starts with its container, and a quick one may be over,
		// its init gone, before its clock starts: its report says how it ended.
		return nil
	}
	if err != nil {
		return fmt.Errorf("start the job init's clock: %w", err)
	}
	return nil
}

// fitOwnRlimits lowers p's maximum open files, file size and stack to the daemon's own
// hard rlimits, which every job inherits: raising a hard limit takes CAP_SYS_RESOURCE in
// the host's user namespace, so a job could not be given more, cold or warm. It returns
// the fields it lowered.
func fitOwnRlimits(p Policy, own func(res int) (unix.Rlimit, error)) (Policy, []string) {
	var lowered []string
	for _, f := range []struct {
		name string
		res  int
		max  *int64
	}{
		{"open_files", unix.RLIMIT_NOFILE, &p.Max.OpenFiles},
		{"file_size", unix.RLIMIT_FSIZE, &p.Max.FileSize},
		{"stack", unix.RLIMIT_STACK, &p.Max.Stack},
	} {
		r, err := own(f.res)
		if err != nil || r.Max == unix.RLIM_INFINITY || uint64(*f.max) <= r.Max {
			continue
		}
		*f.max = int64(r.Max)
		lowered = append(lowered, f.name)
	}
	return p, lowered
}
