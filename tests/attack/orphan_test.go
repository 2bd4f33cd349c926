package attack_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// initGrace is how long past its deadline a job's init ends the job on its own
// (sandbox.initGrace).
const initGrace = 2 * time.Second

// A job is bounded without the daemon: when the daemon is SIGKILLed and never
// restarted, the running job and the idle warm container go at once (their inits see
// the daemon's end of their control pipes close); when the daemon is alive but stuck
// (SIGSTOP), the job's init ends it at its deadline plus a grace.
func TestJobsBoundedWithoutTheDaemon(t *testing.T) {
	need(t)
	for _, c := range []struct {
		name string
		stop func(d *daemon) error
		// by is how long after the daemon stops the job must be gone; warmGoes says
		// whether the idle warm container must go too.
		by       time.Duration
		warmGoes bool
	}{
		{"daemon killed", func(d *daemon) error { return d.kill() }, 2*time.Second + initGrace, true},
		{"daemon stopped", func(d *daemon) error { return d.cmd.Process.Signal(syscall.SIGSTOP) }, 2*time.Second + initGrace + time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := startDaemon("orphan", 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			// A cold job (storage other than the pool's) with a 2 s timeout that would
			// sleep for ten minutes, beside the pool's idle warm container.
			go func() {
				_, _ = d.run("import time\ntime.sleep(600)", limits{"timeout": 2, "storage": "32MB"})
			}()
			job, warm := orphanProcs(t, d)
			stopped := time.Now()
			if err := c.stop(d); err != nil {
				t.Fatal(err)
			}
			for time.Since(stopped) < c.by && len(alive(job)) > 0 {
				time.Sleep(50 * time.Millisecond)
			}
			took := time.Since(stopped)
			if a := alive(job); len(a) > 0 {
				t.Errorf("the job's processes %v still run %v after the daemon stopped (timeout 2 s)", a, took.Round(time.Millisecond))
			} else {
				t.Logf("the job's processes were gone %v after the daemon stopped", took.Round(time.Millisecond))
			}
			if c.warmGoes {
				for time.Since(stopped) < c.by && len(alive(warm)) > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				if a := alive(warm); len(a) > 0 {
					t.Errorf("the idle warm container's processes %v outlived the daemon", a)
				}
			} else {
				if a := alive(warm); len(a) != len(warm) {
					t.Errorf("the idle warm container of a live (stopped) daemon died: %v of %v alive", a, warm)
				}
				_ = d.cmd.Process.Signal(syscall.SIGCONT)
				if err := d.stop(); err != nil {
					t.Error(err)
				}
				return
			}
			// Clean up what the test made: a restart sweeps the rest, then stops.
			d2, err := startDaemon("orphan", 1, d)
			if err != nil {
				t.Fatal(err)
			}
			noLeftovers(t, d2)
			if err := d2.stop(); err != nil {
				t.Error(err)
			}
		})
	}
}

// orphanProcs waits until d runs a job (a cgroup whose storage holds main.py) and an
// idle warm container, each with its init and python, and returns their processes.
func orphanProcs(t *testing.T, d *daemon) (job, warm []string) {
	t.Helper()
	var last []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		last, job, warm = warm, nil, nil
		for _, cg := range d.jobCgroups() {
			b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
			if err != nil {
				continue
			}
			pids := strings.Fields(string(b))
			if len(pids) < 2 {
				continue
			}
			if _, err := os.Stat(filepath.Join(d.runDir, "jobs", filepath.Base(cg), "main.py")); err == nil {
				job = append(job, pids...)
			} else if d.idleWarm(filepath.Base(cg)) {
				warm = append(warm, pids...)
			}
		}
		// The same warm processes twice in a row: a fork server's short-lived fork (the
		// next job's init being made) is not taken for one of them.
		if len(job) >= 2 && len(warm) >= 2 && slices.Equal(warm, last) {
			return job, warm
		}
	}
	_ = d.kill()
	t.Fatalf("no job and idle warm container running: job %v, warm %v: %s", job, warm, d.logTail())
	return nil, nil
}
