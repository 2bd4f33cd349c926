package sandbox_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

func waitWarm(t *testing.T, e *sandbox.Engine, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.PoolIdle() < n {
		if time.Now().After(deadline) {
			t.Fatalf("pool has %d warm containers after 30 s, want %d", e.PoolIdle(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A warm container, and a fork server's job, must behave exactly like python3 main.py
// in a fresh container: the same programs give the same stdout, stderr, exit code and
// status every way, also under limits other than the pool's defaults (which dispatch
// sets on a warm container, and a fork server's job gets when it is forked).
func TestWarmBehavesLikeCold(t *testing.T) {
	cold := testenv.Engine(t, sandbox.Options{PoolSize: -1})
	warm := testenv.Engine(t, sandbox.Options{PoolSize: 1})
	fork := testenv.Engine(t, sandbox.Options{PoolSize: 1, ForkServer: true})
	const rlimitsCode = `import resource
print([resource.getrlimit(getattr(resource, "RLIMIT_" + n)) for n in ("CPU", "FSIZE", "NOFILE", "STACK", "CORE", "MSGQUEUE", "SIGPENDING", "MEMLOCK")])`
	const openAll = `import os
n = 0
try:
    while True:
        os.open("/dev/null", os.O_RDONLY)
        n += 1
except OSError as e:
    print(n, e.errno)`
	cases := []struct {
		name, code, stdin string
		lim               sandbox.Limits
	}{
		{"name and argv", `import sys, os
print(__name__, sys.argv, __file__, sys.path[0], os.getcwd())
print(open(__file__).read().splitlines()[0])
print(__doc__, __spec__, __package__)`, "", sandbox.Limits{}},
		{"docstring", `"""the doc"""
print(__doc__)`, "", sandbox.Limits{}},
		{"traceback names main.py", `def f():
    return 1 / 0
f()`, "", sandbox.Limits{}},
		{"syntax error", `print("unclosed"`, "", sandbox.Limits{}},
		{"indentation error", "if True:\nprint(1)", "", sandbox.Limits{}},
		{"exit code", "import sys\nprint('out')\nsys.exit(42)", "", sandbox.Limits{}},
		{"exit message", "import sys\nsys.exit('bye')", "", sandbox.Limits{}},
		{"exit none", "raise SystemExit", "", sandbox.Limits{}},
		{"uncaught in thread and main", "import threading\nt = threading.Thread(target=lambda: 1/0)\nt.start()\nt.join()\nraise KeyError('k')", "", sandbox.Limits{}},
		{"stdin", "import sys\nprint(input())\nprint(sys.stdin.read().split())", "first line\nsecond third\n", sandbox.Limits{}},
		{"stdin bytes", "import sys\nprint(sys.stdin.buffer.read())", "\x00\x01binary", sandbox.Limits{}},
		{"flushing and atexit", "import atexit, sys\natexit.register(lambda: print('at exit'))\nsys.stdout.write('no newline')", "", sandbox.Limits{}},
		{"excepthook", "import sys\nsys.excepthook = lambda *a: print('hooked', a[0].__name__)\nraise ValueError", "", sandbox.Limits{}},
		{"globals are clean", "print(sorted(k for k in globals() if not k.startswith('__')))", "", sandbox.Limits{}},
		{"main module", "import __main__, sys\nx = 5\nprint(__main__.x, sys.modules['__main__'] is __main__)", "", sandbox.Limits{}},
		{"modules at start", "import sys\nprint(sorted(sys.modules))", "", sandbox.Limits{}},
		{"__del__ of a cycle at exit", "class A:\n    def __del__(self): print('del')\na = A()\na.me = a\ndel a\nprint('end')", "", sandbox.Limits{}},
		{"signal", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", "", sandbox.Limits{}},
		{"__del__ at exit, after atexit", "import atexit\nclass A:\n    def __del__(self): print('del')\na = A()\natexit.register(print, 'atexit')", "", sandbox.Limits{}},
		{"non-daemon thread outlives main", "import threading, time\ndef late():\n    time.sleep(0.2)\n    print('thread done')\nthreading.Thread(target=late).start()\nprint('main done')", "", sandbox.Limits{}},
		{"exit true", "import sys\nsys.exit(True)", "", sandbox.Limits{}},
		{"exit 256", "import sys\nsys.exit(256)", "", sandbox.Limits{}},
		{"keyboard interrupt", "raise KeyboardInterrupt", "", sandbox.Limits{}},
		{"error in atexit", "import atexit\natexit.register(lambda: 1/0)\nprint('x')", "", sandbox.Limits{}},
		{"print to closed stdout", "import sys, os\nprint('lost')\nos.close(1)", "", sandbox.Limits{}},
		{"pickle of main classes", "import pickle\nclass A: pass\nprint(type(pickle.loads(pickle.dumps(A()))).__name__)", "", sandbox.Limits{}},
		{"default rlimits", rlimitsCode, "", sandbox.Limits{}},
		{"cpu_time 11 s", rlimitsCode, "", sandbox.Limits{CPUTime: 11 * time.Second}},
		{"cpu_time 60 s", rlimitsCode, "", sandbox.Limits{CPUTime: time.Minute}},
		{"cpu_time 5 min", rlimitsCode, "", sandbox.Limits{CPUTime: 5 * time.Minute}},
		{"file_size 128 MiB", rlimitsCode, "", sandbox.Limits{FileSize: 128 << 20}},
		{"file_size 1 KiB", "open('/tmp/f', 'wb').write(b'x' * 2048)", "", sandbox.Limits{FileSize: 1 << 10}},
		{"open_files 2048", openAll, "", sandbox.Limits{OpenFiles: 2048}},
		{"open_files 16, the floor", openAll, "", sandbox.Limits{OpenFiles: 16}},
		{"open_files 17", openAll, "", sandbox.Limits{OpenFiles: 17}},
		{"stack 16 MiB", rlimitsCode, "", sandbox.Limits{Stack: 16 << 20}},
		{"stack 256 KiB, the floor", rlimitsCode, "", sandbox.Limits{Stack: 256 << 10}},
		{"timeout, double-forked and ignoring signals", "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nif os.fork() == 0:\n    os.setsid()\n    os.fork() or time.sleep(60)\nos.write(1, b'up\\n')  # one write: the two processes' lines cannot interleave\ntime.sleep(60)", "", sandbox.Limits{Timeout: 500 * time.Millisecond}},
		{"cpu time", "while True: pass", "", sandbox.Limits{CPUTime: time.Second, Timeout: 5 * time.Second}},
		{"memory", "x = bytearray(200 << 20)", "", sandbox.Limits{Memory: 64 << 20}},
		{"pids", "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(5)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)", "", sandbox.Limits{Pids: 16}},
		{"output flood", "import sys\nwhile True: sys.stdout.write('x' * 65536)", "", sandbox.Limits{Timeout: 2 * time.Second}},
		{"sigkill itself", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "", sandbox.Limits{}},
		{"identity", "import os, socket\nprint(os.getuid(), os.getgid(), os.getgroups(), socket.gethostname(), os.getcwd(), os.getsid(0), os.getpgrp(), os.getppid())\nprint([l for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNewPrivs', 'Seccomp:'))])\nprint(sorted(os.listdir('/proc/self/fd')), socket.if_nameindex())\nprint(open('/proc/self/cgroup').read())", "", sandbox.Limits{}},
		{"mounts", "import re\nprint(''.join(sorted(re.sub('fd/[0-9]+', 'fd/N', ' '.join(l.split()[3:5] + l.split()[6:])) + '\\n' for l in open('/proc/self/mountinfo'))))", "", sandbox.Limits{}},
	}
	ids := regexp.MustCompile(`0x[0-9a-f]+`)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := sandbox.Request{Code: c.code, Stdin: []byte(c.stdin), Limits: c.lim}
			rc, err := cold.Run(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for _, pooled := range []struct {
				name string
				e    *sandbox.Engine
			}{{"warm", warm}, {"fork", fork}} {
				waitWarm(t, pooled.e, 1)
				rw, err := pooled.e.Run(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if rc.Warm || !rw.Warm {
					t.Fatalf("cold ran warm=%v, %s ran warm=%v", rc.Warm, pooled.name, rw.Warm)
				}
				if rc.Status != rw.Status || rc.ExitCode != rw.ExitCode || rc.Signal != rw.Signal || rc.OOMKilled != rw.OOMKilled ||
					rc.PidsLimitHit != rw.PidsLimitHit || rc.StdoutTruncated != rw.StdoutTruncated || rc.Stdout != rw.Stdout ||
					ids.ReplaceAllString(rc.Stderr, "0x") != ids.ReplaceAllString(rw.Stderr, "0x") {
					t.Errorf("cold: %s %d %q\nstdout %q\nstderr %q\n%s: %s %d %q\nstdout %q\nstderr %q", rc.Status, rc.ExitCode, rc.Signal,
						trunc(rc.Stdout), rc.Stderr, pooled.name, rw.Status, rw.ExitCode, rw.Signal, trunc(rw.Stdout), rw.Stderr)
				}
			}
		})
	}
}

// The timeout counts from dispatch, not from when the warm container started; limits of
// the request replace the pool's before the code runs; each container serves one job.
func TestWarmLimitsAndSingleUse(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{PoolSize: 1})
	waitWarm(t, e, 1)
	time.Sleep(time.Second) // the warm container has been up a while
	r := run(t, e, sandbox.Request{Code: "import time; time.sleep(0.6); print('done')", Limits: sandbox.Limits{Timeout: time.Second}})
	if !r.Warm || r.Status != sandbox.StatusOK || r.Stdout != "done\n" {
		t.Errorf("warm=%v %s %q %q", r.Warm, r.Status, r.Stdout, r.Stderr)
	}
	waitWarm(t, e, 1)
	r = run(t, e, sandbox.Request{Code: "x = bytearray(100 << 20)", Limits: sandbox.Limits{Memory: 48 << 20}})
	if !r.Warm || r.Status != sandbox.StatusMemoryLimit {
		t.Errorf("warm=%v status %s: the request's memory limit was not applied", r.Warm, r.Status)
	}
	waitWarm(t, e, 1)
	r = run(t, e, sandbox.Request{Code: "import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))", Limits: sandbox.Limits{OpenFiles: 64}})
	if !r.Warm || r.Stdout != "(64, 64)\n" {
		t.Errorf("warm=%v stdout %q: rlimits not applied", r.Warm, r.Stdout)
	}
	// A file and a process planted by one warm job are not seen by the next.
	waitWarm(t, e, 1)
	r = run(t, e, sandbox.Request{Code: "import os, subprocess\nopen('/tmp/planted', 'w').write('x')\nsubprocess.Popen(['sleep', '100'])"})
	if !r.Warm || r.Status != sandbox.StatusOK {
		t.Fatalf("%+v", r)
	}
	waitWarm(t, e, 1)
	r = run(t, e, sandbox.Request{Code: "import os\nprint(os.path.exists('/tmp/planted'), [p for p in os.listdir('/proc') if p.isdigit()])"})
	if !r.Warm || !strings.HasPrefix(r.Stdout, "False ['1', ") || strings.Count(r.Stdout, ",") != 1 {
		t.Errorf("warm=%v stdout %q: something persisted", r.Warm, r.Stdout)
	}
	// Non-default storage is not the pooled shape: it starts cold. A fork server makes
	// every job's storage when the job comes, so it serves any storage size.
	r = run(t, e, sandbox.Request{Code: "print(1)", Limits: sandbox.Limits{Storage: 3 << 20}})
	if r.Warm != testenv.ForkServer() {
		t.Errorf("a job of another shape ran warm=%v", r.Warm)
	}
}

func trunc(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}
