package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

// A holder is python that takes as many of one kernel count as the job can get, prints
// its cap (what its user namespace allows it), how many it got and the errno that
// stopped it, then says so in /work/holding (which the host sees in the job's storage)
// and holds them.
const holdPrelude = `import ctypes, os, resource, sys, time
libc = ctypes.CDLL(None, use_errno=True)
`

const holdTail = `
print(cap, got, ctypes.get_errno(), flush=True)
open("/work/holding", "w").close()
time.sleep(120)
`

// mqAttr is a small queue (one message of 1 KiB), so that a share holds several.
const mqAttr = `
class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
rt = ctypes.CDLL("librt.so.1", use_errno=True)
attr = Attr(0, 1, 1024, 0)
`

// No job can take all of a per-user kernel count: while one job holds as many inotify
// instances (or watches, or message-queue bytes) as it can get, a concurrent job and the
// host's root still get one. Each job's cap is at most its share: the host's limit over
// twice max_jobs.
func TestPerUserKernelCounts(t *testing.T) {
	const maxJobs = 8
	runDir := testenv.RunDir(t)
	e := testenv.Engine(t, sandbox.Options{MaxJobs: maxJobs, PoolSize: -1, RunDir: runDir})
	hostCap := func(name string) uint64 {
		b, err := os.ReadFile("/proc/sys/user/" + name)
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ownMsgqueue := func() uint64 {
		var r unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_MSGQUEUE, &r); err != nil {
			t.Fatal(err)
		}
		return r.Cur
	}
	cases := []struct {
		name    string
		host    uint64 // the host's limit for root
		hold    string // takes all it can: sets cap and got
		one     string // takes one: prints "ok" or the errno
		hostOne func() error
		errno   syscall.Errno // what stops the holder
	}{
		{
			name: "inotify instances", host: hostCap("max_inotify_instances"),
			hold: `cap = int(open("/proc/sys/user/max_inotify_instances").read())
fds = []
while libc.inotify_init() >= 0:
    fds.append(1)
got = len(fds)`,
			one: `fd = libc.inotify_init()
print("ok" if fd >= 0 else ctypes.get_errno())`,
			hostOne: func() error {
				fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
				if err == nil {
					unix.Close(fd)
				}
				return err
			},
			errno: unix.EMFILE,
		},
		{
			name: "inotify watches", host: hostCap("max_inotify_watches"),
			hold: `cap = int(open("/proc/sys/user/max_inotify_watches").read())
fd = libc.inotify_init()
got = 0
while True:
    p = b"/dev/shm/%d" % got
    os.close(os.open(p, os.O_CREAT | os.O_WRONLY))
    if libc.inotify_add_watch(fd, p, 2) < 0:
        break
    got += 1`,
			one: `fd = libc.inotify_init()
print("ok" if libc.inotify_add_watch(fd, b"/work", 2) >= 0 else ctypes.get_errno())`,
			hostOne: func() error {
				fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				_, err = unix.InotifyAddWatch(fd, t.TempDir(), unix.IN_MODIFY)
				return err
			},
			errno: unix.ENOSPC,
		},
		{
			name: "message queue bytes", host: ownMsgqueue(),
			hold: mqAttr + `cap = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
got = 0
while rt.mq_open(b"/q%d" % got, os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr)) >= 0:
    got += 1024`,
			one: mqAttr + `q = rt.mq_open(b"/one", os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(attr))
print("ok" if q >= 0 else ctypes.get_errno())`,
			hostOne: func() error { return hostMqueue(t) },
			errno:   unix.EMFILE,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.Settle() // the last holder's storage is gone: waitHolding sees this one's
			held := make(chan *sandbox.Result, 1)
			go func() {
				r, err := e.Run(context.Background(), sandbox.Request{Code: holdPrelude + c.hold + holdTail, Limits: sandbox.Limits{Timeout: time.Minute}})
				if err != nil {
					t.Error(err)
				}
				held <- r
			}()
			waitHolding(t, runDir)
			// Meanwhile: a concurrent job, and the host's root.
			// (Run, not run: run waits for every job to be gone, the holder too.)
			r, err := e.Run(context.Background(), sandbox.Request{Code: holdPrelude + c.one})
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != sandbox.StatusOK || r.Stdout != "ok\n" {
				t.Errorf("a concurrent job could not get one: %s %q %q", r.Status, r.Stdout, r.Stderr)
			}
			if err := c.hostOne(); err != nil {
				t.Errorf("the host's root could not get one while a job holds all it can: %v", err)
			}
			jobs := e.Jobs()
			if len(jobs) != 1 {
				t.Errorf("%d jobs running, want the holder alone", len(jobs))
			}
			for _, j := range jobs {
				if err := e.Kill(j.ID); err != nil {
					t.Error(err)
				}
			}
			h := <-held
			if h == nil {
				return
			}
			var capN, got uint64
			var errno int
			if _, err := fmt.Sscan(h.Stdout, &capN, &got, &errno); err != nil {
				t.Fatalf("holder: %v: %s %q %q", err, h.Status, h.Stdout, h.Stderr)
			}
			share := c.host / (2 * maxJobs)
			t.Logf("host limit %d, job's cap %d, the job got %d (errno %d)", c.host, capN, got, errno)
			if capN != share || got > capN || got == 0 || syscall.Errno(errno) != c.errno {
				t.Errorf("job's cap %d (want %d, the host's %d over 2×%d jobs), it got %d, stopped by errno %d (want %d)",
					capN, share, c.host, maxJobs, got, errno, c.errno)
			}
			if c.name != "message queue bytes" && got != capN {
				t.Errorf("the job got %d, not all of its cap %d", got, capN)
			}
		})
	}
}

