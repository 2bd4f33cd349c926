# The fork server (zygote) of a python runtime: see forkserver.go. It runs as root of its
# container's user namespace, holds a few capabilities there and no job's code, ever.
# Per job it forks A, which makes the job's namespaces and forks B, pid 1 of the job's
# pid namespace; B is moved into the job's cgroup by the daemon and mounts a fresh /proc
# and /dev/pts, ahead of the job. With the job come its storage (mounted at /work and
# /tmp), limits and stdio: B drops every privilege, loads the job's seccomp filter,
# forks C (the job: the warm bootstrap's _sbx_run) and becomes the job's init.
# Nothing of a job passes through this process: its code and stdin go from the daemon
# to C's stdin and storage, its output from C to the daemon.
import os, sys
_sbx_startup = set(sys.modules)  # what a cold python has: C drops the rest
import ctypes, json, socket, struct, fcntl, resource

_SOCK, _PROG = 5, 6  # the daemon's control socket; the job's seccomp program (optional)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
try:
    _prog = os.pread(_PROG, 1 << 20, 0)
    os.close(_PROG)
except OSError:
    _prog = None
with open("/proc/sys/kernel/cap_last_cap") as f:
    _last_cap = int(f.read())

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x20000, 0x2000000, 0x4000000, 0x8000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
SYS_move_mount, MOVE_MOUNT_F_EMPTY_PATH, AT_FDCWD, MNT_DETACH = 429, 4, -100, 2
SYS_fsopen, SYS_fsconfig, SYS_fsmount, FSCONFIG_CMD_CREATE = 430, 431, 432, 6
MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC = 2, 4, 8
PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 4, 22, 24, 38, 47


def _check(r, what):
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, what + ": " + os.strerror(e))


def _mount(src, dst, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    _check(_libc.mount(enc(src), enc(dst), enc(fstype), ctypes.c_ulong(flags), enc(data)), "mount " + dst)


def _mask(path):
    # As runc does: /dev/null over a file, an empty read-only tmpfs over a directory.
    try:
        _mount("/dev/null", path, None, MS_BIND)
    except OSError as e:
        if e.errno == 2:  # ENOENT: this kernel has no such entry
            return
        if e.errno != 20:  # ENOTDIR
            raise
        _mount("tmpfs", path, "tmpfs", MS_RDONLY, "nr_blocks=1,nr_inodes=1")


def _readonly(path):
    try:
        _mount(path, path, None, MS_BIND | MS_REC)
    except OSError as e:
        if e.errno == 2:
            return
        raise
    _mount(path, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _drop_privileges(uid, gid):
    # runc's order: the bounding set (needs CAP_SETPCAP), the ids, then every other set.
    for cap in range(_last_cap + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop capability")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # clears the effective, permitted and ambient sets
    _check(_libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()), "capset")
    _check(_libc.prctl(PR_CAP_AMBIENT, 4, 0, 0, 0), "clear ambient capabilities")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(_libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
    if _prog is not None:
        buf = ctypes.create_string_buffer(_prog, len(_prog))
        fprog = _SockFprog(len(_prog) // 8, ctypes.addressof(buf))
        _check(_libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0), "seccomp")


def _job_init(jsock, paths):
    """B: pid 1 of the job's pid namespace, made ahead of its job."""
    os.setsid()
    # The daemon has SO_PASSCRED: the kernel tells it this process's pid in its own pid
    # namespace; it moves this process into the job's cgroup and says "go".
    jsock.sendmsg([b"pid"])
    if jsock.recv(16) != b"go":
        os._exit(1)
    _check(_libc.unshare(CLONE_NEWCGROUP), "unshare cgroup")
    # What every job gets: the zygote's own /work, /tmp, /proc, /dev/pts and /dev/shm
    # go, fresh ones come (mounts no process outside this namespace sees).
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for p in ("/work", "/tmp", "/dev/pts"):
        _check(_libc.umount2(p.encode(), MNT_DETACH), "unmount " + p)
    _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    # A new proc may only be made while one is visible: made detached, then put in place.
    fs = _libc.syscall(SYS_fsopen, b"proc", 1)
    _check(fs, "fsopen proc")
    _check(_libc.syscall(SYS_fsconfig, fs, 1, b"source", b"proc", 0), "name proc")  # FSCONFIG_SET_STRING
    _check(_libc.syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, None, None, 0), "create proc")
    proc = _libc.syscall(SYS_fsmount, fs, 1, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)
    _check(proc, "fsmount proc")
    os.close(fs)
    _check(_libc.umount2(b"/proc", MNT_DETACH), "unmount /proc")
    _check(_libc.syscall(SYS_move_mount, proc, b"", AT_FDCWD, b"/proc", MOVE_MOUNT_F_EMPTY_PATH), "mount /proc")
    os.close(proc)
    for p in paths["masked"]:
        if p.startswith("/proc/"):
            _mask(p)
    for p in paths["readonly"]:
        if p.startswith("/proc/"):
            _readonly(p)
    # Only lo, up, as in every job's network namespace.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", 1))  # SIOCSIFFLAGS IFF_UP
    s.close()
    # Ready: the job's own part comes with the job, its descriptors with it.
    jsock.send(b"prepared")
    msg, fds, _, _ = socket.recv_fds(jsock, 1 << 16, 8)
    if not msg or len(fds) != 6:
        raise OSError(22, "job request with %d descriptors" % len(fds))
    req = json.loads(msg)
    # Every descriptor out of the way of those the job's init and python get (0-4, 6).
    jsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=_high(jsock.detach()))
    stdin, stdout, stderr, status, control, storage = [_high(fd) for fd in fds]
    # The job's storage: the daemon's tmpfs for this job, a detached clone of its mount.
    _check(_libc.syscall(SYS_move_mount, storage, b"", AT_FDCWD, b"/work", MOVE_MOUNT_F_EMPTY_PATH), "mount /work")
    os.close(storage)
    _mount("/work", "/tmp", None, MS_BIND)
    _check(_libc.umount2(b"/dev/shm", MNT_DETACH), "unmount /dev/shm")
    _mount("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=%d" % req["shm"])
    nofile = None
    for res, soft, hard in req["rlimits"]:
        if res == resource.RLIMIT_NOFILE:
            nofile = (soft, hard)  # C sets it once it holds only its stdio
        else:
            resource.setrlimit(res, (soft, hard))
    os.chdir("/work")
    _drop_privileges(req["uid"], req["gid"])
    for i, fd in enumerate((stdin, stdout, stderr)):
        os.dup2(fd, i)
    os.dup2(status, 3)
    os.dup2(control, 4)
    ready_r, ready_w = [_high(fd) for fd in os.pipe()]
    os.dup2(ready_w, 6)
    # Nothing else stays open: one close_range per gap between what is kept.
    keep = sorted({0, 1, 2, 3, 4, 6, ready_r, jsock.fileno()})
    top = max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], keep[-1] + 1)
    for lo, hi in zip(keep, keep[1:] + [top]):
        os.closerange(lo + 1, hi)
    child = os.fork()
    if child == 0:
        for fd in (3, 4, 6):
            os.close(fd)
        _job(jsock, ready_r, nofile)
    jsock.close()
    os.close(ready_r)
    # The command after the options is only for ps: the init adopts child.
    os.execve("/dev/.sbx-init", ["/dev/.sbx-init", "-c", "-p", str(child), "python3"], {})


