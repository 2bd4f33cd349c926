package sandbox_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

// serverMark prints what every job forked by one fork server shares, and nothing else
// does: its interpreter's hash secret (a cold python, or another server, has its own).
const serverMark = "print('server', hash('sbx-fork-server'))\n"

func serverOf(t *testing.T, r *sandbox.Result) string {
	t.Helper()
	for _, l := range strings.Split(r.Stdout, "\n") {
		if strings.HasPrefix(l, "server ") {
			return l
		}
	}
	t.Fatalf("no server mark in %q (stderr %q)", r.Stdout, r.Stderr)
	return ""
}

// What one job on a fork server leaves, the next job on the same server never sees:
// files (in /work, /tmp, /dev/shm), processes (a detached one still running at its end),
// System V IPC, abstract unix sockets. A job cannot name, signal or trace the server or
// reach it through a descriptor, and the server goes on serving after a job killed
// everything it could.
func TestForkServerIsolation(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{PoolSize: 1, ForkServer: true})
	waitWarm(t, e, 1)
	plant := serverMark + `import os, subprocess, socket, ctypes
for d in ("/work", "/tmp", "/dev/shm"):
    open(d + "/planted", "w").write("x")
subprocess.Popen(["sh", "-c", "sleep 100 & sleep 100"], start_new_session=True)
libc = ctypes.CDLL(None, use_errno=True)
print("shm", libc.shmget(0x5bd, 4096, 0o1666) >= 0)
s = socket.socket(socket.AF_UNIX)
s.bind("\0sbx-planted")
s.listen()
print("pids", len([p for p in os.listdir("/proc") if p.isdigit()]))
`
	r1 := run(t, e, sandbox.Request{Code: plant})
	if !r1.Warm || r1.Status != sandbox.StatusOK || !strings.Contains(r1.Stdout, "shm True\n") || strings.Contains(r1.Stdout, "pids 2\n") {
		t.Fatalf("planting job: warm=%v %s %q %q", r1.Warm, r1.Status, r1.Stdout, r1.Stderr)
	}
	look := serverMark + `import os, socket, ctypes
print([os.path.exists(d + "/planted") for d in ("/work", "/tmp", "/dev/shm")])
print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget(0x5bd, 0, 0) < 0, open("/proc/sysvipc/shm").read().count("\n"))
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\0sbx-planted")
    print("reached")
except OSError:
    print("refused")
s.close()
print("@sbx-planted" in open("/proc/net/unix").read())
print(sorted(os.listdir("/proc/self/fd")), os.getppid())
`
	waitWarm(t, e, 1)
	r2 := run(t, e, sandbox.Request{Code: look})
	if !r2.Warm || serverOf(t, r2) != serverOf(t, r1) {
		t.Fatalf("the second job did not run on the same server: warm=%v %q %q", r2.Warm, r1.Stdout, r2.Stdout)
	}
	want := "[False, False, False]\n[1, 2]\nTrue 1\nrefused\nFalse\n['0', '1', '2', '3'] 1\n"
	if got := strings.SplitN(r2.Stdout, "\n", 2)[1]; got != want {
		t.Errorf("the next job saw something of the last one:\ngot  %q\nwant %q (stderr %q)", got, want, r2.Stderr)
	}

	// Signal and trace whatever it can: its own pid namespace only. kill(-1) skips the
	// caller and its namespace's init; ptrace is refused outright (seccomp).
	attack := serverMark + `import os, signal, ctypes
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, 1, 0, 0)  # PTRACE_ATTACH to its init
print("ptrace", r, ctypes.get_errno())
try:
    open("/proc/1/mem", "rb").read(1)
    print("mem opened")
except OSError as e:
    print("mem", e.errno)
print("init", open("/proc/1/cmdline", "rb").read().split(b"\0")[0])
try:
    os.kill(-1, signal.SIGKILL)
except ProcessLookupError:  # nobody it may signal but itself and its init, which it spares
    pass
print("alive")
`
	waitWarm(t, e, 1)
	r3 := run(t, e, sandbox.Request{Code: attack})
	if !r3.Warm || serverOf(t, r3) != serverOf(t, r1) {
		t.Fatalf("the attack did not run on the same server: %q %q", r3.Stdout, r3.Stderr)
	}
	if !strings.Contains(r3.Stdout, "ptrace -1 1\n") || !strings.Contains(r3.Stdout, "mem 13\n") ||
		!strings.Contains(r3.Stdout, "init b'/dev/.sbx-init'\n") || !strings.Contains(r3.Stdout, "alive\n") {
		t.Errorf("attack job: %q %q", r3.Stdout, r3.Stderr)
	}
	waitWarm(t, e, 1)
	r4 := run(t, e, sandbox.Request{Code: serverMark + "print('still serving')"})
	if !r4.Warm || serverOf(t, r4) != serverOf(t, r1) || !strings.Contains(r4.Stdout, "still serving") {
		t.Errorf("the server did not survive the attack: warm=%v %q %q", r4.Warm, r4.Stdout, r4.Stderr)
	}
}

// Jobs at the same time never share a fork server (nor its user namespace), and a
// server is retired after ForkServerUses jobs: the next job runs on a fresh one.
func TestForkServerSharingBounds(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{PoolSize: 2, ForkServer: true})
	waitWarm(t, e, 2)
	var wg sync.WaitGroup
	res := make([]*sandbox.Result, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = run(t, e, sandbox.Request{Code: serverMark + "import time; time.sleep(1)"})
		}()
	}
	wg.Wait()
	if !res[0].Warm || !res[1].Warm || serverOf(t, res[0]) == serverOf(t, res[1]) {
		t.Errorf("two jobs at once: warm %v %v, %q %q", res[0].Warm, res[1].Warm, res[0].Stdout, res[1].Stdout)
	}

	one := testenv.Engine(t, sandbox.Options{PoolSize: 1, ForkServer: true})
	waitWarm(t, one, 1)
	first := ""
	for i := range sandbox.ForkServerUses + 1 {
		for one.PoolIdle() < 1 { // back from its last job, or its replacement started
			time.Sleep(2 * time.Millisecond)
		}
		r, err := one.Run(context.Background(), sandbox.Request{Code: serverMark})
		if err != nil || !r.Warm {
			t.Fatalf("job %d: %v warm=%v", i, err, r != nil && r.Warm)
		}
		mark := serverOf(t, r)
		switch {
		case i == 0:
			first = mark
		case i < sandbox.ForkServerUses && mark != first:
			t.Fatalf("job %d ran on another server before the first was used up", i)
		case i == sandbox.ForkServerUses && mark == first:
			t.Fatalf("job %d ran on the server that had served %d jobs", i, sandbox.ForkServerUses)
		}
	}
}