// waitHolding waits until a job's storage holds the file saying it holds all it got.
func waitHolding(t *testing.T, runDir string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m, _ := filepath.Glob(filepath.Join(runDir, "jobs", "*", "holding")); len(m) > 0 {
			return
		}
	}
	t.Fatal("the holding job never got to hold")
}

// hostMqueue creates and removes a POSIX message queue as this (root) process.
func hostMqueue(t *testing.T) error {
	name := fmt.Sprintf("sbx-test-%d", os.Getpid())
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	attr := [8]int64{0, 1, 1024, 0}
	fd, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)), uintptr(os.O_CREATE|os.O_RDWR|os.O_EXCL), 0o600, uintptr(unsafe.Pointer(&attr)), 0, 0)
	if errno != 0 {
		return fmt.Errorf("mq_open: %w", errno)
	}
	unix.Close(int(fd))
	if _, _, errno := unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(p)), 0, 0); errno != 0 {
		return fmt.Errorf("mq_unlink: %w", errno)
	}
	return nil
}

// A job cannot make a user namespace at all: the seccomp profile refuses unshare and
// clone with namespace flags. Its user namespace caps the count all the same, at its
// share, like every /proc/sys/user count.
func TestNoUserNamespacesInJobs(t *testing.T) {
	const maxJobs = 8
	e := testenv.Engine(t, sandbox.Options{MaxJobs: maxJobs})
	var want []string
	ents, err := os.ReadDir("/proc/sys/user")
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		b, err := os.ReadFile(filepath.Join("/proc/sys/user", ent.Name()))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		want = append(want, fmt.Sprintf("%s=%d", ent.Name(), v/(2*maxJobs)))
	}
	r := run(t, e, sandbox.Request{Code: `import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(libc.unshare(0x10000000), ctypes.get_errno())
for n in sorted(os.listdir("/proc/sys/user")):
    print("%s=%s" % (n, open("/proc/sys/user/" + n).read().strip()))`})
	wantOut := fmt.Sprintf("-1 %d\n%s\n", unix.EPERM, strings.Join(want, "\n"))
	if r.Status != sandbox.StatusOK || r.Stdout != wantOut {
		t.Errorf("%s\nstdout %q\nwant   %q\nstderr %q", r.Status, r.Stdout, wantOut, r.Stderr)
	}
}
