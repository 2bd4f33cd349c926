package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// sweep removes what a daemon killed mid-job left in RunDir: containers (their processes,
// cgroups and state) and job storage mounts. Only entries named like this daemon's jobs
// are touched.
func (e *Engine) sweep() error {
	var errs []error
	entries, err := os.ReadDir(e.stateRoot)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		if !strings.HasPrefix(ent.Name(), "sbx-") {
			continue
		}
		if err := reap(e.stateRoot, ent.Name()); err != nil {
			errs = append(errs, err)
		} else {
			e.opts.Logger.Info("removed leftover container", "job", ent.Name())
		}
	}
	jobs, err := os.ReadDir(e.jobsRoot)
	if err != nil {
		return err
	}
	for _, ent := range jobs {
		if !strings.HasPrefix(ent.Name(), "sbx-") {
			continue
		}
		dir := filepath.Join(e.jobsRoot, ent.Name())
		if err := unmount(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reap kills a container the daemon did not start in this run, waits for its processes
// to go (they are not our children, so poll), and destroys it.
func reap(root, id string) error {
	ctr, err := libcontainer.Load(root, id)
	if err != nil {
		// Unreadable state: nothing can run from it any more; drop the directory.
		if rerr := os.RemoveAll(filepath.Join(root, id)); rerr != nil {
			return errors.Join(err, rerr)
		}
		return nil
	}
	if err := ctr.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
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
