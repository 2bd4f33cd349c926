package sandbox_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

// Each limit enforced for real, and the figures in results agree with what the job did.
func TestLimitsAndFigures(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{})
	cases := []struct {
		name   string
		req    sandbox.Request
		status sandbox.Status
		check  func(t *testing.T, r *sandbox.Result)
	}{
		{"cpu time stops a busy loop at the limit", sandbox.Request{Code: "while True: pass",
			Limits: sandbox.Limits{CPUTime: time.Second, Timeout: 10 * time.Second}}, sandbox.StatusCPULimit,
			func(t *testing.T, r *sandbox.Result) {
				if r.CPUMS < 1000 || r.CPUMS > 1200 {
					t.Errorf("cpu_ms %.1f, want 1000-1200", r.CPUMS)
				}
			}},
		{"cpu time is summed over processes", sandbox.Request{Code: `
import os
for _ in range(3):
    if os.fork() == 0:
        break
while True: pass`, Limits: sandbox.Limits{CPUs: 2, CPUTime: time.Second, Timeout: 10 * time.Second}}, sandbox.StatusCPULimit,
			func(t *testing.T, r *sandbox.Result) {
				// Per process, each of the 4 would run to 1 s: about 4 s of CPU in all.
				if r.CPUMS < 1000 || r.CPUMS > 1200 {
					t.Errorf("cpu_ms %.1f, want 1000-1200: the limit is for all processes together", r.CPUMS)
				}
			}},
		{"sleeping is not charged cpu", sandbox.Request{Code: "import time; time.sleep(1)",
			Limits: sandbox.Limits{CPUTime: 200 * time.Millisecond, Timeout: 5 * time.Second}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if r.Wall < time.Second || r.CPUMS > 150 {
					t.Errorf("wall %v cpu_ms %.1f", r.Wall, r.CPUMS)
				}
			}},
		{"cpus quota throttles", sandbox.Request{Code: `
import time
end = time.monotonic() + 1
while time.monotonic() < end: pass`, Limits: sandbox.Limits{CPUs: 0.25}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if r.CPUMS > 400 { // 0.25 CPU for ~1 s, plus start-up
					t.Errorf("cpu_ms %.1f with cpus 0.25 over ~1 s", r.CPUMS)
				}
			}},
		{"memory peak is what the job allocated", sandbox.Request{Code: `
x = bytearray(200 << 20)
for i in range(0, len(x), 4096): x[i] = 1`, Limits: sandbox.Limits{Memory: 512 << 20}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if want := int64(200 << 20); r.MemoryPeak < want || r.MemoryPeak > want*11/10 {
					t.Errorf("memory_peak %d, want within 10%% above %d", r.MemoryPeak, want)
				}
			}},
		{"tmpfs pages count against memory", sandbox.Request{Code: `
with open("/tmp/f", "wb") as f:
    for _ in range(200): f.write(b"x" * (1 << 20))`, Limits: sandbox.Limits{Memory: 64 << 20, Storage: 512 << 20}}, sandbox.StatusMemoryLimit,
			func(t *testing.T, r *sandbox.Result) {
				if !r.OOMKilled {
					t.Error("oom_killed false")
				}
			}},
		{"fork bomb stops at pids with EAGAIN", sandbox.Request{Code: `
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(5); os._exit(0)
        n += 1
except BlockingIOError as e:
    print("EAGAIN", n)`, Limits: sandbox.Limits{Pids: 16}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if !strings.HasPrefix(r.Stdout, "EAGAIN ") || !r.PidsLimitHit || r.PidsPeak > 16 {
					t.Errorf("stdout %q pids_limit_hit %v pids_peak %d", r.Stdout, r.PidsLimitHit, r.PidsPeak)
				}
			}},
		{"thread bomb stops at pids", sandbox.Request{Code: `
import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start(); n += 1
except RuntimeError as e:
    print("refused", n)
import os; os._exit(0)`, Limits: sandbox.Limits{Pids: 16}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if !strings.HasPrefix(r.Stdout, "refused ") || !r.PidsLimitHit {
					t.Errorf("stdout %q stderr %q pids_limit_hit %v", r.Stdout, r.Stderr, r.PidsLimitHit)
				}
			}},
		{"inode cap", sandbox.Request{Code: `
import errno, os
n = 0
try:
    while True:
        open(f"/tmp/{n}", "w").close(); n += 1
except OSError as e:
    print(errno.errorcode[e.errno], n < 2000)`, Limits: sandbox.Limits{Storage: 4 << 20}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if r.Stdout != "ENOSPC True\n" {
					t.Errorf("stdout %q stderr %q", r.Stdout, r.Stderr)
				}
			}},
		{"rlimits", sandbox.Request{Code: `
import errno, resource
print([resource.getrlimit(r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_STACK, resource.RLIMIT_CORE)])
try:
    fs = [open("/dev/null") for _ in range(100)]
except OSError as e:
    print(errno.errorcode[e.errno])
try:
    open("/tmp/big", "wb").write(b"x" * (2 << 20))
except OSError as e:
    print(errno.errorcode[e.errno])`, Limits: sandbox.Limits{OpenFiles: 32, FileSize: 1 << 20, Stack: 4 << 20}}, sandbox.StatusOK,
			func(t *testing.T, r *sandbox.Result) {
				if r.Stdout != "[(32, 32), (1048576, 1048576), (4194304, 4194304), (0, 0)]\nEMFILE\nEFBIG\n" {
					t.Errorf("stdout %q stderr %q", r.Stdout, r.Stderr)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, e, c.req)
			if r.Status != c.status {
				t.Fatalf("status %q, want %q (exit %d signal %q stdout %q stderr %q)", r.Status, c.status, r.ExitCode, r.Signal, r.Stdout, r.Stderr)
			}
			c.check(t, r)
		})
	}
}

