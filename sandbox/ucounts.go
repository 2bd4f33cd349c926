package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// The kernel keeps some counts per user, in the user namespace where a thing is made
// and in every one above it: the counts of /proc/sys/user (inotify instances and watches,
// fanotify groups and marks, namespaces of each kind) and those of RLIMIT_MSGQUEUE,
// RLIMIT_SIGPENDING and RLIMIT_MEMLOCK. Above a job's user namespace they are charged to
// the user that made it: root, who makes every job's (runc does, for the daemon). So
// without a cap of its own one job could take all of root's inotify instances, say, and
// no other job, nor anything on the host running as root, could make one.
//
// Each job gets its share instead, in its own user namespace, where its limits are its
// own: the /proc/sys/user counts as sysctls runc writes in the new namespace (container
// root may), the rlimit-counted ones as rlimits. A share is the host's limit divided by
// twice the jobs that may run at once (max_jobs; an idle warm container runs only the
// bootstrap and holds none), so all jobs together never take more than half of root's.

// userCountsDir is where the kernel lists the per-user-namespace counts.
const userCountsDir = "/proc/sys/user"

// sharedRlimits are the rlimits whose counts are per user and charged up the user
// namespaces, like the /proc/sys/user ones. RLIMIT_NPROC is too, but processes are
// bounded by the pids cgroup, and the host's root is exempt from it anyway.
var sharedRlimits = []int{unix.RLIMIT_MSGQUEUE, unix.RLIMIT_SIGPENDING, unix.RLIMIT_MEMLOCK}

// kernelShares is what every job gets of the per-user kernel counts.
type kernelShares struct {
	sysctl  map[string]string // user.max_*
	rlimits []configs.Rlimit
}

// kernelSharesFor divides the host's limits, read from dir (/proc/sys/user) and the
// daemon's own rlimits (which runc, and so every job's user namespace, inherits), among
// maxJobs jobs, keeping half for the host.
func kernelSharesFor(dir string, maxJobs int, rlimit func(res int) (unix.Rlimit, error)) (kernelShares, error) {
	parts := uint64(2 * max(maxJobs, 1))
	s := kernelShares{sysctl: map[string]string{}}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) { // kernels without user namespaces have none
		return s, fmt.Errorf("read the per-user kernel limits: %w", err)
	}
	for _, ent := range ents {
		if !strings.HasPrefix(ent.Name(), "max_") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			return s, fmt.Errorf("read the per-user kernel limits: %w", err)
		}
		host, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return s, fmt.Errorf("%s: %w", filepath.Join(dir, ent.Name()), err)
		}
		s.sysctl["user."+ent.Name()] = strconv.FormatUint(host/parts, 10)
	}
	for _, res := range sharedRlimits {
		var own unix.Rlimit
		if own, err = rlimit(res); err != nil {
			return s, fmt.Errorf("read rlimit %d: %w", res, err)
		}
		if own.Cur == unix.RLIM_INFINITY {
			continue // nothing above the job to exhaust
		}
		share := own.Cur / parts
		s.rlimits = append(s.rlimits, configs.Rlimit{Type: res, Soft: share, Hard: share})
	}
	return s, nil
}

// ownRlimit is the daemon's own limit res.
func ownRlimit(res int) (unix.Rlimit, error) {
	var r unix.Rlimit
	err := unix.Getrlimit(res, &r)
	return r, err
}

// apply gives a job's configuration its shares.
func (s kernelShares) apply(cfg *configs.Config) {
	if len(s.sysctl) > 0 {
		if cfg.Sysctl == nil {
			cfg.Sysctl = map[string]string{}
		}
		for k, v := range s.sysctl {
			cfg.Sysctl[k] = v
		}
	}
	cfg.Rlimits = append(cfg.Rlimits, s.rlimits...)
}