def _high(fd):
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(fd)
    return new


def _job(jsock, ready_r, nofile):
    """C: the job's python. It waits until its init watches it, then reads its code."""
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    while os.read(ready_r, 1):
        pass
    os.close(ready_r)
    # Before "ready": from then on the daemon may lower this process's limits to a job's.
    if nofile is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    jsock.send(b"ready")
    jsock.close()
    for name in [m for m in sys.modules if m not in _sbx_startup]:
        del sys.modules[name]
    _sbx_exit(*_sbx_run())


def _fork_job(fd, paths):
    """A: makes the job's namespaces, forks their pid 1 and exits."""
    jsock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd)
    try:
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET), "unshare")
        if os.fork() == 0:
            try:
                _job_init(jsock, paths)
            except BaseException as e:
                _fail(jsock, e)
            os._exit(1)
    except BaseException as e:
        _fail(jsock, e)
        os._exit(1)
    os._exit(0)


def _fail(jsock, e):
    try:
        jsock.send(b"fail " + repr(e).encode()[:1000])
    except BaseException:
        pass


def _serve():
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=_SOCK)
    # Whatever exists now the garbage collector leaves alone, in this process and in
    # every fork: a job's gc then never writes to (and so copies) the server's pages.
    import gc
    compile("", "", "exec")  # python makes its AST types once, not in every job
    gc.freeze()
    os.write(2, b"\0sbx-ready\n")
    while True:
        msg, fds, _, _ = socket.recv_fds(srv, 1 << 16, 8)
        if not msg:
            os._exit(0)  # the daemon is gone or retires this server
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            srv.close()  # no job ever holds the server's socket
            _fork_job(fds[0], json.loads(msg))
            os._exit(1)
        os.close(fds[0])
        os.waitpid(pid, 0)
