package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// ErrRunDirBusy is returned by New when another live engine (a second daemon) uses the
// same RunDir: sweeping it would kill that daemon's jobs.
var ErrRunDirBusy = errors.New("another sandboxd uses this run dir")

// lockRunDir takes an exclusive lock on dir for as long as the returned file is open.
// The kernel drops it when the holder dies, so a crashed daemon never blocks the next.
func lockRunDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock run dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", dir, ErrRunDirBusy)
		}
		return nil, fmt.Errorf("lock run dir: %w", err)
	}
	return f, nil
}

// sweep removes everything of the jobs a daemon killed mid-job left in RunDir: their
// processes, cgroups, storage mounts and container state. A job is known by its storage
// dir (made before anything else of it) or its container state; only names like this
// engine's job ids are touched, and RunDir's lock keeps a live daemon's jobs out of reach.
func (e *Engine) sweep() error {
	ids := map[string]bool{}
	for _, dir := range []string{e.stateRoot, e.jobsRoot} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, ent := range ents {
			if strings.HasPrefix(ent.Name(), "sbx-") {
				ids[ent.Name()] = true
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	cgroupDirs, err := e.jobCgroupDirs()
	if err != nil {
		return fmt.Errorf("find job cgroups: %w", err)
	}
	var errs []error
	for id := range ids {
		if err := e.sweepJob(id, cgroupDirs); err != nil {
			errs = append(errs, err)
			continue
		}
		e.opts.Logger.Info("removed leftover job", "job", id)
	}
	return errors.Join(errs...)
}

// sweepJob removes one leftover job: the container if its state survived, then its
// cgroups in every hierarchy (all that is left when the daemon died between creating
// them and saving the state), then its storage.
func (e *Engine) sweepJob(id string, cgroupDirs []string) error {
	if err := reap(e.stateRoot, id); err != nil {
		return err
	}
	for _, dir := range cgroupDirs {
		if err := removeCgroup(filepath.Join(dir, id)); err != nil {
			return err
		}
	}
	storage := filepath.Join(e.jobsRoot, id)
	if err := unmount(storage); err != nil {
		return err
	}
	return os.RemoveAll(storage)
}

// reap kills a container the daemon did not start in this run, waits for its processes
// to go (they are not our children, so poll), and destroys it.
func reap(root, id string) error {
	ctr, err := libcontainer.Load(root, id)
	if err != nil {
		// Unreadable or missing state: drop what there is; removeCgroup kills the rest.
		return os.RemoveAll(filepath.Join(root, id))
	}
	if err := signalKill(ctr); err != nil {
		return fmt.Errorf("kill leftover %s: %w", id, err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if st, err := ctr.Status(); err != nil || st == libcontainer.Stopped {
			break
		}
	}
	if err := ctr.Destroy(); err != nil {
		return fmt.Errorf("destroy leftover %s: %w", id, err)
	}
	return nil
}

// removeCgroup kills every process in a job's cgroup and removes it. Killing the job's
// init ends its pid namespace, so the loop is short; it is bounded all the same.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove leftover cgroup: %w", err)
		}
		killCgroup(dir)
		time.Sleep(10 * time.Millisecond)
	}
}

// killCgroup sends SIGKILL to every process in the cgroup at dir: at once through
// cgroup.kill where the kernel has it (cgroup v2), else one by one.
func killCgroup(dir string) {
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0) == nil {
		return
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
	}
}