// io throttles on the disk under the rootfs: O_DIRECT reads bypass the page cache, so a
// 1 MB/s cap makes reading 4 MB take at least 3 s, and the cgroup counts the bytes.
func TestIOReadThrottle(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 4 s")
	}
	e := testenv.Engine(t, sandbox.Options{})
	code := `
import mmap, os, time
fd = os.open("/usr/bin/python3.11", os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 1 << 20)
t = time.monotonic()
n = sum(os.readv(fd, [buf]) for _ in range(4))
print(n, round(time.monotonic() - t, 1))`
	r := run(t, e, sandbox.Request{Code: code, Limits: sandbox.Limits{IOReadBPS: 1 << 20, Timeout: 30 * time.Second}})
	if r.Status == sandbox.StatusError && strings.Contains(r.Stderr, "EINVAL") {
		t.Skip("the filesystem under the rootfs does not take O_DIRECT")
	}
	var n int
	var secs float64
	if _, err := fmtSscan(r.Stdout, &n, &secs); err != nil || n != 4<<20 || secs < 3 {
		t.Errorf("read %d bytes in %.1f s at 1 MB/s (stdout %q stderr %q)", n, secs, r.Stdout, r.Stderr)
	}
	if r.IOReadBytes < 4<<20 {
		t.Errorf("io_read_bytes %d, want >= 4 MiB", r.IOReadBytes)
	}
}

// An engine whose set-up breaks half-way reports internal_error and leaves nothing.
func TestInternalErrorLeavesNothing(t *testing.T) {
	runDir := testenv.RunDir(t)
	e := testenv.Engine(t, sandbox.Options{RunDir: runDir})
	if err := unix.Unmount(filepath.Join(runDir, "init"), unix.MNT_DETACH); err != nil { // the jobs' pid 1
		t.Fatal(err)
	}
	r := run(t, e, sandbox.Request{Code: "print(1)"})
	if r.Status != sandbox.StatusInternalError || r.Error == "" || strings.Contains(r.Error, runDir) {
		t.Errorf("status %q error %q", r.Status, r.Error)
	}
}
