"""Refused calls fail at once with EPERM (ENOSYS for clone3) and the job goes on.

Run by TestPythonUnderFilter after the filter is loaded; exits 0 and prints
"ok", or prints each failure and exits 1.
"""
import ctypes
import errno
import signal
import socket
import subprocess
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
failures = []


def syscall(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return r, ctypes.get_errno()


def expect(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got}, want {want}")


def run(code):
    """Runs code in a fresh interpreter, which is single-threaded."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


REFUSED = (-1, errno.EPERM)
# In a child: were ptrace allowed, TRACEME would make the caller's parent its
# tracer and the next signal would stop the caller for good. The child gets no
# signal before it exits.
p = run("import ctypes; print(ctypes.CDLL(None, use_errno=True).syscall(101, 0, 0, 0, 0), ctypes.get_errno())")
expect("ptrace(PTRACE_TRACEME)", p.stdout.split(), ["-1", str(errno.EPERM)])
expect("unshare(CLONE_NEWUSER)", syscall(272, 0x10000000), REFUSED)
expect("setns(-1, 0)", syscall(308, -1, 0), REFUSED)
expect("mount(NULL, NULL, NULL, 0, NULL)", syscall(165, 0, 0, 0, 0, 0), REFUSED)
expect("keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)", syscall(250, 0, -3, 0), REFUSED)
expect("bpf(BPF_PROG_LOAD, NULL, 0)", syscall(321, 5, 0, 0), REFUSED)
expect("userfaultfd(0)", syscall(323, 0), REFUSED)
expect("io_uring_setup(1, NULL)", syscall(425, 1, 0), REFUSED)
expect("perf_event_open(NULL, 0, -1, -1, 0)", syscall(298, 0, 0, -1, -1, 0), REFUSED)
expect("clone3(NULL, 0)", syscall(435, 0, 0), (-1, errno.ENOSYS))

for name, args in {
    "AF_PACKET": (socket.AF_PACKET, socket.SOCK_RAW, 0),
    "AF_INET SOCK_RAW|SOCK_CLOEXEC": (socket.AF_INET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_ICMP),
    "AF_NETLINK NETLINK_AUDIT": (socket.AF_NETLINK, socket.SOCK_RAW, 9),
    "AF_VSOCK": (40, socket.SOCK_STREAM, 0),
    "AF_ALG": (38, socket.SOCK_SEQPACKET, 0),
}.items():
    try:
        socket.socket(*args).close()
        failures.append(f"socket({name}) succeeded")
    except OSError as e:
        expect(f"socket({name})", e.errno, errno.EPERM)
socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()

# The x32 and i386 ABIs: libseccomp's architecture check kills the calling
# thread, which in a single-threaded child means SIGSYS. No core dump.
NO_CORE = "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
X32_GETPID = "import ctypes; print(ctypes.CDLL(None).syscall(0x40000000 | 39))"
I386_GETPID = """
import ctypes, mmap
code = bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])  # mov eax, 20 (i386 getpid); int 0x80; ret
m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
m.write(code)
print(ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(m)))())
"""
for name, code, allowed in (
    ("x32 getpid", X32_GETPID, {-signal.SIGSYS}),
    # A kernel without IA32 emulation raises SIGSEGV on int 0x80 instead.
    ("i386 getpid (int 0x80)", I386_GETPID, {-signal.SIGSYS, -signal.SIGSEGV}),
):
    p = run(NO_CORE + code)
    if p.returncode not in allowed:
        failures.append(f"{name}: exit status {p.returncode}, output {p.stdout!r}, want one of {allowed}")

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ok")
