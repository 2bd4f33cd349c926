package attack_test

import (
	"strings"
	"testing"
)

// Host information: nothing of the host, the daemon or other jobs is visible.
func TestHostInformation(t *testing.T) {
	cases := []jobCase{
		{name: "shadow files unreadable", code: `
import errno
for p in ("/etc/shadow", "/etc/gshadow", "/proc/1/root/etc/shadow", "/root"):
    try:
        open(p, "rb").read(1) if p != "/root" else __import__("os").listdir(p)
        print(p, "READ")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
`, status: "ok", stdout: "/etc/shadow EACCES\n/etc/gshadow EACCES\n/proc/1/root/etc/shadow EACCES\n/root EACCES\n"},

		{name: "proc shows only the job", code: `
import os, errno
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(pids == sorted({1, os.getpid()}), pids)
args = open("/proc/1/cmdline", "rb").read().split(b"\0")[1:]  # the init: [-c] [-n N:M] [-p PID] [-s] python3 ...
i = 0
while args[i].startswith(b"-"):
    i += 2 if args[i] in (b"-n", b"-p") else 1
print(args[i])
try:
    os.kill({{daemon_pid}}, 0)
    print("daemon pid signalled")
except OSError as e:
    print("daemon pid", errno.errorcode[e.errno])
print({l.split(":", 2)[2] for l in open("/proc/self/cgroup").read().split()})
print(os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else [])  # no /sys at all
`, status: "ok", check: func(t *testing.T, r *result) {
			l := lines(r.Stdout)
			if len(l) != 5 || !strings.HasPrefix(l[0], "True ") || l[1] != "b'python3'" ||
				l[2] != "daemon pid ESRCH" || l[3] != "{'/'}" || l[4] != "[]" {
				t.Errorf("the job sees beyond itself:\n%s", r)
			}
		}},

		{name: "no daemon environment", code: `
import os, glob
print(sorted(os.environ))
seen = []
for p in ["/proc/self/environ", "/proc/1/environ"] + glob.glob("/proc/[0-9]*/environ") + glob.glob("/proc/[0-9]*/cmdline"):
    try:
        if b"` + canaryEnv + `" in open(p, "rb").read(): seen.append(p)
    except OSError:
        pass
print("canary in", seen)
`, // the fixed environment and the python runtime's (runtimes/python.toml), nothing else
			status: "ok", stdout: "['HOME', 'LANG', 'MPLBACKEND', 'MPLCONFIGDIR', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'PYTHONUNBUFFERED', 'TMPDIR']\ncanary in []\n",
			check: func(t *testing.T, r *result) {
				if strings.Contains(r.Stdout+r.Stderr, canary) {
					t.Errorf("the daemon's secret reached the job:\n%s", r)
				}
			}},

		{name: "no host paths in mountinfo", code: `
print(open("/proc/self/mountinfo").read())
print(open("/proc/self/mounts").read())
`, status: "ok", check: func(t *testing.T, r *result) {
			d := r.d
			for _, host := range []string{d.dir, d.runDir, stateDir, d.cwd} {
				for _, l := range lines(r.Stdout) {
					if strings.Contains(l, host) {
						t.Errorf("host path %s visible to the job: %s", host, l)
					}
				}
			}
		}},

		// runc's masked paths: absent, empty, or unreadable — never the kernel's data.
		{name: "masked proc and sys entries", code: `
import os, errno
for p in ("/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/timer_stats",
          "/proc/sched_debug", "/proc/latency_stats", "/proc/interrupts", "/proc/acpi", "/proc/scsi",
          "/proc/asound", "/proc/kmsg", "/proc/kpageflags", "/sys/firmware",
          "/sys/devices/virtual/powercap", "/sys/kernel/debug", "/sys/kernel/security"):
    try:
        data = os.listdir(p) if os.path.isdir(p) else open(p, "rb").read(4096)
        print(p, "empty" if len(data) == 0 else "EXPOSED %r" % (data[:80],))
    except OSError as e:
        print(p, "refused" if e.errno in (errno.ENOENT, errno.EACCES, errno.EPERM) else errno.errorcode[e.errno])
`, status: "ok", check: func(t *testing.T, r *result) {
			got := lines(r.Stdout)
			if len(got) != 17 {
				t.Fatalf("want 17 lines:\n%s", r)
			}
			for _, l := range got {
				// key-users shows only the job's own uid's key counts: allowed, but report.
				if !strings.HasSuffix(l, " empty") && !strings.HasSuffix(l, " refused") && !strings.HasPrefix(l, "/proc/key-users ") {
					t.Errorf("not masked: %s", l)
				}
			}
		}},

		{name: "only stdio file descriptors", code: `
import os
print(sorted(int(f) for f in os.listdir("/proc/self/fd")))
leaked = []
for fd in range(3, 1024):
    try:
        os.fstat(fd)
        leaked.append((fd, os.readlink("/proc/self/fd/%d" % fd)))
    except OSError:
        pass
print("leaked", leaked)
print(os.readlink("/proc/self/fd/1")[:5], os.readlink("/proc/self/fd/2")[:5])
`, status: "ok", stdout: "[0, 1, 2, 3]\nleaked []\npipe: pipe:\n"},

		{name: "fixed hostname and working directory", code: `
import socket, os
print(socket.gethostname(), os.uname().nodename, open("/proc/sys/kernel/hostname").read().strip(), os.getcwd())
`, status: "ok", stdout: "sandbox sandbox sandbox /work\n"},

		// mmdebstrap copies the build host's resolv.conf and hostname into the image.
		{name: "no build host identity in the rootfs", code: `
import socket
print(repr(open("/etc/resolv.conf").read()), open("/etc/hostname").read().strip())
print(socket.gethostbyname(socket.gethostname()), socket.gethostbyname("localhost"))
`, status: "ok", stdout: "'' sandbox\n127.0.0.1 127.0.0.1\n"},
	}
	runCases(t, cases)
}
