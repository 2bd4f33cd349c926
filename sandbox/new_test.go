package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

// mountsBelow lists the mount points at or below dir in this thread's mount namespace,
// the host's. Not /proc/self: libcontainer leaves a thread that joined a container's
// mount namespace locked there, and when that is the main thread, /proc/self shows it.
func mountsBelow(t *testing.T, dir string) []string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// lockFree says whether the run dir's lock can be taken, i.e. no engine holds it.
func lockFree(t *testing.T, runDir string) bool {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(runDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return true
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		t.Fatal(err)
	}
	return false
}

// New undoes what it did when it fails half-way: no mount of its own is left and the
// run dir is unlocked, so the next New on it succeeds. Close unlocks it too, after it
// has waited for every warm container, so a new engine can take the same run dir.
func TestNewCleansUpAndCloseUnlocks(t *testing.T) {
	rootfs := testenv.Rootfs(t)
	runDir := testenv.RunDir(t)
	opts := func() sandbox.Options {
		return sandbox.Options{Rootfs: rootfs, RunDir: runDir, PoolSize: 1, MaxJobs: 2,
			CgroupName: fmt.Sprintf("sandboxd-test-new-%d", os.Getpid())}
	}
	// A leftover job New cannot remove: its storage holds a read-only mount with a file
	// in it. New fails at its sweep, after it has locked the run dir and made its mounts.
	stuck := filepath.Join(runDir, "jobs", "sbx-0000000000000000", "ro")
	if err := os.MkdirAll(stuck, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", stuck, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(stuck, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(stuck, "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("", stuck, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sandbox.New(opts()); err == nil {
		t.Fatal("New succeeded with a leftover it cannot remove")
	} else {
		t.Logf("New failed as it should: %v", err)
	}
	if m := mountsBelow(t, runDir); len(m) != 1 || m[0] != stuck {
		t.Errorf("mounts after a failed New: %v, want only the test's own %s", m, stuck)
	}
	if !lockFree(t, runDir) {
		t.Error("a failed New left the run dir locked")
	}

	// Without the obstacle the next New on the same run dir works.
	if err := unix.Unmount(stuck, 0); err != nil {
		t.Fatal(err)
	}
	for round := range 2 {
		e, err := sandbox.New(opts())
		if err != nil {
			t.Fatalf("New (round %d): %v", round, err)
		}
		if lockFree(t, runDir) {
			t.Error("a live engine does not hold the run dir's lock")
		}
		deadline := time.Now().Add(30 * time.Second)
		for e.PoolIdle() < 1 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		// A change of the pooled shape makes the idle container stale: the next job
		// discards it (torn down in the background), which Close must wait for.
		p := e.Policy()
		p.Default.Storage = 32 << 20
		if err := e.SetPolicy(p); err != nil {
			t.Fatal(err)
		}
		r, err := e.Run(context.Background(), sandbox.Request{Code: "print('hi')"})
		if err != nil || r.Status != sandbox.StatusOK {
			t.Fatalf("job: %v %+v", err, r)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err = e.Close(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if m := mountsBelow(t, runDir); len(m) != 0 {
			t.Errorf("mounts after Close: %v", m)
		}
		for _, sub := range []string{"containers", "jobs"} {
			if ents, _ := os.ReadDir(filepath.Join(runDir, sub)); len(ents) != 0 {
				t.Errorf("%s after Close: %v", sub, ents)
			}
		}
		if !lockFree(t, runDir) {
			t.Error("Close left the run dir locked")
		}
	}
}
