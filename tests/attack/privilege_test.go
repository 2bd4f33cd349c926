package attack_test

import (
	"strings"
	"testing"
)

// syscallPy defines sc(nr, *args) -> errno name of a raw system call made through ctypes.
const syscallPy = `
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return "OK" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
`

// Privilege: no capability, no way to gain one, and the dangerous calls refused without
// stopping the job.
func TestPrivilege(t *testing.T) {
	cases := []jobCase{
		{name: "no capabilities, no_new_privs, seccomp", code: `
st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Uid", "Gid"):
    print(k, st[k].split()[0])
`, status: "ok", stdout: "CapInh 0000000000000000\nCapPrm 0000000000000000\nCapEff 0000000000000000\nCapBnd 0000000000000000\n" +
			"CapAmb 0000000000000000\nNoNewPrivs 1\nSeccomp 2\nUid 1000\nGid 1000\n"},

		// x86_64 numbers. Each refused call fails at once and the job goes on.
		{name: "dangerous syscalls refused", code: syscallPy + `
calls = [
    ("mount", 165, 0, 0, 0, 0, 0), ("umount2", 166, 0, 0), ("pivot_root", 155, 0, 0),
    ("unshare(CLONE_NEWUSER)", 272, 0x10000000), ("unshare(CLONE_NEWNS)", 272, 0x20000),
    ("setns", 308, -1, 0), ("clone(CLONE_NEWUSER)", 56, 0x10000000 | 17, 0, 0, 0, 0),
    ("ptrace(TRACEME)", 101, 0, 0, 0, 0), ("ptrace(ATTACH, 1)", 101, 16, 1, 0, 0),
    ("process_vm_readv", 310, 1, 0, 0, 0, 0, 0), ("keyctl", 250, 0, -3, 0), ("add_key", 248, 0, 0, 0, 0, 0),
    ("request_key", 249, 0, 0, 0, 0), ("bpf", 321, 5, 0, 0), ("userfaultfd", 323, 0),
    ("io_uring_setup", 425, 1, 0), ("perf_event_open", 298, 0, 0, -1, -1, 0),
    ("kexec_load", 246, 0, 0, 0, 0), ("kexec_file_load", 320, -1, -1, 0, 0, 0),
    ("init_module", 175, 0, 0, 0), ("finit_module", 313, -1, 0, 0), ("delete_module", 176, 0, 0),
    ("open_by_handle_at", 304, -1, 0, 0), ("reboot", 169, 0, 0, 0, 0), ("swapon", 167, 0, 0),
    ("fsopen", 430, 0, 0), ("open_tree", 428, -1, 0, 0), ("move_mount", 429, -1, 0, -1, 0, 0),
    ("chroot", 161, 0), ("acct", 163, 0), ("settimeofday", 164, 0, 0), ("clone3", 435, 0, 0),
]
for name, *call in calls:
    print(name, sc(*call))
print("alive")
`, status: "ok", check: func(t *testing.T, r *result) {
			got := lines(r.Stdout)
			if len(got) != 33 || got[32] != "alive" {
				t.Fatalf("the job did not go on after the refusals:\n%s", r)
			}
			for _, l := range got[:32] {
				want := " EPERM"
				if strings.HasPrefix(l, "clone3 ") {
					want = " ENOSYS" // so that glibc falls back to clone
				}
				if !strings.HasSuffix(l, want) {
					t.Errorf("%s, want%s", l, want)
				}
			}
		}},

		// With Docker's profile a traced child stopped the job under the daemon as tracer;
		// here ptrace is refused outright and nothing stops.
		{name: "ptrace never hangs the job", code: syscallPy + `
import os, signal, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(w, sc(101, 0, 0, 0, 0).encode())  # PTRACE_TRACEME
    os.kill(os.getpid(), signal.SIGUSR2)     # a tracee would stop here, its tracer being init
    os._exit(0)
os.close(w)
print("attach child", sc(101, 16, pid, 0, 0), "seize init", sc(101, 0x4206, 1, 0, 0))
print("child traceme", os.read(r, 64).decode(), "ended by", os.waitpid(pid, 0)[1] & 0x7f == signal.SIGUSR2)
print("alive")
`, limits: limits{"timeout": 5}, status: "ok", stdout: "attach child EPERM seize init EPERM\nchild traceme EPERM ended by True\nalive\n"},

		// pid 1 runs as the job's uid but reports the job's exit status to the daemon:
		// the job must not write its memory (and forge that report) or use its descriptors.
		{name: "job init out of reach", code: `
import errno
for p, mode in (("/proc/1/mem", "r+b"), ("/proc/1/fd/3", "wb"), ("/proc/1/environ", "rb")):
    try:
        open(p, mode).close()
        print(p, "OPENED")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
`, status: "ok", stdout: "/proc/1/mem EACCES\n/proc/1/fd/3 EACCES\n/proc/1/environ EACCES\n"},

		// The legacy ABIs bypass an x86_64-only filter unless refused: the thread dies.
		{name: "x32 and i386 ABIs refused", code: `
import subprocess, sys
x32 = "import ctypes; print(ctypes.CDLL(None).syscall(0x40000000 | 39))"
i386 = """
import ctypes, mmap
code = bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])
m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(code)
print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))())
"""
for name, code in (("x32", x32), ("i386", i386)):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=5)
    print(name, "killed" if p.returncode < 0 else "RAN %d %r" % (p.returncode, p.stdout))
`, limits: limits{"timeout": 8}, status: "ok", stdout: "x32 killed\ni386 killed\n"},

		{name: "no identity or priority changes", code: `
import os, errno, resource
for f, a in ((os.setuid, 0), (os.setgid, 0), (os.setgroups, [0]), (os.nice, -5), (os.chroot, "/tmp")):
    try:
        f(a)
        print(f.__name__, "OK")
    except OSError as e:
        print(f.__name__, errno.errorcode[e.errno])
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
except OSError as e:
    print("sched_setscheduler", errno.errorcode[e.errno])
for res in (resource.RLIMIT_NOFILE, resource.RLIMIT_CORE):
    try:
        resource.setrlimit(res, (1 << 20, 1 << 20))
        print("raised rlimit", res)
    except ValueError:
        print("rlimit", res, "refused")
try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("-1000")
    print("oom_score_adj lowered")
except OSError as e:
    print("oom_score_adj", errno.errorcode[e.errno])
`, status: "ok", stdout: "setuid EPERM\nsetgid EPERM\nsetgroups EPERM\nnice EPERM\nchroot EPERM\nsched_setscheduler EPERM\n" +
			"rlimit 7 refused\nrlimit 4 refused\noom_score_adj EACCES\n"},

		// The rootfs has setuid-root binaries; under no_new_privs they run as the job.
		{name: "setuid binaries gain nothing", code: `
import subprocess
for cmd in (["/usr/bin/mount", "-t", "tmpfs", "none", "/work"], ["/usr/bin/umount", "/work"],
            ["/usr/bin/chfn", "-f", "x", "root"], ["/usr/bin/chsh", "-s", "/bin/sh", "root"]):
    p = subprocess.run(cmd, capture_output=True, timeout=5, stdin=subprocess.DEVNULL)
    print(cmd[0], p.returncode, p.stderr.decode().splitlines()[0])
`, limits: limits{"timeout": 8}, status: "ok", stdout: "/usr/bin/mount 32 mount: /work: must be superuser to use mount.\n" +
			"/usr/bin/umount 32 umount: /work: must be superuser to unmount.\n/usr/bin/chfn 1 chfn: Permission denied.\n" +
			"/usr/bin/chsh 1 You may not change the shell for 'root'.\n"},
	}
	runCases(t, cases)
}
