"""What a Python job does must work under the job profile.

Run by TestPythonUnderFilter after the filter is loaded; exits 0 and prints
"ok", or fails with a traceback.
"""
import asyncio
import mmap
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading


def square(x):
    return x * x


def main():
    assert "Seccomp:\t2" in open("/proc/self/status").read(), "not running under a filter"

    # Threads: clone with CLONE_THREAD and friends, futex, set_robust_list, rseq.
    seen = []
    threads = [threading.Thread(target=seen.append, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(8))

    # subprocess: posix_spawn (clone3 gets ENOSYS, glibc falls back to clone),
    # vfork, pipes, execve, wait4.
    out = subprocess.run(["/bin/echo", "hi"], capture_output=True, check=True).stdout
    assert out == b"hi\n", out
    out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, check=True).stdout
    assert out == b"42\n", out

    # multiprocessing with every start method: fork, and spawn and
    # forkserver, which pass descriptors over AF_UNIX sockets and use
    # POSIX semaphores in /dev/shm.
    for method in ("fork", "spawn", "forkserver"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map(square, range(5)) == [0, 1, 4, 9, 16], method

    # Memory, files, randomness, system facts.
    with mmap.mmap(-1, 1 << 20) as m:
        m[:3] = b"abc"
    fd = os.memfd_create("job")
    os.write(fd, b"x")
    os.close(fd)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        with open(path, "w") as f:
            f.write("x")
        os.stat(path)
        assert os.listdir(d) == ["f"]
    assert len(os.urandom(16)) == 16
    assert os.sched_getaffinity(0)
    os.cpu_count()

    # Sockets: AF_UNIX pairs, TCP over loopback, IPv6, NETLINK_ROUTE
    # (if_nameindex reads links through it).
    a, b = socket.socketpair()
    a.sendall(b"x")
    assert b.recv(1) == b"x"
    with socket.create_server(("127.0.0.1", 0)) as srv:
        with socket.create_connection(srv.getsockname()) as c:
            conn, _ = srv.accept()
            c.sendall(b"y")
            assert conn.recv(1) == b"y"
            conn.close()
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    assert any(name == "lo" for _, name in socket.if_nameindex())

    # An event loop: epoll, eventfd or self-pipe, signals.
    asyncio.run(asyncio.sleep(0.01))

    print("ok")


if __name__ == "__main__":
    main()
