package attack_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// healthy is a check for bombs: whatever the job did, the daemon still answers.
func healthy(t *testing.T, r *result) {
	t.Helper()
	if err := r.d.healthy(); err != nil {
		t.Errorf("daemon unhealthy after the job: %v", err)
	}
}

// within returns a check that the job ended within max of wall time and the answer
// came soon after.
func within(max time.Duration) func(t *testing.T, r *result) {
	return func(t *testing.T, r *result) {
		t.Helper()
		if wall := time.Duration(r.WallMS * float64(time.Millisecond)); wall > max {
			t.Errorf("wall %v, want at most %v", wall, max)
		}
		if r.rtt > max+2*time.Second {
			t.Errorf("answer after %v, want at most %v", r.rtt, max+2*time.Second)
		}
		healthy(t, r)
	}
}

func oomKilled(t *testing.T, r *result) {
	t.Helper()
	if !r.OOMKilled {
		t.Errorf("oom_killed false:\n%s", r)
	}
	healthy(t, r)
}

// Exhaustion: every resource a job can consume is capped, the job is told, and the
// daemon stays healthy.
func TestExhaustion(t *testing.T) {
	fill := func(path string) string {
		return `
import errno
try:
    with open("` + path + `", "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
except OSError as e:
    print(errno.errorcode[e.errno])
`
	}
	cases := []jobCase{
		{name: "fork bomb stops at pids limit", code: `
import os, time, errno
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("fork refused", errno.errorcode[e.errno], n < 16)
`, limits: limits{"pids": 16, "timeout": 5}, status: "ok", stdout: "fork refused EAGAIN True\n", check: healthy},

		// Every process forks forever and ignores the failures: only the timeout ends it.
		{name: "relentless fork bomb", code: `
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
`, limits: limits{"pids": 32, "timeout": 1}, status: "timeout", check: within(2500 * time.Millisecond)},

		{name: "thread bomb stops at pids limit", code: `
import threading, time
n = 0
try:
    while True:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        n += 1
except RuntimeError:
    print("thread refused", n < 16)
`, limits: limits{"pids": 16, "timeout": 5}, status: "ok", stdout: "thread refused True\n", check: healthy},

		{name: "heap bomb", code: `
x = []
while True:
    x.append(bytearray(8 << 20))
`, limits: limits{"memory": "64MB", "timeout": 10}, status: "memory_limit", check: oomKilled},

		{name: "memfd bomb", code: `
import os
fd = os.memfd_create("bomb")
while True:
    os.write(fd, b"x" * (1 << 20))
`, limits: limits{"memory": "64MB", "timeout": 10}, status: "memory_limit", check: oomKilled},

		// tmpfs pages are charged to the job: a tmpfs larger than the memory limit
		// runs out of memory, a smaller one out of space.
		{name: "dev shm bomb beyond memory", code: fill("/dev/shm/bomb"),
			limits: limits{"memory": "64MB", "storage": "256MB", "timeout": 10}, status: "memory_limit", check: oomKilled},
		{name: "dev shm fill", code: fill("/dev/shm/bomb"),
			limits: limits{"memory": "256MB", "storage": "8MB", "timeout": 10}, status: "ok", stdout: "ENOSPC\n"},
		{name: "tmpfs bomb beyond memory", code: fill("/tmp/bomb"),
			limits: limits{"memory": "64MB", "storage": "256MB", "timeout": 10}, status: "memory_limit", check: oomKilled},
		{name: "storage fill", code: fill("/work/bomb"),
			limits: limits{"memory": "256MB", "storage": "8MB", "timeout": 10}, status: "ok", stdout: "ENOSPC\n"},

		{name: "inode fill", code: `
import errno
n = 0
try:
    while True:
        open("/tmp/f%d" % n, "w").close()
        n += 1
except OSError as e:
    print(errno.errorcode[e.errno], n < 2000)
`, limits: limits{"storage": "4MB", "timeout": 10}, status: "ok", stdout: "ENOSPC True\n"},

		{name: "file descriptor exhaustion", code: `
import os, errno
fds = []
try:
    while True:
        fds.append(os.open("/dev/null", os.O_RDONLY))
except OSError as e:
    print(errno.errorcode[e.errno], len(fds) < 1024)
`, status: "ok", stdout: "EMFILE True\n", check: healthy},

		{name: "cpu spin", code: "while True: pass", limits: limits{"timeout": 1}, status: "timeout", check: within(2500 * time.Millisecond)},
		{name: "sleep", code: "import time\ntime.sleep(3600)", limits: limits{"timeout": 1}, status: "timeout", check: within(2500 * time.Millisecond)},
		{name: "self SIGSTOP", code: `
import os, signal
print("stopping", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
print("resumed")
`, limits: limits{"timeout": 1}, status: "timeout", stdout: "stopping\n", timed: true, check: within(2500 * time.Millisecond)},

		{name: "stdout and stderr flood", code: `
import os
chunk = b"A" * 65536
bad = b"\xff\xfe\x00\"\\\x1b[2J" * 8192
for _ in range(1024):
    os.write(1, chunk)
    os.write(2, bad)
`, limits: limits{"timeout": 10}, status: "ok", timed: true, check: func(t *testing.T, r *result) {
			if !r.StdoutTruncated || !r.StderrTruncated {
				t.Errorf("truncated flags stdout=%v stderr=%v", r.StdoutTruncated, r.StderrTruncated)
			}
			if len(r.Stdout) != outputLimit || strings.Trim(r.Stdout, "A") != "" {
				t.Errorf("stdout holds %d bytes, want %d of the job's", len(r.Stdout), outputLimit)
			}
			// Invalid UTF-8 becomes U+FFFD (3 bytes) in JSON: at most three times the cap.
			if len(r.Stderr) == 0 || len(r.Stderr) > 3*outputLimit {
				t.Errorf("stderr holds %d bytes", len(r.Stderr))
			}
			healthy(t, r)
		}},
		{name: "endless flood", code: "import os\nwhile True: os.write(1, b'x' * 65536)",
			limits: limits{"timeout": 1}, status: "timeout", check: func(t *testing.T, r *result) {
				if !r.StdoutTruncated || len(r.Stdout) != outputLimit {
					t.Errorf("stdout %d bytes, truncated=%v", len(r.Stdout), r.StdoutTruncated)
				}
				within(2500*time.Millisecond)(t, r)
			}},

		// No core file reaches the host, however the job asks.
		{name: "no core dumps", code: `
import resource, ctypes, os
print(resource.getrlimit(resource.RLIMIT_CORE))
try:
    resource.setrlimit(resource.RLIMIT_CORE, (-1, -1))
except ValueError:
    print("refused")
ctypes.string_at(0)
`, status: "signaled", stdout: "(0, 0)\nrefused\n", check: func(t *testing.T, r *result) {
			if r.Signal != "SIGSEGV" {
				t.Errorf("signal %q, want SIGSEGV", r.Signal)
			}
			cwd, _ := os.Getwd()
			for _, dir := range []string{r.d.dir, cwd} {
				_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
					if p == filepath.Join(r.d.runDir, "root") || p == filepath.Join(r.d.runDir, "roots") {
						return fs.SkipDir // the jobs' read-only roots: the images themselves
					}
					if err == nil && strings.HasPrefix(e.Name(), "core") {
						t.Errorf("core file on the host: %s", p)
					}
					return nil
				})
			}
			if pat, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); strings.HasPrefix(string(pat), "|") {
				t.Logf("host core_pattern pipes to %q: RLIMIT_CORE 0 does not stop a pipe helper", pat)
			}
		}},
	}
	runCases(t, cases)
}
